"""The request form, status, list and cancel, and the CSR shown on the approval card."""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import urlencode

import pytest
import responses

from bot.slack.form import CSR_SELECT_ACTION, FORM_CALLBACK
from bot.slack.messages import APPROVE_ACTION
from bot.slack.standin import TEAM, Call, SlackStandIn
from tests.conftest import (
    APPROVER,
    CHANNEL,
    CSR_ROWS,
    LIST_URL,
    REQUESTER,
    ROOT_SERIAL,
    STRANGER,
    Bot,
)
from tests.scenario import button_ids, card_with_buttons, said, sign_calls, wait_until


def opened_view(slack: SlackStandIn) -> dict[str, Any]:
    return dict(slack.wait_for("views.open")[0].args["view"])


def block_ids(view: dict[str, Any]) -> list[str]:
    return [block["block_id"] for block in view["blocks"]]


def state_for(**answers: Any) -> dict[str, Any]:
    """The view state Slack sends for a form filled with `answers` (field name → value)."""
    values: dict[str, Any] = {}
    for field, answer in answers.items():
        if field == "csr":
            element = {"type": "external_select", "selected_option": {"value": str(answer)}}
            values["csr"] = {CSR_SELECT_ACTION: element}
        elif field in ("root", "type"):
            kind = "static_select" if field == "root" else "radio_buttons"
            values[field] = {field: {"type": kind, "selected_option": {"value": answer}}}
        elif field == "intermediate":
            chosen = [{"value": "yes"}] if answer else []
            values[field] = {field: {"type": "checkboxes", "selected_options": chosen}}
        elif field == "days":
            values[field] = {field: {"type": "number_input", "value": str(answer)}}
        else:
            values[field] = {field: {"type": "plain_text_input", "value": answer}}
    return values


def submit_form(
    bot: Bot,
    slack: SlackStandIn,
    user: str = REQUESTER,
    private_metadata: str | None = None,
    **answers: Any,
) -> Any:
    """A view_submission as Slack sends it; `private_metadata` replaces what the form holds."""
    metadata = {
        "channel_id": CHANNEL,
        "response_url": slack.response_url(f"form-{user}"),
        "team_id": TEAM,
    }
    payload = {
        "type": "view_submission",
        "team": {"id": TEAM},
        "user": {"id": user},
        "view": {
            "id": "VSTANDIN",
            "type": "modal",
            "callback_id": FORM_CALLBACK,
            "private_metadata": (
                json.dumps(metadata) if private_metadata is None else private_metadata
            ),
            "state": {"values": state_for(**answers)},
        },
    }
    return bot.send(urlencode({"payload": json.dumps(payload)}))


def test_bare_command_opens_the_form(make_bot: Any, slack: SlackStandIn, pam360: Any) -> None:
    bot: Bot = make_bot()

    response = bot.command("", user=REQUESTER)

    assert response.status == 200
    call = slack.wait_for("views.open")[0]
    view = call.args["view"]
    assert call.args["trigger_id"] == "1337.42.abcd"
    assert view["callback_id"] == FORM_CALLBACK and len(view["title"]["text"]) <= 24
    assert block_ids(view) == [
        "csr", "type", "root", "serial", "days", "intermediate",
        "server", "ca", "template", "org", "reason",
    ]  # fmt: skip
    blocks = {block["block_id"]: block for block in view["blocks"]}
    assert blocks["csr"]["element"]["type"] == "external_select"
    assert [o["value"] for o in blocks["root"]["element"]["options"]] == ["testroot"]
    assert blocks["days"]["element"]["initial_value"] == "365"
    assert json.loads(view["private_metadata"])["channel_id"] == CHANNEL
    assert slack.calls_to("views.update") == []


