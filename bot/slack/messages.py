"""Everything the bot says in Slack: words and Block Kit layouts, kept in one place."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from bot.commands import SignSpec
from bot.store import AuditEvent, RequestRecord

Block = dict[str, Any]

SECTION_LIMIT = 3000
TEXT_LIMIT = 3900
APPROVE_ACTION = "signcsr_approve"
DENY_ACTION = "signcsr_deny"
LIST_LIMIT = 20
# In a status, each history line's detail (a reason, PAM360's message) and the outcome line
# are cut at these lengths, so that the whole history fits.
HISTORY_DETAIL_CHARS = 300
STATUS_OUTCOME_CHARS = 1000
# Help names this many catalog CAs at most, so the rest of it still fits in one message.
HELP_CA_LIMIT = 30

STATE_WORDS = {
    "pending": "waiting for an approver",
    "signing": "approved, signing in PAM360",
    "signed": "signed",
    "failed": "not signed",
    "unknown": "outcome unknown: check PAM360",
    "denied": "denied",
    "cancelled": "cancelled",
    "expired": "expired without a decision",
}


def escape(text: str) -> str:
    """Makes user-supplied text inert in mrkdwn: no mentions, links or channel pings."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int = SECTION_LIMIT) -> str:
    """At most `limit` characters; a cut never splits an entity such as &amp;."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    entity = cut.rfind("&")
    if entity > cut.rfind(";") and len(cut) - entity < len("&amp;"):
        cut = cut[:entity]
    return cut + "…"


def section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text)}}


def context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text)}]}


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


def user(user_id: str | None) -> str:
    return f"<@{user_id}>" if user_id else "nobody"


def ca_line(spec: SignSpec, catalog: Mapping[str, str]) -> str:
    if spec.sign_type == "msca":
        return (
            f"Microsoft CA *{escape(spec.msca_ca or '')}* on *{escape(spec.msca_server or '')}*,"
            f" template *{escape(spec.msca_template or '')}*"
        )
    line = f"*{escape(spec.root_name or '')}* (serial `{spec.root_serial}`)"
    known = catalog.get(spec.root_name or "")
    if known is not None and known != spec.root_serial:
        # The requester's serial= wins over the catalog's; the approver must see that it did.
        line += f" :warning: *not the catalog's serial for this CA* (`{known}`)"
    return line


def days_line(spec: SignSpec) -> str:
    """The validity asked for; a Microsoft CA's template has the last word on it."""
    if spec.sign_type == "msca":
        if spec.days is None:
            return "as the template sets"
        return f"{spec.days} days asked (the template may set another)"
    return f"{spec.days} days"


def csr_line(spec: SignSpec, summary: dict[str, Any] | None) -> str:
    """The CSR as the approver should see it: what PAM360 knows of it, or a warning."""
    if summary is None:
        return f"*{spec.csr_id}* (PAM360's CSR list could not be read)"
    if summary.get("missing"):
        return f"*{spec.csr_id}* :warning: *not in PAM360's CSR list*: check the ID"
    strength = " ".join(
        part for part in (summary.get("key_algorithm"), summary.get("key_strength")) if part
    )
    domain = escape(str(summary.get("domain_name") or "?"))
    return f"*{spec.csr_id}* · *{domain}*" + (f" ({escape(strength)})" if strength else "")


def request_fields(record: RequestRecord, catalog: Mapping[str, str]) -> str:
    spec = SignSpec.model_validate(record.spec)
    sign_type = "Microsoft CA (MSCA)" if spec.sign_type == "msca" else "PAM360 CA (signWithRoot)"
    lines = [
        f"*Requester:* {user(record.requester)}",
        f"*CSR:* {csr_line(spec, record.csr_summary)}",
        f"*CA:* {ca_line(spec, catalog)}",
        f"*Validity:* {days_line(spec)}   *Intermediate:* {yes_no(spec.intermediate)}"
        f"   *Sign type:* {sign_type}",
    ]
    if spec.org:
        lines.append(f"*Organization:* {escape(spec.org)}")
    if spec.reason:
        lines.append(f"*Reason:* {escape(spec.reason)}")
    return "\n".join(lines)


