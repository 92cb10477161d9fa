"""Slash-command text and modal values into a validated signing request, or a usage error."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, Field

from bot.config import Settings, normalise_serial

_USAGE_ARGUMENTS = (
    "<csr-id> root=<CA common name> [serial=<hex>] [days=<n>] [intermediate=yes|no]"
    " [type=root|msca] [ca=<MS CA>] [server=<MS CA server>] [template=<template>]"
    " [org=<organization>] [reason=<text>]"
)

FIELD_NAMES = (
    "csr",
    "root",
    "serial",
    "days",
    "intermediate",
    "type",
    "ca",
    "server",
    "template",
    "org",
    "reason",
)
KEY_ALIASES = {"validity": "days"}
MAX_TEXT_CHARS = 2000
MAX_CSR_ID_DIGITS = 18
# The reason may fill what the command text leaves; the modal allows as much.
MAX_REASON_CHARS = MAX_TEXT_CHARS
TEXT_LIMITS = {
    "root": 200,
    "serial": 200,
    "ca": 200,
    "server": 200,
    "template": 200,
    "org": 100,
    "reason": MAX_REASON_CHARS,
}
ROOT_KEYS = ("root", "serial")
MSCA_KEYS = ("server", "ca", "template")
FLAG_WORDS = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}
# Echoed user input is cut short so one bad value cannot swamp the message.
SHOWN_CHARS = 40

# Raw Slack text: a mention is sent unescaped as <@U…> or <!subteam^…>, never typed by hand.
MENTION = re.compile(r"<(?:@|!subteam\^|!(?:here|channel|everyone|group)\b)")
# One pass over links and entities, so a decoded "&lt;" can never start a new link.
SLACK_MARKUP = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>|&(amp|lt|gt);")
ENTITIES = {"amp": "&", "lt": "<", "gt": ">"}
KEY = re.compile(r"([A-Za-z][A-Za-z0-9_-]*)=")
DIGITS = re.compile(r"[0-9]+")
# A closing quote must end the value, so an apostrophe inside it ("it's") does not close it.
QUOTE_CLOSERS = {
    opener: re.compile(f"[{closers}](?=\\s|$)")
    for opener, closers in {
        '"': '"',
        "'": "'",
        "“": "”“",
        "”": "”",
        "‘": "’‘",
    }.items()
}
# Text direction overrides can make a CA name read differently from what is sent.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Control characters, and the line and paragraph separators (U+2028, U+2029) that Slack
# renders as line breaks: either could fake extra lines on the approval card.
LINE_BREAKING_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})
# The approval card shows these in code spans, where a backtick would end the span and let
# the rest pose as card text (a fake serial, say); no real CA, server or template name has one.
CODE_SPAN_FIELDS = frozenset({"root", "serial", "ca", "server", "template"})


def usage(command: str = "/signcsr") -> str:
    """The one-line usage of the sign command under its configured name."""
    return f"{command} {_USAGE_ARGUMENTS}"


USAGE = usage()


class UsageError(ValueError):
    """A request that cannot be understood; `problem` says what to change."""

    def __init__(self, problem: str, field: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.field = field

    def __str__(self) -> str:
        return self.problem


class SignSpec(BaseModel, frozen=True):
    """What is to be signed, and by which CA, as the requester asked."""

    csr_id: int = Field(gt=0)
    sign_type: Literal["root", "msca"]
    root_name: str | None = None
    root_serial: str | None = None
    days: int | None = None
    intermediate: bool = False
    msca_server: str | None = None
    msca_ca: str | None = None
    msca_template: str | None = None
    org: str | None = None
    reason: str | None = None


def decode_slack_text(text: str) -> str:
    """Text as the person typed it: entities decoded, channel and URL links read as labels.

    Person and group mentions stay as Slack sent them, so callers can refuse them.
    """
    return SLACK_MARKUP.sub(_decode_markup, text)


def _decode_markup(match: re.Match[str]) -> str:
    entity = match.group(3)
    if entity is not None:
        return ENTITIES[entity]
    target, label = match.group(1), match.group(2)
    if target.startswith(("@", "!")):
        return match.group(0)
    if label:
        return _unescape(label)
    if target.startswith("#"):
        return match.group(0)
    return _unescape(target)


def _unescape(text: str) -> str:
    # &amp; last, so "&amp;lt;" stays the literal "&lt;" the person typed.
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def parse_sign_command(text: str, settings: Settings) -> SignSpec:
    """The sign command's text, as Slack sent it, into a validated request."""
    return spec_from_fields(parse_fields(text), settings)


