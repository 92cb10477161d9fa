"""The bot token, signing secret and PAM360 token never reach a log, Slack, the store or a repr,
whatever happens: a signing, a PAM360 failure, a forged request, a bad command."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses

from bot.slack.messages import APPROVE_ACTION
from bot.slack.standin import SlackStandIn
from tests.conftest import (
    APPROVER,
    CSR_ROWS,
    LIST_URL,
    PAM360_TOKEN,
    REQUESTER,
    SIGN_URL,
    SIGNING_SECRET,
    SUCCESS,
    Bot,
    signed_headers,
)
from tests.scenario import card_with_buttons, said

BOT_TOKEN = "xoxb-bot-token-must-never-leak-5e4f"
SECRETS = (BOT_TOKEN, SIGNING_SECRET, PAM360_TOKEN)
FORGED_MARKER = "forged-request-text-stays-out-of-the-log"


@pytest.fixture
def pam360() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.GET, LIST_URL, json=CSR_ROWS)
        mock.add(responses.POST, SIGN_URL, json=SUCCESS)
        yield mock


def run_every_kind_of_request(bot: Bot, slack: SlackStandIn, pam360: Any) -> None:
    """A request approved and signed, a PAM360 refusal, a forged request, a bad command."""
    bot.command("303 root=testroot days=100", user=REQUESTER)
    card_with_buttons(slack, bot)
    bot.click(APPROVE_ACTION, 1, APPROVER)
    slack.wait_for("chat.postMessage", where=lambda c: c.args["channel"] == REQUESTER)

    refusal = {"result": {"message": "Authentication failed.", "status": "Failed"}}
    pam360.replace(responses.POST, SIGN_URL, status=401, json=refusal)
    bot.command("303 root=testroot", user=APPROVER)
    slack.wait_for("chat.update", where=lambda c: "PAM360_AUTHTOKEN" in said(c))

    forged_body = bot.command_body(f"303 root=testroot reason={FORGED_MARKER}", APPROVER)
    forged = bot.send(forged_body, signed_headers(forged_body, secret="guessed-secret"))
    assert forged.status == 401

    bad = bot.command("303 root=testroot colour=blue", user=APPROVER)
    assert "colour" in json.loads(bad.body)["text"]


def test_secrets_stay_out_of_logs_slack_store_and_reprs(
    make_bot: Any,
    slack: SlackStandIn,
    pam360: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    bot: Bot = make_bot(slack_bot_token=BOT_TOKEN)

    run_every_kind_of_request(bot, slack, pam360)

    # The secrets were in use, so their absence below means something.
    assert all(c.request.headers["AUTHTOKEN"] == PAM360_TOKEN for c in pam360.calls)
    wire = [
        r for r in caplog.records if r.name.startswith("slack_sdk") and r.levelno == logging.DEBUG
    ]
    assert wire
    messages = [record.getMessage() for record in caplog.records]
    store = b"".join(path.read_bytes() for path in tmp_path.glob("signcsr.db*"))
    reprs = [repr(bot.runtime), repr(bot.runtime.settings), str(bot.runtime.settings)]
    reprs.append(bot.runtime.settings.model_dump_json())
    slack_calls = [json.dumps(call.args) + call.path for call in slack.calls]
    for secret in SECRETS:
        assert secret not in caplog.text
        assert not [message for message in messages if secret in message]
        assert not [call for call in slack_calls if secret in call]
        assert secret.encode() not in store
        assert not [text for text in reprs if secret in text]
    # Bolt logs a rejected request's whole body at INFO unless its logger is kept above that.
    assert FORGED_MARKER not in caplog.text