def outcome_line(record: RequestRecord) -> str:
    """One line on where the request stands, for the card and the thread."""
    state = record.state
    message = escape(record.pam360_message or "")
    if state == "pending":
        return ":hourglass_flowing_sand: Waiting for an approver."
    if state == "signing":
        return f":gear: Approved by {user(record.decided_by)}; signing in PAM360…"
    if state == "signed":
        # Without the certificate's details, PAM360's own words are all there is to go by.
        said = "" if record.certificate_serial or not message else f" PAM360 said: {message}"
        return f":white_check_mark: *Signed.* {certificate_words(record)}{said}"
    if state == "failed":
        return f":x: *Not signed.* {message}"
    if state == "unknown":
        return f":warning: *Outcome unknown.* {message}"
    if state == "denied":
        return f":no_entry: *Denied* by {user(record.decided_by)}. Nothing was sent to PAM360."
    if state == "cancelled":
        return f":heavy_minus_sign: *Cancelled* by {user(record.decided_by)}."
    return ":alarm_clock: *Expired*: no approver decided in time. Ask again if it is still needed."


def certificate_words(record: RequestRecord) -> str:
    spec = SignSpec.model_validate(record.spec)
    name = escape(record.certificate_cn or "the certificate")
    details = []
    if record.certificate_id:
        details.append(f"Certificate_ID {escape(record.certificate_id)}")
    if record.certificate_serial:
        details.append(f"serial `{escape(record.certificate_serial)}`")
    issued = f"Certificate *{name}*" + (f" ({', '.join(details)})" if details else "")
    if spec.sign_type == "msca":
        template = escape(spec.msca_template or "?")
        return (
            f"{issued} from *{escape(spec.msca_ca or '?')}*; template {template} sets its validity."
        )
    return f"{issued} from *{escape(spec.root_name or '?')}*, valid {days_line(spec)}."


def card_title(record: RequestRecord) -> str:
    return f"Signing request #{record.id}: {STATE_WORDS.get(record.state, record.state)}"


def card(record: RequestRecord, catalog: Mapping[str, str]) -> tuple[str, list[Block]]:
    """The approval message: the request, its state, and buttons while it is pending."""
    blocks = [
        section(f"*{card_title(record)}*"),
        section(request_fields(record, catalog)),
        section(outcome_line(record)),
    ]
    # Denied and cancelled say who in their outcome line already.
    if record.decided_by and record.state in ("signed", "failed", "unknown"):
        blocks.append(context(approval_words(record)))
    if record.state == "pending":
        blocks.append(buttons(record.id))
    return clip(card_title(record), TEXT_LIMIT), blocks


def approval_words(record: RequestRecord) -> str:
    if record.decided_by == record.requester:
        return f"{user(record.requester)} is an approver: their own request needs no second one."
    return f"Approved by {user(record.decided_by)}."


def buttons(request_id: int) -> Block:
    return {
        "type": "actions",
        "block_id": f"decision-{request_id}",
        "elements": [
            {
                "type": "button",
                "action_id": APPROVE_ACTION,
                "text": {"type": "plain_text", "text": "Approve"},
                "style": "primary",
                "value": str(request_id),
                "confirm": {
                    "title": {"type": "plain_text", "text": "Sign this CSR?"},
                    "text": {
                        "type": "mrkdwn",
                        "text": f"PAM360 will sign request #{request_id} with the CA shown.",
                    },
                    "confirm": {"type": "plain_text", "text": "Approve and sign"},
                    "deny": {"type": "plain_text", "text": "Back"},
                },
            },
            {
                "type": "button",
                "action_id": DENY_ACTION,
                "text": {"type": "plain_text", "text": "Deny"},
                "style": "danger",
                "value": str(request_id),
            },
        ],
    }


def thread_reply(record: RequestRecord) -> str:
    return clip(
        f"Request #{record.id} from {user(record.requester)}: {outcome_line(record)}", TEXT_LIMIT
    )


def requester_note(record: RequestRecord) -> str:
    return clip(f"Your signing request #{record.id}: {outcome_line(record)}", TEXT_LIMIT)


def waiting_note(record: RequestRecord, channel: str, command: str) -> str:
    return (
        f"Request #{record.id} is waiting for an approver in <#{channel}>."
        f" See where it stands with `{command} status {record.id}`;"
        f" withdraw it with `{command} cancel {record.id}`."
    )


def usage_error(problem: str, usage: str) -> str:
    """A refusal of what was typed: the problem (which may quote the input) and the usage."""
    command = usage.split(" ", 1)[0]
    return f":warning: {escape(problem)}\nUsage: `{escape(usage)}`\nType `{command} help` for more."


def request_number_missing(command: str, subcommand: str, given: str) -> str:
    """`status` or `cancel` without a number: the signing usage would not help here."""
    got = f" (got `{escape(clip(given, 40))}`)" if given else ""
    return (
        f":warning: Give the request number{got}, e.g. `{command} {subcommand} 12`."
        f" `{command} list` shows the pending ones."
    )


def not_posted_note(record: RequestRecord, error: str) -> str:
    return (
        f":warning: I could not post request #{record.id} for approval: Slack answered"
        f" `{escape(error)}`. It is withdrawn, so nothing waits in vain; please ask again in a"
        " minute."
    )