def test_form_falls_back_to_a_number_when_pam360_list_fails(
    make_bot: Any, slack: SlackStandIn
) -> None:
    bot: Bot = make_bot()
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, LIST_URL, status=503, body="down")
        bot.command("", user=REQUESTER)
        update = slack.wait_for("views.update")[0]

    csr = update.args["view"]["blocks"][0]
    assert csr["block_id"] == "csr" and csr["element"]["type"] == "number_input"
    assert "could not be read" in csr["hint"]["text"]


def test_expired_trigger_gets_the_usage(make_bot: Any, slack: SlackStandIn, pam360: Any) -> None:
    slack.failures["views.open"] = "expired_trigger_id"
    bot: Bot = make_bot()

    bot.command("", user=REQUESTER)

    note = slack.wait_for("response_url")[0]
    assert note.args["response_type"] == "ephemeral"
    assert "expired_trigger_id" in note.args["text"]
    assert "/signcsr &lt;csr-id&gt; root=" in note.args["text"]


def test_csr_select_offers_matching_csrs(make_bot: Any, pam360: Any) -> None:
    bot: Bot = make_bot()
    payload = {
        "type": "block_suggestion",
        "action_id": CSR_SELECT_ACTION,
        "block_id": "csr",
        "value": "csrt",
        "team": {"id": TEAM},
        "user": {"id": REQUESTER},
        "view": {"id": "VSTANDIN", "type": "modal", "callback_id": FORM_CALLBACK},
    }

    response = bot.send(urlencode({"payload": json.dumps(payload)}))

    options = json.loads(response.body)["options"]
    assert options == [{"text": {"type": "plain_text", "text": "csrtest · CSR 303 · EC 256"},
                        "value": "303"}]  # fmt: skip


def test_valid_form_creates_the_same_request_as_the_command(
    make_bot: Any, slack: SlackStandIn, pam360: Any
) -> None:
    bot: Bot = make_bot()

    response = submit_form(bot, slack, csr=303, root="testroot", days=100, reason="new API")
    slack.wait_for("chat.postMessage")
    bot.command("303 root=testroot days=100 reason=new API", user=REQUESTER)

    assert response.status == 200 and not response.body
    slack.wait_for("chat.postMessage", count=2)
    wait_until(lambda: bot.runtime.workflow.get(2).message_ts is not None)
    from_form, from_text = bot.runtime.workflow.get(1), bot.runtime.workflow.get(2)
    assert from_form.spec == from_text.spec
    assert from_form.origin_channel == from_text.origin_channel == CHANNEL
    cards = [said(call) for call in slack.calls_to("chat.postMessage")]
    assert cards[0].replace("#1", "#2") == cards[1]
    note = slack.wait_for("response_url", where=lambda c: "form" in c.path)[0]
    assert "Request #1 is waiting for an approver" in note.args["text"]


@pytest.mark.parametrize(
    ("answers", "block", "words"),
    [
        ({"root": "testroot"}, "csr", "Pick the CSR to sign"),
        ({"csr": 303, "root": "testroot", "days": 900}, "days", "825-day limit"),
        ({"csr": 303, "root": "testroot", "intermediate": True, "days": 2000}, "days", "1825"),
        ({"csr": 303, "root": "testroot", "serial": "xyz"}, "serial", "xyz"),
        ({"csr": 303, "type": "msca", "server": "ca01", "ca": "Issuing"}, "template", "template"),
        ({"csr": 303}, "root", "Pick the CA that signs it"),
        ({"csr": 303, "root": "testroot", "reason": "x" * 2001}, "reason", "reason"),
    ],
)
def test_invalid_form_keeps_it_open_with_the_error_on_its_field(
    make_bot: Any,
    slack: SlackStandIn,
    pam360: Any,
    answers: dict[str, Any],
    block: str,
    words: str,
) -> None:
    bot: Bot = make_bot()

    response = submit_form(bot, slack, **answers)

    body = json.loads(response.body)
    assert body["response_action"] == "errors"
    assert list(body["errors"]) == [block]
    assert words.lower() in body["errors"][block].lower()
    assert bot.runtime.store.get(1) is None
    assert sign_calls(pam360) == []


