"""Scenario tests: signed Slack requests through the Bolt app, PAM360 faked at HTTP."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import responses
from urllib3.exceptions import MaxRetryError, NewConnectionError

from bot.commands import parse_sign_command
from bot.slack.messages import APPROVE_ACTION, DENY_ACTION
from bot.slack.standin import SlackStandIn
from tests.conftest import (
    APPROVER,
    APPROVER_2,
    CHANNEL,
    CSR_ROWS,
    GROUP_APPROVER,
    LIST_URL,
    REQUESTER,
    ROOT_SERIAL,
    SIGN_URL,
    STRANGER,
    SUCCESS,
    Bot,
    signed_headers,
)
from tests.scenario import button_ids, card_with_buttons, said, sign_calls, wait_until


def test_approver_signs_own_request_at_once(
    make_bot: Any, slack: SlackStandIn, pam360: Any
) -> None:
    bot: Bot = make_bot()

    response = bot.command("303 root=testroot days=100", user=APPROVER)

    assert response.status == 200
    update = slack.wait_for("chat.update")[0]
    assert "Signed" in said(update)
    assert "Certificate_ID 309" in said(update) and "b7d5fcb7" in said(update)
    assert sign_calls(pam360) == [
        {
            "operation": {
                "Details": {
                    "signType": "signWithRoot",
                    "rootCertificateCommonName": "testroot",
                    "rootCertificateSerialNumber": ROOT_SERIAL,
                    "Validity": 100,
                    "isIntermediate": "false",
                    "CSR_ID": "303",
                }
            }
        }
    ]
    assert button_ids(slack.calls_to("chat.postMessage")[0]) == []


def test_request_then_approval_signs_once_and_tells_everyone(
    make_bot: Any, slack: SlackStandIn, pam360: Any
) -> None:
    bot: Bot = make_bot()

    bot.command('303 root=testroot days=100 reason="new payments API"', user=REQUESTER)
    card = card_with_buttons(slack, bot)
    assert card.args["channel"] == CHANNEL
    assert button_ids(card) == [APPROVE_ACTION, DENY_ACTION]
    text = said(card)
    for words in (
        "#1",
        f"<@{REQUESTER}>",
        "303",
        "csrtest",
        "EC 256",
        "testroot",
        ROOT_SERIAL,
        "100 days",
        "Intermediate:* no",
        "signWithRoot",
        "new payments API",
    ):
        assert words in text
    note = slack.wait_for("response_url")[0]
    assert "Request #1 is waiting for an approver" in note.args["text"]
    assert sign_calls(pam360) == []

    bot.click(APPROVE_ACTION, 1, APPROVER)

    reply = slack.wait_for("chat.postMessage", where=lambda c: "thread_ts" in c.args)[0]
    assert reply.args["thread_ts"] == slack.calls_to("chat.update")[0].args["ts"]
    assert "Signed" in reply.args["text"]
    direct = slack.wait_for("chat.postMessage", where=lambda c: c.args["channel"] == REQUESTER)
    assert "Your signing request #1" in direct[0].args["text"]
    updates = [said(call) for call in slack.calls_to("chat.update")]
    assert any(f"Approved by <@{APPROVER}>" in text for text in updates)
    assert "Signed" in updates[-1] and button_ids(slack.calls_to("chat.update")[-1]) == []
    assert len(sign_calls(pam360)) == 1


def test_deny_sends_nothing_to_pam360(make_bot: Any, slack: SlackStandIn, pam360: Any) -> None:
    bot: Bot = make_bot()
    bot.command("303 root=testroot", user=REQUESTER)
    card_with_buttons(slack, bot)

    bot.click(DENY_ACTION, 1, GROUP_APPROVER)

    update = slack.wait_for("chat.update")[0]
    assert f"Denied* by <@{GROUP_APPROVER}>" in said(update)
    assert button_ids(update) == []
    assert sign_calls(pam360) == []


def test_non_approver_click_is_refused_and_changes_nothing(
    make_bot: Any, slack: SlackStandIn, pam360: Any
) -> None:
    bot: Bot = make_bot()
    bot.command("303 root=testroot", user=REQUESTER)
    card_with_buttons(slack, bot)

    bot.click(APPROVE_ACTION, 1, STRANGER)

    refusal = slack.wait_for("response_url", where=lambda c: "click" in c.path)[0]
    assert refusal.args["text"] == "Only approvers can approve or deny signing requests."
    assert refusal.args["response_type"] == "ephemeral"
    assert bot.runtime.workflow.get(1).state == "pending"
    assert slack.calls_to("chat.update") == []
    assert sign_calls(pam360) == []


def test_requester_cannot_approve_own_request_without_self_approval(
    make_bot: Any, slack: SlackStandIn, pam360: Any
) -> None:
    bot: Bot = make_bot(signcsr_self_approval=False)
    bot.command("303 root=testroot", user=APPROVER)
    card_with_buttons(slack, bot)

    bot.click(APPROVE_ACTION, 1, APPROVER)

    refusal = slack.wait_for("response_url", where=lambda c: "click" in c.path)[0]
    assert "another approver has to decide it" in refusal.args["text"]
    assert bot.runtime.workflow.get(1).state == "pending"
    assert sign_calls(pam360) == []


def test_same_approval_twice_signs_once(make_bot: Any, slack: SlackStandIn, pam360: Any) -> None:
    bot: Bot = make_bot()
    bot.command("303 root=testroot", user=REQUESTER)
    card_with_buttons(slack, bot)

    bot.click(APPROVE_ACTION, 1, APPROVER)
    bot.click(APPROVE_ACTION, 1, APPROVER)
    slack.wait_for("chat.postMessage", where=lambda c: c.args["channel"] == REQUESTER)
    later = slack.wait_for("response_url", where=lambda c: "click" in c.path)[0]

    assert "already" in later.args["text"]
    assert len(sign_calls(pam360)) == 1


def test_two_approvers_at_once_sign_once(make_bot: Any, slack: SlackStandIn, pam360: Any) -> None:
    bot: Bot = make_bot()
    bot.command("303 root=testroot", user=REQUESTER)
    card_with_buttons(slack, bot)
    bodies = [bot.click_body(APPROVE_ACTION, 1, user) for user in (APPROVER, APPROVER_2)] * 3
    start = threading.Barrier(len(bodies))

    def click(body: str) -> None:
        start.wait()
        bot.send(body)

    threads = [threading.Thread(target=click, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    slack.wait_for("chat.postMessage", where=lambda c: c.args["channel"] == REQUESTER)
    slack.wait_for("response_url", count=len(bodies) - 1, where=lambda c: "click" in c.path)

    assert len(sign_calls(pam360)) == 1
    approvals = [e for e in bot.runtime.workflow.history(1) if e.state == "signing"]
    assert len(approvals) == 1


def test_slow_pam360_does_not_hold_up_the_ack(make_bot: Any, slack: SlackStandIn) -> None:
    bot: Bot = make_bot()

    def slow_sign(_request: Any) -> tuple[int, dict[str, str], str]:
        time.sleep(5)
        return 200, {}, json.dumps(SUCCESS)

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.GET, LIST_URL, json=CSR_ROWS)
        mock.add_callback(responses.POST, SIGN_URL, callback=slow_sign)
        started = time.monotonic()
        response = bot.command("303 root=testroot", user=APPROVER)
        elapsed = time.monotonic() - started

        assert response.status == 200
        assert elapsed < 1.5
        update = slack.wait_for("chat.update", timeout=15)[0]
    assert "Signed" in said(update)


@dataclass
class HeldPAM360:
    """A PAM360 whose signCSR answers only once released; `arrived` counts the calls as they
    come in (`responses` records a call only once it is answered)."""

    mock: responses.RequestsMock
    release: threading.Event
    arrived: list[Any]


@contextmanager
def held_pam360() -> Iterator[HeldPAM360]:
    release = threading.Event()
    arrived: list[Any] = []

    def held_sign(request: Any) -> tuple[int, dict[str, str], str]:
        arrived.append(request)
        release.wait(timeout=20)
        return 200, {}, json.dumps(SUCCESS)

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.GET, LIST_URL, json=CSR_ROWS)
        mock.add_callback(responses.POST, SIGN_URL, callback=held_sign)
        try:
            yield HeldPAM360(mock, release, arrived)
        finally:
            release.set()


def test_slow_signings_leave_threads_for_every_ack(make_bot: Any, slack: SlackStandIn) -> None:
    bot: Bot = make_bot()

    with held_pam360() as pam360:
        arrived, release = pam360.arrived, pam360.release
        # More signings in flight than there are listener threads.
        for number in range(20):
            assert bot.command(f"{300 + number} root=testroot", user=APPROVER).status == 200
        wait_until(lambda: len(arrived) == 20)

        helped = bot.command("help", user=REQUESTER)
        bot.command("list", user=REQUESTER)
        listed = slack.wait_for(
            "response_url", where=lambda c: "No signing requests" in str(c.args)
        )
        release.set()

        assert helped.status == 200 and "Approvers" in json.loads(helped.body)["text"]
        assert listed
        wait_until(
            lambda: all(r.state == "signed" for r in map(bot.runtime.workflow.get, range(1, 21)))
        )


def test_a_click_while_signing_leaves_the_card_to_the_signer(
    make_bot: Any, slack: SlackStandIn
) -> None:
    bot: Bot = make_bot()

    with held_pam360() as pam360:
        mock, arrived, release = pam360.mock, pam360.arrived, pam360.release
        bot.command("303 root=testroot", user=REQUESTER)
        card_with_buttons(slack, bot)
        bot.click(APPROVE_ACTION, 1, APPROVER)
        wait_until(lambda: len(arrived) == 1)

        bot.click(APPROVE_ACTION, 1, APPROVER_2)
        slack.wait_for("response_url", where=lambda c: "already approved" in str(c.args))
        release.set()
        wait_until(lambda: len(slack.calls_to("chat.update")) == 2)
        assert len(sign_calls(mock)) == 1

    updates = [said(call) for call in slack.calls_to("chat.update")]
    assert "signing in PAM360" in updates[0] and "Signed" in updates[1]


def test_a_card_slack_will_not_post_withdraws_the_request(
    make_bot: Any, slack: SlackStandIn, pam360: Any
) -> None:
    bot: Bot = make_bot()
    slack.failures["chat.postMessage"] = "ratelimited"

    bot.command("303 root=testroot", user=REQUESTER)

    note = slack.wait_for("response_url")[0].args
    assert note["response_type"] == "ephemeral"
    assert "could not post request #1" in note["text"] and "ratelimited" in note["text"]
    assert bot.runtime.workflow.get(1).state == "cancelled"
    assert bot.runtime.workflow.pending(None) == []


def test_an_approvers_own_request_is_signed_even_if_its_card_cannot_be_posted(
    make_bot: Any, slack: SlackStandIn, pam360: Any
) -> None:
    bot: Bot = make_bot()
    slack.failures["chat.postMessage"] = "ratelimited"

    bot.command("303 root=testroot", user=APPROVER)

    wait_until(lambda: bot.runtime.workflow.get(1).state == "signed")
    outcome = slack.wait_for("response_url", where=lambda c: "Signed" in str(c.args))
    assert "Certificate_ID 309" in said(outcome[-1])
    assert len(sign_calls(pam360)) == 1


def test_restart_between_request_and_click_still_signs(
    make_bot: Any, slack: SlackStandIn, pam360: Any
) -> None:
    first: Bot = make_bot()
    first.command("303 root=testroot", user=REQUESTER)
    card = card_with_buttons(slack, first)
    first.close()

    second: Bot = make_bot()
    second.click(APPROVE_ACTION, 1, APPROVER)

    update = slack.wait_for("chat.update", count=2)[-1]
    assert update.args["ts"] == slack.calls_to("chat.update")[0].args["ts"]
    assert card.args["channel"] == update.args["channel"]
    assert "Signed" in said(update)
    assert len(sign_calls(pam360)) == 1


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("abc root=testroot", "CSR ID must be a number"),
        ("303 root=testroot days=900", "825-day limit"),
        ("303 root=otherroot", "Unknown CA"),
        ("303 root=testroot colour=blue", "colour"),
        ("303 root=testroot reason=<@U123|bob>", "mention"),
        ("303 root=testroot reason=" + "x" * 2000, "2,000"),
    ],
)
def test_bad_input_gets_words_and_changes_nothing(
    make_bot: Any, slack: SlackStandIn, pam360: Any, text: str, words: str
) -> None:
    bot: Bot = make_bot()

    response = bot.command(text, user=APPROVER)

    assert response.status == 200
    body = json.loads(response.body)
    assert body["response_type"] == "ephemeral"
    assert words in body["text"] and "Usage:" in body["text"]
    assert bot.runtime.store.pending() == []
    assert bot.runtime.store.get(1) is None
    assert [c for c in pam360.calls if c.request.url == SIGN_URL] == []
    assert slack.calls_to("chat.postMessage") == []


def refused() -> requests.ConnectionError:
    """What requests raises when nothing listens: nothing was sent."""
    reason = NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    return requests.ConnectionError(MaxRetryError(None, SIGN_URL, reason))  # type: ignore[arg-type]


def answer_with(mock: responses.RequestsMock, **kwargs: Any) -> None:
    mock.replace(responses.POST, SIGN_URL, **kwargs)


@pytest.mark.parametrize(
    ("answer", "state", "words"),
    [
        (
            {"json": {"result": {"message": "CSR 303 not found.", "status": "Failed"}}},
            "failed",
            "PAM360 said: CSR 303 not found.",
        ),
        (
            {"status": 401, "json": {"result": {"message": "bad", "status": "Failed"}}},
            "failed",
            "PAM360_AUTHTOKEN",
        ),
        ({"body": "<html>login</html>", "content_type": "text/html"}, "failed", "HTML page"),
        ({"status": 502, "body": "bad gateway"}, "unknown", "Check PAM360"),
        ({"status": 500, "body": "Internal error"}, "unknown", "Check PAM360"),
        (
            {"status": 500, "json": {"result": {"message": "No such root.", "status": "Failed"}}},
            "failed",
            "PAM360 said: No such root.",
        ),
        (
            {"json": {"result": {"message": "Signed it.", "status": "Success"}}},
            "signed",
            "PAM360 said: Signed it.",
        ),
        ({"body": requests.exceptions.ReadTimeout("slow")}, "unknown", "may have signed"),
        ({"body": refused()}, "failed", "Could not connect to PAM360"),
    ],
)
def test_pam360_failures_reach_the_channel_in_words(
    make_bot: Any,
    slack: SlackStandIn,
    pam360: responses.RequestsMock,
    answer: dict[str, Any],
    state: str,
    words: str,
) -> None:
    bot: Bot = make_bot()
    answer_with(pam360, **answer)

    bot.command("303 root=testroot", user=APPROVER)

    update = slack.wait_for("chat.update")[0]
    assert words in said(update)
    wait_until(lambda: bot.runtime.workflow.get(1).state == state)
    # A refused connection sent nothing, so it alone is tried again.
    attempts = 3 if "connect" in words else 1
    assert len(sign_calls(pam360)) == attempts


@pytest.mark.parametrize(
    "headers",
    [
        {"x-slack-signature": "v0=" + "0" * 64},
        {"x-slack-request-timestamp": str(int(time.time()) - 360)},
    ],
    ids=["forged-signature", "six-minutes-old"],
)
def test_unsigned_or_stale_requests_are_refused(
    make_bot: Any, slack: SlackStandIn, pam360: Any, headers: dict[str, str]
) -> None:
    bot: Bot = make_bot()
    body = bot.command_body("303 root=testroot", APPROVER)
    sent = signed_headers(body, at=int(headers.get("x-slack-request-timestamp", time.time())))
    sent.update(headers)

    response = bot.send(body, sent)

    assert response.status == 401
    time.sleep(0.2)
    assert bot.runtime.store.get(1) is None
    assert slack.calls_to("chat.postMessage") == []
    assert sign_calls(pam360) == []


def test_unreadable_approver_group_fails_closed(
    make_bot: Any, slack: SlackStandIn, pam360: Any
) -> None:
    bot: Bot = make_bot(signcsr_approvers=f"{APPROVER},SNOSUCHGROUP")
    bot.command("303 root=testroot", user=REQUESTER)
    card_with_buttons(slack, bot)

    bot.click(APPROVE_ACTION, 1, STRANGER)

    refusal = slack.wait_for("response_url", where=lambda c: "click" in c.path)[0]
    assert "SNOSUCHGROUP could not be read (no_such_subteam)" in refusal.args["text"]
    assert bot.runtime.workflow.get(1).state == "pending"
    assert sign_calls(pam360) == []


def test_channel_bot_is_not_in_falls_back_to_response_url(
    make_bot: Any, slack: SlackStandIn, pam360: Any
) -> None:
    slack.failing_channels[CHANNEL] = "not_in_channel"
    bot: Bot = make_bot()

    bot.command("303 root=testroot", user=REQUESTER)

    posted = slack.wait_for("response_url", count=2)
    in_channel = next(c for c in posted if c.args.get("response_type") == "in_channel")
    assert "Signing request #1" in said(in_channel) and button_ids(in_channel)
    invite = next(c for c in posted if c.args.get("response_type") == "ephemeral")
    assert "/invite @signcsr-bot" in invite.args["text"]

    bot.click(APPROVE_ACTION, 1, APPROVER)
    replaced = slack.wait_for(
        "response_url", where=lambda c: bool(c.args.get("replace_original")) and "Signed" in said(c)
    )
    assert replaced and len(sign_calls(pam360)) == 1


def test_help_lists_catalog_limits_and_approvers(make_bot: Any) -> None:
    bot: Bot = make_bot()

    body = json.loads(bot.command("help").body)

    assert body["response_type"] == "ephemeral"
    for words in ("testroot", ROOT_SERIAL, "825", "1825", f"<@{APPROVER}>", "<!subteam^SPKIGROUP>"):
        assert words in body["text"]
    # Typed placeholders are escaped, or Slack would read <id> as a link.
    assert "status &lt;id&gt;" in body["text"] and "<id>" not in body["text"]


def test_help_with_a_large_catalog_fits_and_its_example_can_be_pasted(make_bot: Any) -> None:
    catalog = {f"Corp Root CA {year}": f"{year:x}" for year in range(1900, 2052)}
    bot: Bot = make_bot(signcsr_roots=catalog)

    text = json.loads(bot.command("help").body)["text"]

    assert len(text) <= 3900 and "and 122 more" in text
    example = text.split("Example: `", 1)[1].split("`", 1)[0]
    assert example.startswith('/signcsr 303 root="Corp Root CA 1900" days=100')
    assert parse_sign_command(example.removeprefix("/signcsr "), bot.runtime.settings)


def test_a_serial_that_is_not_the_catalogs_is_flagged_for_the_approver(
    make_bot: Any, slack: SlackStandIn, pam360: Any
) -> None:
    bot: Bot = make_bot()

    bot.command("303 root=testroot serial=0bad", user=REQUESTER)

    card = said(card_with_buttons(slack))
    assert "(serial `bad`) :warning: *not the catalog's serial for this CA*" in card
    assert f"(`{ROOT_SERIAL}`)" in card


def test_microsoft_ca_validity_is_shown_as_asked_not_promised(
    make_bot: Any, slack: SlackStandIn, pam360: Any
) -> None:
    bot: Bot = make_bot()

    bot.command("303 server=ca01 ca=IssuingCA template=WebServer days=30", user=APPROVER)

    final = said(slack.wait_for("chat.update")[-1])
    assert "30 days asked (the template may set another)" in final
    assert "template WebServer sets its validity" in final
    assert "valid 30 days" not in final
    assert sign_calls(pam360)[0]["operation"]["Details"]["Validity"] == 30


def test_notes_name_the_configured_command(make_bot: Any, slack: SlackStandIn, pam360: Any) -> None:
    bot: Bot = make_bot(signcsr_command="/pki-sign")

    bot.command("303 root=testroot", user=REQUESTER)

    note = slack.wait_for("response_url")[0].args["text"]
    assert "`/pki-sign status 1`" in note and "`/pki-sign cancel 1`" in note
    assert "/signcsr" not in note


def test_hostile_reason_is_shown_inert(make_bot: Any, slack: SlackStandIn, pam360: Any) -> None:
    bot: Bot = make_bot()

    bot.command("303 root=testroot reason=ping &lt;!channel&gt; *now*", user=REQUESTER)

    card = said(card_with_buttons(slack))
    assert "<!channel>" not in card
    assert "&lt;!channel&gt;" in card


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_click_on_expired_request_expires_it(
    make_bot: Any, slack: SlackStandIn, pam360: Any
) -> None:
    clock = Clock()
    bot: Bot = make_bot(clock=clock)
    bot.command("303 root=testroot", user=REQUESTER)
    card_with_buttons(slack, bot)

    clock.now += timedelta(hours=73)
    bot.click(APPROVE_ACTION, 1, APPROVER)

    update = slack.wait_for("chat.update")[0]
    assert "Expired" in said(update) and button_ids(update) == []
    assert bot.runtime.workflow.get(1).state == "expired"
    assert sign_calls(pam360) == []
    told = slack.wait_for("chat.postMessage", where=lambda c: c.args["channel"] == REQUESTER)
    assert "Expired" in told[0].args["text"]


def test_signing_whose_signer_died_becomes_unknown_and_is_not_resent(
    make_bot: Any, slack: SlackStandIn, pam360: Any
) -> None:
    clock = Clock()
    bot: Bot = make_bot(clock=clock)
    bot.command("303 root=testroot", user=REQUESTER)
    card_with_buttons(slack, bot)
    workflow = bot.runtime.workflow
    assert workflow.approve(1, APPROVER).kind == "approved"  # the signer then "dies"

    # Three connects that time out (10 s each, retried as nothing was sent), then an answer
    # awaited for 10 s more: the sweep must not call such a signer dead.
    assert workflow.signing_deadline > timedelta(seconds=4 * 10 + 60)
    clock.now += workflow.signing_deadline - timedelta(seconds=1)
    assert workflow.sweep() == []
    clock.now += timedelta(seconds=2)
    bot.command("status 1", user=REQUESTER)

    status = slack.wait_for("response_url", where=lambda c: "Outcome unknown" in c.args["text"])
    assert "check it before asking again" in status[0].args["text"]
    assert workflow.get(1).state == "unknown"
    told = slack.wait_for("chat.postMessage", where=lambda c: c.args["channel"] == REQUESTER)
    assert "Outcome unknown" in told[0].args["text"]
    bot.click(APPROVE_ACTION, 1, APPROVER)
    slack.wait_for("response_url", where=lambda c: "already" in c.args.get("text", ""))
    assert sign_calls(pam360) == []


def test_approval_channel_receives_the_card_and_the_requester_is_pointed_there(
    make_bot: Any, slack: SlackStandIn, pam360: Any
) -> None:
    bot: Bot = make_bot(signcsr_approval_channel="CAPPROVALS")

    bot.command("303 root=testroot", user=REQUESTER, channel="CENGINEERING")

    card = card_with_buttons(slack, bot)
    assert card.args["channel"] == "CAPPROVALS"
    note = slack.wait_for("response_url")[0]
    assert note.args["response_type"] == "ephemeral"
    assert "waiting for an approver in <#CAPPROVALS>" in note.args["text"]