def invite_note(channel: str | None) -> str:
    where = f"<#{channel}>" if channel else "this channel"
    return (
        f"I could not post in {where}: I am not a member there. The request is shown here"
        f" instead; to get approval messages in {where}, invite me with `/invite @signcsr-bot`."
    )


def already_note(record: RequestRecord) -> str:
    return f"Request #{record.id} is already {STATE_WORDS.get(record.state, record.state)}."


def unexpected_error() -> str:
    return (
        "Sorry, something went wrong in signcsr-bot. Nothing more was done; the operator"
        " can find the details in its log."
    )


def help_text(
    *,
    usage: str,
    command: str,
    catalog: dict[str, str],
    limits: tuple[int, int, int],
    approvers: Sequence[str],
    self_approval: bool,
    pending_hours: float,
) -> str:
    default_days, max_days, max_intermediate = limits
    people = ", ".join(mention(entry) for entry in approvers)
    lines = [
        "*Get a CSR stored in PAM360 signed by one of its CAs.*",
        f"`{escape(usage)}`",
        f'Example: `{command} 303 {example_ca(catalog)} days=100 reason="new API endpoint"`',
        f"`{command}` alone opens a form. `{command} status &lt;id&gt;`, `{command} list`,"
        f" `{command} cancel &lt;id&gt;`.",
        f"*CAs:* {catalog_words(catalog)}",
        f"*Validity:* {default_days} days unless you give days=; at most {max_days} days,"
        f" {max_intermediate} with intermediate=yes.",
        f"*Approvers:* {people}. Requests wait {pending_hours:g} hours for a decision.",
    ]
    if self_approval:
        lines.append("An approver's own request is signed at once.")
    else:
        lines.append("Nobody can approve their own request.")
    return clip("\n".join(lines), TEXT_LIMIT)


def example_ca(catalog: Mapping[str, str]) -> str:
    """root= as it must be typed: quoted when the name has spaces, with a serial when no
    catalog supplies one."""
    if not catalog:
        return "root=testroot serial=1879376424c"
    name = escape(next(iter(catalog)))
    return f'root="{name}"' if any(char.isspace() for char in name) else f"root={name}"


def catalog_words(catalog: Mapping[str, str]) -> str:
    if not catalog:
        return "no catalog is set: give root= and serial= each time."
    shown = list(catalog.items())[:HELP_CA_LIMIT]
    words = ", ".join(f"`{escape(cn)}` (serial `{serial}`)" for cn, serial in shown)
    rest = len(catalog) - len(shown)
    return words + (f", and {rest} more" if rest > 0 else "")


def mention(entry: str) -> str:
    return f"<!subteam^{entry}>" if entry.startswith("S") else f"<@{entry}>"


def status_text(
    record: RequestRecord, events: Iterable[AuditEvent], catalog: Mapping[str, str]
) -> str:
    """One request's state and history. What a long reason or message pushes out is cut from
    the request's fields, never from the history: it says who approved."""
    history = ["*History:*"]
    for item in events:
        detail = f": {escape(clip(item.detail, HISTORY_DETAIL_CHARS))}" if item.detail else ""
        history.append(f"• {when(item.at)} {item.state} by {actor(item.actor)}{detail}")
    # A signed request's outcome line names its Certificate_ID and serial.
    tail = "\n".join([clip(outcome_line(record), STATUS_OUTCOME_CHARS), *history])
    head = f"*{card_title(record)}*\n{request_fields(record, catalog)}"
    return f"{clip(head, TEXT_LIMIT - len(tail) - 1)}\n{tail}"


def actor(name: str) -> str:
    return f"<@{name}>" if name[:1] in "UW" and name.isalnum() else name


def when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def age(created: datetime, now: datetime) -> str:
    minutes = int((now - created).total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} d"


def list_text(records: Sequence[RequestRecord], now: datetime) -> str:
    if not records:
        return "No signing requests are waiting for an approver."
    lines = [f"*Pending signing requests ({len(records)}), newest first:*"]
    for record in records[:LIST_LIMIT]:
        spec = SignSpec.model_validate(record.spec)
        ca = spec.root_name if spec.sign_type == "root" else spec.msca_ca
        lines.append(
            f"• #{record.id} by {user(record.requester)}: CSR {spec.csr_id},"
            f" CA {escape(ca or '?')}, {days_line(spec)}, {age(record.created_at, now)} old"
        )
    rest = len(records) - LIST_LIMIT
    if rest > 0:
        lines.append(f"…and {rest} more.")
    return clip("\n".join(lines), TEXT_LIMIT)