def test_status_shows_state_people_and_certificate(
    make_bot: Any, slack: SlackStandIn, pam360: Any
) -> None:
    bot: Bot = make_bot()
    bot.command("303 root=testroot days=100", user=REQUESTER)
    card_with_buttons(slack, bot)
    bot.click(APPROVE_ACTION, 1, APPROVER)
    wait_until(lambda: bot.runtime.workflow.get(1).state == "signed")

    def status_for(user: str) -> Any:
        return lambda call: call.path.endswith(user) and "History" in call.args["text"]

    for user in (REQUESTER, APPROVER, STRANGER):
        bot.command("status 1", user=user)
        status = slack.wait_for("response_url", where=status_for(user))
        text = status[-1].args["text"]
        assert status[-1].args["response_type"] == "ephemeral"
        for words in (
            "Signing request #1: signed",
            f"<@{REQUESTER}>",
            "Certificate_ID 309",
            "b7d5fcb7",
            f"signing by <@{APPROVER}>",
            "signed by PAM360",
        ):
            assert words in text


def test_status_of_unknown_request_says_so(make_bot: Any, slack: SlackStandIn) -> None:
    bot: Bot = make_bot()

    bot.command("status 42", user=REQUESTER)

    assert slack.wait_for("response_url")[0].args["text"] == "There is no request 42."


@pytest.mark.parametrize(("text", "shown"), [("status abc", "abc"), ("cancel", "")])
def test_status_or_cancel_without_a_number_asks_for_one(
    make_bot: Any, slack: SlackStandIn, text: str, shown: str
) -> None:
    bot: Bot = make_bot()

    bot.command(text, user=REQUESTER)

    note = slack.wait_for("response_url")[0].args
    subcommand = text.split()[0]
    assert note["response_type"] == "ephemeral"
    assert f"e.g. `/signcsr {subcommand} 12`" in note["text"]
    assert (f"(got `{shown}`)" in note["text"]) is bool(shown)
    assert "Usage:" not in note["text"]


def test_list_shows_pending_newest_first_and_counts_the_rest(
    make_bot: Any, slack: SlackStandIn, pam360: Any
) -> None:
    bot: Bot = make_bot()
    for number in range(22):
        bot.command(f"{300 + number} root=testroot days={10 + number}", user=REQUESTER)
        slack.wait_for("chat.postMessage", count=number + 1)

    bot.command("list", user=STRANGER)

    text = slack.wait_for("response_url", where=lambda c: "Pending" in c.args["text"])[0]
    lines = text.args["text"].splitlines()
    assert lines[0] == "*Pending signing requests (22), newest first:*"
    assert lines[1].startswith("• #22 by <@UREQUESTER>: CSR 321, CA testroot, 31 days")
    assert len([line for line in lines if line.startswith("•")]) == 20
    assert lines[-1] == "…and 2 more."


def test_cancel_by_requester_removes_the_buttons(
    make_bot: Any, slack: SlackStandIn, pam360: Any
) -> None:
    bot: Bot = make_bot()
    bot.command("303 root=testroot", user=REQUESTER)
    card_with_buttons(slack, bot)

    bot.command("cancel 1", user=REQUESTER)

    update = slack.wait_for("chat.update")[0]
    assert "Cancelled* by <@UREQUESTER>" in said(update) and button_ids(update) == []
    assert bot.runtime.workflow.get(1).state == "cancelled"
    bot.click(APPROVE_ACTION, 1, APPROVER)
    slack.wait_for("response_url", where=lambda c: "already cancelled" in c.args.get("text", ""))
    assert sign_calls(pam360) == []


