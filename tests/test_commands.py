"""Tests for reading /signcsr text and modal values into a signing request."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bot.commands import (
    FIELD_NAMES,
    USAGE,
    SignSpec,
    UsageError,
    decode_slack_text,
    parse_fields,
    parse_sign_command,
    spec_from_fields,
    usage,
)
from bot.config import Settings

CATALOG = "testroot=18:79:37:64:24:C,testintermediate=ABCDEF12"


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "slack_bot_token": "xoxb-test",
        "pam360_url": "https://pam.example.com:8282",
        "pam360_authtoken": "tok",
        "signcsr_approvers": "UAPPROVER",
        **overrides,
    }
    return Settings.from_values(values)


@pytest.fixture
def catalog_settings() -> Settings:
    return make_settings(signcsr_roots=CATALOG)


@pytest.fixture
def bare_settings() -> Settings:
    return make_settings()


def refusal(text: str, settings: Settings) -> UsageError:
    with pytest.raises(UsageError) as caught:
        parse_sign_command(text, settings)
    return caught.value


# --- usage ---------------------------------------------------------------------------------


def test_usage_line_names_every_option() -> None:
    assert USAGE.startswith("/signcsr <csr-id> root=<CA common name> [serial=<hex>]")
    assert USAGE.endswith("[org=<organization>] [reason=<text>]")
    assert usage("/sign-dev").startswith("/sign-dev <csr-id> root=")
    assert "\n" not in USAGE


def test_usage_error_reads_as_its_problem() -> None:
    error = UsageError("days=0 is not a validity: give at least 1 day.", "days")
    assert str(error) == error.problem
    assert error.field == "days"
    assert isinstance(error, ValueError)


# --- accepted requests ---------------------------------------------------------------------


def test_contract_example_takes_serial_from_catalog(catalog_settings: Settings) -> None:
    spec = parse_sign_command("303 root=testroot days=100", catalog_settings)
    assert spec == SignSpec(
        csr_id=303,
        sign_type="root",
        root_name="testroot",
        root_serial="1879376424c",
        days=100,
        intermediate=False,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("303 root=testroot", {"days": 365, "intermediate": False}),
        ("303 ROOT=TestRoot DAYS=100", {"root_name": "testroot", "days": 100}),
        ("303 root=testroot Validity=30", {"days": 30}),
        ("csr=303 root=testroot", {"csr_id": 303}),
        ("root=testroot csr=303", {"csr_id": 303}),
        ("   303    root=testroot     days=7   ", {"days": 7}),
        ("303 root=testroot serial=AB:CD:EF", {"root_serial": "abcdef"}),
        ("303 root=testroot serial=0xBEEF", {"root_serial": "beef"}),
        ("303 root=testroot serial=01:87:93:76:42:4C", {"root_serial": "1879376424c"}),
        ("303 root=testroot serial=00", {"root_serial": "0"}),
        ("303 root=testintermediate intermediate=yes days=1825", {"intermediate": True}),
        ("303 root=testroot intermediate=NO", {"intermediate": False}),
        ("303 root=testroot intermediate=1", {"intermediate": True}),
        ("303 root=testroot type=ROOT", {"sign_type": "root"}),
        ('303 root=testroot org="Example Ltd"', {"org": "Example Ltd"}),
        ("303 root=testroot org=“Example Ltd”", {"org": "Example Ltd"}),
        ("303 root=testroot org=‘Example Ltd’", {"org": "Example Ltd"}),
        ("303 root=testroot org='Example Ltd'", {"org": "Example Ltd"}),
        ("303 root=testroot org=O'Reilly", {"org": "O'Reilly"}),
        ('303 root=testroot org="Müller GmbH"', {"org": "Müller GmbH"}),
        ('303 root=testroot org="Société Générale ©"', {"org": "Société Générale ©"}),
        ("303 root=testroot org=`quoted`", {"org": "`quoted`"}),
        ("303 root=testroot reason=see `ticket 42`", {"reason": "see `ticket 42`"}),
        ('303 root=testroot reason="a=b and c"', {"reason": "a=b and c"}),
        ("303 root=testroot reason='it's urgent'", {"reason": "it's urgent"}),
        ('303 reason="renewal" root=testroot', {"reason": "renewal"}),
        (
            "303 root=testroot reason=web tier renewal, days=5 ",
            {"reason": "web tier renewal, days=5"},
        ),
        ("303 root=testroot reason=R&amp;D &lt;urgent&gt;", {"reason": "R&D <urgent>"}),
        ("303 root=testroot reason=&amp;lt; stays", {"reason": "&lt; stays"}),
        ("303 root=testroot org=<#C123|platform-team>", {"org": "platform-team"}),
        (
            "303 root=testroot reason=ask <mailto:a@b.example|a@b.example>",
            {"reason": "ask a@b.example"},
        ),
    ],
)
def test_root_requests(text: str, expected: dict[str, Any], catalog_settings: Settings) -> None:
    spec = parse_sign_command(text, catalog_settings)
    assert spec.sign_type == "root"
    assert spec.model_dump(include=set(expected)) == expected


def test_without_catalog_an_explicit_serial_names_the_ca(bare_settings: Settings) -> None:
    spec = parse_sign_command('42 root="Corp Root" serial=01:AB', bare_settings)
    assert (spec.root_name, spec.root_serial, spec.days) == ("Corp Root", "1ab", 365)


def test_explicit_serial_wins_over_the_catalog(catalog_settings: Settings) -> None:
    spec = parse_sign_command("303 root=TESTROOT serial=AB:CD:EF", catalog_settings)
    assert (spec.root_name, spec.root_serial) == ("testroot", "abcdef")


def test_configured_limits_and_default_apply() -> None:
    settings = make_settings(signcsr_roots=CATALOG, signcsr_default_days=90, signcsr_max_days=100)
    assert parse_sign_command("1 root=testroot", settings).days == 90
    assert parse_sign_command("1 root=testroot days=100", settings).days == 100
    assert "100-day limit" in refusal("1 root=testroot days=101", settings).problem


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "303 server=ca01 ca=IssuingCA template=WebServer",
            {"msca_server": "ca01", "msca_ca": "IssuingCA", "msca_template": "WebServer"},
        ),
        (
            "303 type=MSCA server=<http://ca01.corp.example|ca01.corp.example> "
            "ca=“Sandbox Issuing CA” template=WebServer",
            {"msca_server": "ca01.corp.example", "msca_ca": "Sandbox Issuing CA"},
        ),
        ("303 ca=x server=y template=z days=30", {"days": 30}),
        ("303 ca=x server=y template=z", {"days": None, "root_name": None}),
        ("303 ca=x server=y template=z intermediate=no", {"intermediate": False}),
    ],
)
def test_microsoft_ca_requests(
    text: str, expected: dict[str, Any], catalog_settings: Settings
) -> None:
    spec = parse_sign_command(text, catalog_settings)
    assert spec.sign_type == "msca"
    assert spec.root_serial is None
    assert spec.model_dump(include=set(expected)) == expected


def test_text_of_exactly_2000_characters_is_accepted(catalog_settings: Settings) -> None:
    command = "303 root=testroot"
    text = command + " " * (2000 - len(command))
    assert parse_sign_command(text, catalog_settings).csr_id == 303


def test_a_reason_may_fill_the_whole_command_text(catalog_settings: Settings) -> None:
    command = "303 root=testroot reason="
    text = command + "r" * (2000 - len(command))
    assert parse_sign_command(text, catalog_settings).reason == "r" * (2000 - len(command))


def test_text_of_2001_characters_is_refused(catalog_settings: Settings) -> None:
    command = "303 root=testroot"
    error = refusal(command + " " * (2001 - len(command)), catalog_settings)
    assert error.problem.startswith("The command text is 2,001 characters long")
    assert "2,000" in error.problem
    assert error.field is None


# --- refused requests ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("abc root=testroot", "csr", "CSR ID must be a number, such as 303 (got 'abc')."),
        ("-5 root=testroot", "csr", "CSR ID must be a number"),
        ("0 root=testroot", "csr", "CSR ID must be a positive number"),
        ("1234567890123456789 root=testroot", "csr", "at most 18 digits"),
        ("root=testroot", "csr", "Give the CSR ID, as shown in PAM360, first: e.g. /signcsr 303"),
        ("", "csr", "Give the CSR ID"),
        ("303 csr=303 root=testroot", "csr", "Give the CSR ID once"),
        ("303 root=testroot foo=1", None, "Unknown option 'foo='. Known options: csr, root,"),
        ("303 root=testroot Colour=red", None, "Unknown option 'Colour='"),
        ("303 root=testroot days=1 days=2", "days", "days= (or validity=) is given twice"),
        ("303 root=testroot days=1 validity=2", "days", "is given twice"),
        ("303 root=testroot ROOT=testroot", "root", "root= is given twice"),
        ("303 root=My Root CA", "root", "Unexpected 'Root': only the CSR ID goes without a key"),
        ("303 404 root=testroot", "csr", "Unexpected '404'"),
        ('303 root="testroot', "root", "The quote that opens root= is never closed"),
        ("303 root=testroot reason=“open ended", "reason", "The quote that opens reason="),
        ('303 root="test"root', "root", "never closed"),
        ("303 root= testroot", "root", "Give a value right after root= (no space)"),
        ("303 root=testroot days=0", "days", "days=0 is not a validity: give at least 1 day."),
        ("303 root=testroot days=abc", "days", "days= must be a whole number of days"),
        ("303 root=testroot days=-1", "days", "days= must be a whole number of days"),
        (
            "303 root=testroot days=900",
            "days",
            "days=900 is more than the 825-day limit for a leaf certificate.",
        ),
        (
            "303 root=testroot intermediate=yes days=2000",
            "days",
            "days=2000 is more than the 1825-day limit for an intermediate CA certificate.",
        ),
        ("303 root=testroot days=" + "9" * 60, "days", "is more than the 825-day limit"),
        ("303 root=testroot intermediate=maybe", "intermediate", "must be yes or no"),
        ("303 root=testroot type=acme", "type", "type= must be root (a PAM360 CA) or msca"),
        (
            "303 root=nosuchca",
            "root",
            "Unknown CA 'nosuchca'. Known CAs: testroot, testintermediate.",
        ),
        ("303 root=nosuchca serial=abcd", "root", "Unknown CA 'nosuchca'."),
        ("303 root=testroot serial=xyz", "serial", "serial=xyz is not a hexadecimal serial number"),
        ("303 days=100", "root", "Give root=<CA common name> to say which CA signs. Known CAs:"),
        ("303 type=root", "root", "Give root=<CA common name>"),
        ("303 serial=abcd", "root", "Give root=<CA common name>"),
        (
            "303 root=testroot ca=IssuingCA",
            "type",
            "Give either root= (sign with a PAM360 CA) or ca=/template= (Microsoft CA), not both.",
        ),
        ("303 type=root root=testroot template=Web", "template", "With type=root, leave out"),
        (
            "303 type=msca root=testroot server=a ca=b template=c",
            "root",
            "With type=msca, leave out root=: it is for a PAM360 CA (type=root).",
        ),
        (
            "303 server=ca01 ca=IssuingCA",
            "template",
            "A Microsoft CA request needs server=, ca= and template=; template= is missing.",
        ),
        ("303 template=Web", "server", "server= and ca= are missing."),
        ("303 type=msca", "server", "server=, ca= and template= are missing."),
        ("303 server=a ca=b template=c intermediate=yes", "intermediate", "intermediate=yes"),
        ("303 server=a ca=b template=c intermediate=1 days=2000", "intermediate", "template"),
        ("303 server=a ca=b template=c days=900", "days", "825-day limit"),
        ("303 root=testroot org=" + "o" * 101, "org", "org= is 101 characters long"),
        ("303 server=" + "s" * 201 + " ca=b template=c", "server", "the limit is 200."),
        ("303 root=testroot reason=two\nlines", "reason", "can't contain line breaks"),
        ('303 root=testroot org="tab\there"', "org", "or other control characters."),
        ("303 root=testroot reason=fake\u2028line", "reason", "can't contain line breaks"),
        ('303 root=testroot reason="fake\u2029paragraph"', "reason", "can't contain line"),
        ('303 root=testroot org="Example\u2028Ltd"', "org", "can't contain line breaks"),
        (
            '303 root=testroot org="株式会社 Example"',
            "org",
            "org= can't contain '株' (U+682A): PAM360 takes the organization in an HTTP header, "
            "which carries only Latin-1 text.",
        ),
        ("303 root=testroot org=Example\u200bLtd", "org", "(U+200B)"),
        ("303 root=testroot org=Ex€mple", "org", "only Latin-1 text"),
        (
            '303 root="testroot* (serial `1879376424c`) *"',
            "root",
            "root= can't contain a backtick (`)",
        ),
        ('303 root="Corp` Root"', "root", "can't contain a backtick"),
        ("303 root=testroot serial=`1879376424c`", "serial", "serial= can't contain a backtick"),
        ("303 server=ca`01 ca=b template=c", "server", "server= can't contain a backtick"),
        ("303 server=a ca=`b` template=c", "ca", "ca= can't contain a backtick"),
        ("303 server=a ca=b template=Web`", "template", "template= can't contain a backtick"),
    ],
)
def test_refusals(text: str, field: str | None, words: str, catalog_settings: Settings) -> None:
    error = refusal(text, catalog_settings)
    assert words in error.problem
    assert error.field == field
    assert_reads_as_a_sentence(error.problem)


def assert_reads_as_a_sentence(problem: str) -> None:
    """What a person reads: a sentence (it may open with the option, as in days=0), with no
    Python internals in it."""
    assert problem[0].isupper() or re.match(r"[a-z]+=", problem)
    assert problem.endswith((".", "…"))
    for internal in ("Traceback", "Error(", "None", "\\n", "{'"):
        assert internal not in problem


@pytest.mark.parametrize(
    "text",
    [
        "303 root=testroot reason=ask <@U123|bob>",
        "303 root=testroot reason=ask <@U123>",
        "<@U123|bob> 303 root=testroot",
        "303 root=testroot org=<!subteam^S1|@pki>",
        '303 root=testroot reason="cc <!subteam^S1>"',
        "303 root=testroot reason=<!here> please",
        "303 root=testroot reason=<!channel>",
    ],
)
def test_mentions_are_refused(text: str, catalog_settings: Settings) -> None:
    error = refusal(text, catalog_settings)
    assert error.problem == (
        "A person or group mention can't be used here: no option takes a person."
    )
    assert error.field is None


def test_a_typed_angle_bracket_is_not_a_mention(catalog_settings: Settings) -> None:
    spec = parse_sign_command("303 root=testroot reason=&lt;@U123&gt;", catalog_settings)
    assert spec.reason == "<@U123>"


def test_without_catalog_a_serial_is_required(bare_settings: Settings) -> None:
    error = refusal("303 root=testroot", bare_settings)
    assert error.problem == (
        "Give serial=<hex> for CA 'testroot': no CA catalog (SIGNCSR_ROOTS) is configured."
    )
    assert error.field == "serial"


def test_without_catalog_a_missing_root_asks_for_a_serial_too(bare_settings: Settings) -> None:
    error = refusal("303", bare_settings)
    assert error.problem == "Give root=<CA common name> and serial=<hex> to say which CA signs."
    assert error.field == "root"


def test_missing_csr_id_uses_the_configured_command() -> None:
    error = refusal("root=testroot", make_settings(signcsr_command="/sign-dev"))
    assert "e.g. /sign-dev 303 root=" in error.problem


def test_long_echoed_values_are_cut_short(catalog_settings: Settings) -> None:
    error = refusal("303 root=" + "n" * 150, catalog_settings)
    assert "n" * 40 + "…'" in error.problem
    assert "n" * 41 not in error.problem


# --- tokenising and decoding -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("303 root=testroot", {"csr": "303", "root": "testroot"}),
        ("  303   DAYS=5  ", {"csr": "303", "days": "5"}),
        ("303 validity=5", {"csr": "303", "days": "5"}),
        ("csr=7 Root='a b=c'", {"csr": "7", "root": "a b=c"}),
        ("303 reason=  spaced out  ", {"csr": "303", "reason": "spaced out"}),
        ("303 reason=“quoted” org=x", {"csr": "303", "reason": "quoted", "org": "x"}),
        ("303 org=&amp;co", {"csr": "303", "org": "&co"}),
        ("303 server=<http://ca01.example|ca01.example>", {"csr": "303", "server": "ca01.example"}),
        ('303 server="<http://ca 01|ca 01>"', {"csr": "303", "server": "ca 01"}),
        ("", {}),
    ],
)
def test_parse_fields(text: str, expected: dict[str, str]) -> None:
    assert parse_fields(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("R&amp;D &lt;x&gt;", "R&D <x>"),
        ("&amp;lt;", "&lt;"),
        ("<#C123|general>", "general"),
        ("<#C123>", "<#C123>"),
        ("<http://ca01.corp.example|ca01.corp.example>", "ca01.corp.example"),
        ("<http://ca01.corp.example>", "http://ca01.corp.example"),
        ("<https://x.example/?a=1&amp;b=2>", "https://x.example/?a=1&b=2"),
        ("<mailto:pki@example.com|pki@example.com>", "pki@example.com"),
        ("<@U123|bob>", "<@U123|bob>"),
        ("<@U123>", "<@U123>"),
        ("<!subteam^S123|@pki>", "<!subteam^S123|@pki>"),
        ("<!here>", "<!here>"),
        ("plain text", "plain text"),
    ],
)
def test_decode_slack_text(text: str, expected: str) -> None:
    assert decode_slack_text(text) == expected


# --- modal values --------------------------------------------------------------------------


def modal_values(**given: str) -> dict[str, str]:
    """Every field as the form sends it: a string, empty when left blank."""
    return {name: given.get(name, "") for name in FIELD_NAMES}


def test_modal_root_request(catalog_settings: Settings) -> None:
    values = modal_values(csr="303", root="TestRoot", intermediate="true", reason=" renewal ")
    spec = spec_from_fields(values, catalog_settings)
    assert spec == SignSpec(
        csr_id=303,
        sign_type="root",
        root_name="testroot",
        root_serial="1879376424c",
        days=365,
        intermediate=True,
        reason="renewal",
    )


@pytest.mark.parametrize(("flag", "expected"), [("true", True), ("false", False), ("", False)])
def test_modal_intermediate_flag(flag: str, expected: bool, catalog_settings: Settings) -> None:
    values = modal_values(csr="1", root="testroot", intermediate=flag)
    assert spec_from_fields(values, catalog_settings).intermediate is expected


def test_modal_microsoft_ca_request(catalog_settings: Settings) -> None:
    values = modal_values(
        csr="9", type="msca", server="ca01", ca="Issuing CA", template="WebServer", days="30"
    )
    spec = spec_from_fields(values, catalog_settings)
    assert (spec.sign_type, spec.msca_ca, spec.days, spec.root_name) == (
        "msca",
        "Issuing CA",
        30,
        None,
    )


@pytest.mark.parametrize(
    ("given", "field", "words"),
    [
        ({"root": "testroot"}, "csr", "Give the CSR ID"),
        ({"csr": "  ", "root": "testroot"}, "csr", "Give the CSR ID"),
        ({"csr": "1", "root": "   "}, "root", "Give root=<CA common name>"),
        ({"csr": "1", "root": "testroot", "days": "abc"}, "days", "whole number"),
        ({"csr": "1", "root": "testroot", "reason": "two\nlines"}, "reason", "line breaks"),
        ({"csr": "1", "root": "test\u202eroot"}, "root", "control characters"),
        ({"csr": "1", "type": "msca", "server": "a", "ca": "b"}, "template", "template="),
        ({"csr": "1", "root": "testroot", "reason": "r" * 2001}, "reason", "the limit is 2,000"),
        ({"csr": "1", "root": "testroot", "reason": "a\u2028b"}, "reason", "line breaks"),
        ({"csr": "1", "root": "testroot", "reason": "a\u2029b"}, "reason", "line breaks"),
        (
            {"csr": "1", "root": "testroot", "org": "株式会社 Example"},
            "org",
            "PAM360 takes the organization in an HTTP header, which carries only Latin-1 text.",
        ),
        (
            {"csr": "1", "root": "testroot* (serial `1879376424c`) *"},
            "root",
            "root= can't contain a backtick",
        ),
        ({"csr": "1", "root": "testroot", "serial": "`ab`"}, "serial", "backtick"),
        (
            {"csr": "1", "type": "msca", "server": "a`", "ca": "b", "template": "c"},
            "server",
            "server= can't contain a backtick",
        ),
        (
            {"csr": "1", "type": "msca", "server": "a", "ca": "b`", "template": "c"},
            "ca",
            "ca= can't contain a backtick",
        ),
        (
            {"csr": "1", "type": "msca", "server": "a", "ca": "b", "template": "`c"},
            "template",
            "template= can't contain a backtick",
        ),
    ],
)
def test_modal_refusals(
    given: dict[str, str], field: str, words: str, catalog_settings: Settings
) -> None:
    with pytest.raises(UsageError) as caught:
        spec_from_fields(modal_values(**given), catalog_settings)
    assert words in caught.value.problem
    assert caught.value.field == field
    assert_reads_as_a_sentence(caught.value.problem)


def test_modal_keeps_latin1_org_and_backticks_in_free_text(catalog_settings: Settings) -> None:
    values = modal_values(csr="1", root="testroot", org="Müller GmbH", reason="see `INC-42`")
    spec = spec_from_fields(values, catalog_settings)
    assert (spec.org, spec.reason) == ("Müller GmbH", "see `INC-42`")


def test_spec_is_frozen(catalog_settings: Settings) -> None:
    spec = parse_sign_command("303 root=testroot", catalog_settings)
    with pytest.raises(ValueError, match="frozen"):
        spec.days = 1  # type: ignore[misc]