def parse_fields(text: str) -> dict[str, str]:
    """Command text into {field name: raw value}; the leading bare word is the CSR ID."""
    _check_raw_text(text)
    typed = decode_slack_text(text)
    fields: dict[str, str] = {}
    previous_field: str | None = None
    position = _skip_space(typed, 0)
    while position < len(typed):
        field, value, position = _next_token(typed, position)
        if field is None:
            field = _positional_field(value, previous_field)
        _add_field(fields, field, value)
        previous_field = field
        position = _skip_space(typed, position)
    return fields


def _check_raw_text(text: str) -> None:
    if len(text) > MAX_TEXT_CHARS:
        raise UsageError(
            f"The command text is {len(text):,} characters long; the limit is "
            f"{MAX_TEXT_CHARS:,}. Shorten it, most likely the reason."
        )
    if MENTION.search(text):
        raise UsageError("A person or group mention can't be used here: no option takes a person.")


def _next_token(text: str, start: int) -> tuple[str | None, str, int]:
    """One `key=value` or bare word from `start`: (field or None, value, end)."""
    key = KEY.match(text, start)
    if key is None:
        value, end = _read_value(text, start, "the CSR ID", None)
        return None, value, end
    field = _field_name(key.group(1))
    value_start = key.end()
    quoted = value_start < len(text) and text[value_start] in QUOTE_CLOSERS
    if field == "reason" and not quoted:
        # An unquoted reason is free text to the end of the line.
        return field, text[value_start:].strip(), len(text)
    value, end = _read_value(text, value_start, f"{field}=", field)
    if not value.strip():
        raise UsageError(f"Give a value right after {field}= (no space), or leave it out.", field)
    return field, value, end


def _read_value(text: str, start: int, label: str, field: str | None) -> tuple[str, int]:
    closer = QUOTE_CLOSERS.get(text[start]) if start < len(text) else None
    if closer is None:
        end = start
        while end < len(text) and not text[end].isspace():
            end += 1
        return text[start:end], end
    closing = closer.search(text, start + 1)
    if closing is None:
        raise UsageError(
            f"The quote that opens {label} is never closed: end the value with a matching "
            "quote followed by a space.",
            field,
        )
    return text[start + 1 : closing.start()], closing.end()


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


def _field_name(key: str) -> str:
    lowered = key.lower()
    field = KEY_ALIASES.get(lowered, lowered)
    if field not in FIELD_NAMES:
        known = ", ".join("days (or validity)" if name == "days" else name for name in FIELD_NAMES)
        raise UsageError(f"Unknown option '{_shown(key)}='. Known options: {known}.")
    return field


def _positional_field(word: str, previous_field: str | None) -> str:
    """A bare word is the CSR ID when it comes first; anywhere else it is a mistake."""
    if previous_field is None:
        return "csr"
    raise UsageError(
        f"Unexpected '{_shown(word)}': only the CSR ID goes without a key. Write options as "
        f'key=value, and quote a value that has spaces, e.g. root="My Root CA".',
        previous_field,
    )


def _add_field(fields: dict[str, str], field: str, value: str) -> None:
    if field == "csr" and "csr" in fields:
        raise UsageError("Give the CSR ID once: either first or as csr=, not both.", "csr")
    if field in fields:
        name = "days= (or validity=)" if field == "days" else f"{field}="
        raise UsageError(f"{name} is given twice; give each option once.", field)
    fields[field] = value


def spec_from_fields(fields: Mapping[str, str], settings: Settings) -> SignSpec:
    """Raw values by field name (empty meaning not given) into a validated request."""
    raw = {name: (fields.get(name) or "").strip() for name in FIELD_NAMES}
    given = {name: value for name, value in raw.items() if value}
    csr_id = _csr_id(given.get("csr"), settings)
    for field, value in given.items():
        _check_text(field, value)

    if _sign_type(given, settings) == "root":
        return _root_spec(csr_id, given, settings)
    return _msca_spec(csr_id, given, settings)