def test_cancel_by_approver_and_refusal_for_a_stranger(
    make_bot: Any, slack: SlackStandIn, pam360: Any
) -> None:
    bot: Bot = make_bot()
    bot.command("303 root=testroot", user=REQUESTER)
    card_with_buttons(slack, bot)

    bot.command("cancel 1", user=STRANGER)
    refusal = slack.wait_for("response_url", where=lambda c: c.path.endswith(STRANGER))[0]
    assert refusal.args["text"].startswith("Only the requester")
    assert bot.runtime.workflow.get(1).state == "pending"

    bot.command("cancel 1", user=APPROVER)
    slack.wait_for("chat.update")
    assert bot.runtime.workflow.get(1).state == "cancelled"
    assert bot.runtime.workflow.get(1).decided_by == APPROVER


def card_of(slack: SlackStandIn) -> Call:
    return slack.wait_for("chat.postMessage")[0]


def test_card_shows_what_pam360_knows_of_the_csr(
    make_bot: Any, slack: SlackStandIn, pam360: Any
) -> None:
    bot: Bot = make_bot()

    bot.command("303 root=testroot", user=REQUESTER)

    assert "*CSR:* *303* · *csrtest* (EC 256)" in said(card_of(slack))


def test_card_flags_a_csr_pam360_does_not_list(
    make_bot: Any, slack: SlackStandIn, pam360: Any
) -> None:
    bot: Bot = make_bot()

    bot.command(f"999 root=testroot serial={ROOT_SERIAL}", user=REQUESTER)

    assert "*999* :warning: *not in PAM360's CSR list*" in said(card_of(slack))


def test_card_reads_the_csr_list_of_the_requests_organization(
    make_bot: Any, slack: SlackStandIn, pam360: responses.RequestsMock
) -> None:
    bot: Bot = make_bot(pam360_org="Default Org")

    bot.command('303 root=testroot org="Payments Org"', user=REQUESTER)

    assert "*csrtest*" in said(card_of(slack))
    listings = [call.request for call in pam360.calls if call.request.url == LIST_URL]
    assert [request.headers["orgName"] for request in listings] == ["Payments Org"]


@pytest.mark.parametrize("metadata", ["", "not json{", "[1, 2]"])
def test_a_form_that_lost_its_metadata_still_answers_the_requester(
    make_bot: Any, slack: SlackStandIn, pam360: Any, metadata: str
) -> None:
    bot: Bot = make_bot(signcsr_approval_channel="CAPPROVALS")

    response = submit_form(bot, slack, private_metadata=metadata, csr=303, root="testroot")

    assert response.status == 200
    assert card_with_buttons(slack, bot).args["channel"] == "CAPPROVALS"
    direct = slack.wait_for("chat.postMessage", where=lambda c: c.args["channel"] == REQUESTER)
    assert "Request #1 is waiting for an approver in <#CAPPROVALS>" in direct[0].args["text"]


def test_a_form_with_nowhere_to_post_withdraws_and_says_so(
    make_bot: Any, slack: SlackStandIn, pam360: Any
) -> None:
    bot: Bot = make_bot()

    submit_form(bot, slack, private_metadata="", csr=303, root="testroot")

    direct = slack.wait_for("chat.postMessage", where=lambda c: c.args["channel"] == REQUESTER)
    assert "could not post request #1" in direct[0].args["text"]
    assert bot.runtime.workflow.get(1).state == "cancelled"


@pytest.mark.parametrize("text", ["status ²", "cancel ١", "status 99999999999999999999"])
def test_odd_request_numbers_get_words_not_errors(
    make_bot: Any, slack: SlackStandIn, text: str
) -> None:
    bot: Bot = make_bot()

    assert bot.command(text, user=REQUESTER).status == 200

    note = slack.wait_for("response_url")[0].args["text"]
    assert "Give the request number" in note


def test_status_of_a_long_reason_keeps_the_whole_history(
    make_bot: Any, slack: SlackStandIn, pam360: Any
) -> None:
    bot: Bot = make_bot()
    bot.command("303 root=testroot reason=" + "&amp;" * 380, user=REQUESTER)
    card_with_buttons(slack, bot)
    bot.click(APPROVE_ACTION, 1, APPROVER)
    wait_until(lambda: bot.runtime.workflow.get(1).state == "signed")

    bot.command("status 1", user=REQUESTER)

    text = slack.wait_for("response_url", where=lambda c: "History" in str(c.args))[0]
    status = text.args["text"]
    assert len(status) <= 3900
    assert f"signing by <@{APPROVER}>" in status and "signed by PAM360" in status
    # Cut short between entities, never inside one.
    assert all(part.startswith("amp;") for part in status.split("&")[1:])