def _csr_id(raw: str | None, settings: Settings) -> int:
    if raw is None:
        raise UsageError(
            "Give the CSR ID, as shown in PAM360, first: "
            f"e.g. {settings.signcsr_command} 303 root=…",
            "csr",
        )
    if not DIGITS.fullmatch(raw):
        raise UsageError(f"CSR ID must be a number, such as 303 (got '{_shown(raw)}').", "csr")
    if len(raw) > MAX_CSR_ID_DIGITS:
        raise UsageError(
            f"CSR ID '{_shown(raw)}' is too long: PAM360 CSR IDs have at most "
            f"{MAX_CSR_ID_DIGITS} digits.",
            "csr",
        )
    if int(raw) == 0:
        raise UsageError("CSR ID must be a positive number, such as 303 (got '0').", "csr")
    return int(raw)


def _check_text(field: str, value: str) -> None:
    limit = TEXT_LIMITS.get(field)
    if limit is None:
        return
    if len(value) > limit:
        raise UsageError(
            f"{field}= is {len(value):,} characters long; the limit is {limit:,}.", field
        )
    if any(
        unicodedata.category(char) in LINE_BREAKING_CATEGORIES or char in BIDI_CONTROLS
        for char in value
    ):
        raise UsageError(f"{field}= can't contain line breaks or other control characters.", field)
    if field in CODE_SPAN_FIELDS and "`" in value:
        raise UsageError(
            f"{field}= can't contain a backtick (`): real CA names, serials, servers and "
            "templates never hold one.",
            field,
        )
    if field == "org":
        _check_latin1_org(value)


def _check_latin1_org(org: str) -> None:
    """Refuse now what would otherwise fail only after an approver approved."""
    try:
        org.encode("latin-1")
    except UnicodeEncodeError as error:
        char = org[error.start]
        # The code point too, as the character may be invisible or look like a Latin one.
        raise UsageError(
            f"org= can't contain '{char}' (U+{ord(char):04X}): PAM360 takes the organization "
            "in an HTTP header, which carries only Latin-1 text. Accented Latin letters such "
            "as é and ü are fine.",
            "org",
        ) from None


def _sign_type(given: dict[str, str], settings: Settings) -> Literal["root", "msca"]:
    chosen = given.get("type")
    if chosen is not None:
        return _chosen_type(chosen)
    has_root = any(key in given for key in ROOT_KEYS)
    has_msca = any(key in given for key in MSCA_KEYS)
    if has_root and has_msca:
        raise UsageError(
            "Give either root= (sign with a PAM360 CA) or ca=/template= (Microsoft CA), not both.",
            "type",
        )
    if has_msca:
        return "msca"
    if has_root:
        return "root"
    raise _missing_root(settings)


def _chosen_type(chosen: str) -> Literal["root", "msca"]:
    lowered = chosen.lower()
    if lowered == "root":
        return "root"
    if lowered == "msca":
        return "msca"
    raise UsageError(
        f"type= must be root (a PAM360 CA) or msca (a Microsoft CA), not '{_shown(chosen)}'.",
        "type",
    )


def _missing_root(settings: Settings) -> UsageError:
    if settings.signcsr_roots:
        known = ", ".join(settings.signcsr_roots)
        return UsageError(
            f"Give root=<CA common name> to say which CA signs. Known CAs: {known}.", "root"
        )
    return UsageError("Give root=<CA common name> and serial=<hex> to say which CA signs.", "root")


def _intermediate(raw: str | None) -> bool:
    if raw is None:
        return False
    flag = FLAG_WORDS.get(raw.lower())
    if flag is None:
        raise UsageError(f"intermediate= must be yes or no (got '{_shown(raw)}').", "intermediate")
    return flag


def _days(raw: str | None, intermediate: bool, settings: Settings) -> int | None:
    """The validity asked for, within the configured limit for the certificate's kind."""
    if raw is None:
        return None
    if not DIGITS.fullmatch(raw):
        raise UsageError(
            f"days= must be a whole number of days, such as 365 (got '{_shown(raw)}').", "days"
        )
    if intermediate:
        limit, kind = settings.signcsr_max_intermediate_days, "an intermediate CA certificate"
    else:
        limit, kind = settings.signcsr_max_days, "a leaf certificate"
    # Compare digit counts first: int() refuses very long digit strings.
    stripped = raw.lstrip("0") or "0"
    if len(stripped) > len(str(limit)) or int(stripped) > limit:
        raise UsageError(
            f"days={_shown(stripped)} is more than the {limit}-day limit for {kind}.", "days"
        )
    if int(stripped) == 0:
        raise UsageError("days=0 is not a validity: give at least 1 day.", "days")
    return int(stripped)