def suggest(bot: Bot, typed: str) -> list[dict[str, Any]]:
    """The CSR select's options for what the person typed, as Slack asks for them."""
    payload = {
        "type": "block_suggestion",
        "action_id": CSR_SELECT_ACTION,
        "block_id": "csr",
        "value": typed,
        "team": {"id": TEAM},
        "user": {"id": REQUESTER},
        "view": {"id": "VSTANDIN", "type": "modal", "callback_id": FORM_CALLBACK},
    }
    options: list[dict[str, Any]] = json.loads(
        bot.send(urlencode({"payload": json.dumps(payload)})).body
    )["options"]
    return options


def test_a_typed_csr_id_comes_first_among_hundreds(make_bot: Any) -> None:
    bot: Bot = make_bot()
    rows = [{"CSR_ID": n, "DOMAIN_NAME": f"host{n}.example.com"} for n in range(1, 3001)]
    listing = {"result": {"status": "Success"}, "details": {"GeneratedList": rows}}

    with responses.RequestsMock() as mock:
        mock.add(responses.GET, LIST_URL, json=listing)
        options = suggest(bot, "12")

    assert len(options) == 100
    assert options[0]["value"] == "12"
    assert [option["value"] for option in options[1:3]] == ["2912", "2812"]


def test_a_catalog_too_big_for_a_select_gets_a_text_field(
    make_bot: Any, slack: SlackStandIn, pam360: Any
) -> None:
    catalog = {f"CA {number}": f"{number:x}" for number in range(1, 152)}
    bot: Bot = make_bot(signcsr_roots=catalog)

    bot.command("", user=REQUESTER)

    view = slack.wait_for("views.open")[0].args["view"]
    root = next(block for block in view["blocks"] if block["block_id"] == "root")
    assert root["element"]["type"] == "plain_text_input"
    submit_form(bot, slack, csr=303, root="CA 151")
    wait_until(lambda: bot.runtime.workflow.get(1).spec["root_serial"] == "97")


def test_the_prefilled_days_are_not_sent_to_a_microsoft_ca(
    make_bot: Any, slack: SlackStandIn, pam360: responses.RequestsMock
) -> None:
    bot: Bot = make_bot()
    answers: dict[str, Any] = {
        "csr": 303,
        "type": "msca",
        "server": "ca01",
        "ca": "Issuing",
        "template": "Web",
    }

    submit_form(bot, slack, user=APPROVER, days=365, **answers)
    submit_form(bot, slack, user=APPROVER, days=30, **answers)

    wait_until(lambda: len(sign_calls(pam360)) == 2)
    sent = sorted((call["operation"]["Details"] for call in sign_calls(pam360)), key=len)
    assert "Validity" not in sent[0]
    assert sent[1]["Validity"] == 30


def test_a_slow_csr_list_answers_the_select_in_time_and_fills_it_later(make_bot: Any) -> None:
    bot: Bot = make_bot()
    arrived = threading.Event()
    release = threading.Event()

    def slow_list(_request: Any) -> tuple[int, dict[str, str], str]:
        arrived.set()
        release.wait(timeout=20)
        return 200, {}, json.dumps(CSR_ROWS)

    with responses.RequestsMock() as mock:
        mock.add_callback(responses.GET, LIST_URL, callback=slow_list)
        # Slack gives up on an answer after 3 seconds: no options beat no answer.
        assert suggest(bot, "csr") == []
        assert arrived.is_set()
        release.set()

        wait_until(lambda: suggest(bot, "csr") != [])
        assert [call.request.url for call in mock.calls] == [LIST_URL]