def _root_spec(csr_id: int, given: dict[str, str], settings: Settings) -> SignSpec:
    _refuse_keys(given, MSCA_KEYS, "type=root", "a Microsoft CA (type=msca)")
    root_name, root_serial = _root_ca(given, settings)
    intermediate = _intermediate(given.get("intermediate"))
    days = _days(given.get("days"), intermediate, settings)
    return SignSpec(
        csr_id=csr_id,
        sign_type="root",
        root_name=root_name,
        root_serial=root_serial,
        days=settings.signcsr_default_days if days is None else days,
        intermediate=intermediate,
        org=given.get("org"),
        reason=given.get("reason"),
    )


def _root_ca(given: dict[str, str], settings: Settings) -> tuple[str, str]:
    """The CA's name and serial: an explicit serial= wins over the catalog's."""
    name = given.get("root")
    if name is None:
        raise _missing_root(settings)
    serial = _serial(given["serial"]) if "serial" in given else None
    catalog = settings.signcsr_roots
    if catalog:
        entry = _catalog_entry(name, catalog)
        if entry is None:
            known = ", ".join(catalog)
            raise UsageError(f"Unknown CA '{_shown(name)}'. Known CAs: {known}.", "root")
        return entry[0], serial or entry[1]
    if serial is None:
        raise UsageError(
            f"Give serial=<hex> for CA '{_shown(name)}': no CA catalog (SIGNCSR_ROOTS) is "
            "configured.",
            "serial",
        )
    return name, serial


def _catalog_entry(name: str, catalog: dict[str, str]) -> tuple[str, str] | None:
    """The catalog's own spelling and serial of a CA named in any case."""
    if name in catalog:
        return name, catalog[name]
    wanted = name.casefold()
    for known, serial in catalog.items():
        if known.casefold() == wanted:
            return known, serial
    return None


def _serial(raw: str) -> str:
    try:
        return normalise_serial(raw)
    except ValueError:
        raise UsageError(
            f"serial={_shown(raw)} is not a hexadecimal serial number; write it as PAM360 "
            "shows it, e.g. serial=1879376424c or serial=01:87:93:76.",
            "serial",
        ) from None


def _msca_spec(csr_id: int, given: dict[str, str], settings: Settings) -> SignSpec:
    _refuse_keys(given, ROOT_KEYS, "type=msca", "a PAM360 CA (type=root)")
    if _intermediate(given.get("intermediate")):
        raise UsageError(
            "intermediate=yes can't be used with a Microsoft CA: its template decides what "
            "kind of certificate it issues.",
            "intermediate",
        )
    missing = [key for key in MSCA_KEYS if key not in given]
    if missing:
        raise UsageError(
            "A Microsoft CA request needs server=, ca= and template=; "
            f"{_join_keys(missing)} {'is' if len(missing) == 1 else 'are'} missing.",
            missing[0],
        )
    return SignSpec(
        csr_id=csr_id,
        sign_type="msca",
        # The Microsoft CA's template may override a validity given here.
        days=_days(given.get("days"), False, settings),
        msca_server=given["server"],
        msca_ca=given["ca"],
        msca_template=given["template"],
        org=given.get("org"),
        reason=given.get("reason"),
    )


def _refuse_keys(given: dict[str, str], keys: tuple[str, ...], chosen: str, other: str) -> None:
    """Refuse the options that only make sense for the other kind of CA."""
    present = [key for key in keys if key in given]
    if present:
        pronoun = "it is" if len(present) == 1 else "they are"
        raise UsageError(
            f"With {chosen}, leave out {_join_keys(present)}: {pronoun} for {other}.", present[0]
        )


def _join_keys(keys: list[str]) -> str:
    names = [f"{key}=" for key in keys]
    if len(names) == 1:
        return names[0]
    return f"{', '.join(names[:-1])} and {names[-1]}"


def _shown(value: str) -> str:
    return value if len(value) <= SHOWN_CHARS else value[:SHOWN_CHARS] + "…"
