"""Shared fixtures: a hermetic environment, a Slack stand-in, and a bot driven as Slack does."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import responses
from slack_bolt.request import BoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier

from bot.config import Settings
from bot.runtime import Runtime, build_runtime
from bot.slack.standin import TEAM, SlackStandIn
from bot.workflow import Clock, utc_now

FIXTURES = Path(__file__).parent / "fixtures"
CSR_DIR = FIXTURES / "csr"
SIGNING_SECRET = "test-signing-secret-0f1e2d3c"
PAM360_TOKEN = "PAM360-TOKEN-must-never-leak-7c1d"
PAM360_URL = "https://pam360.test:8282"
ROOT_SERIAL = "1879376424c"
APPROVER = "UAPPROVER1"
APPROVER_2 = "UAPPROVER2"
GROUP_APPROVER = "UGROUPPKI1"
REQUESTER = "UREQUESTER"
STRANGER = "USTRANGER1"
CHANNEL = "CPKIREQUESTS"


SIGN_URL = f"{PAM360_URL}/api/pki/restapi/signCSR"
LIST_URL = f"{PAM360_URL}/api/pki/restapi/getCSRList"
SUCCESS = {
    "result": {
        "message": "Certificate csrtest successfully signed with testroot.",
        "status": "Success",
    },
    "name": "SignCSR",
    "details": [{"commonName": "csrtest", "Certificate_ID": 309, "serialNumber": "b7d5fcb7"}],
}
CSR_ROWS = {
    "result": {"message": "ok", "status": "Success"},
    "name": "GetCSRList",
    "details": {
        "GeneratedList": [
            {
                "CSR_ID": 303,
                "DOMAIN_NAME": "csrtest",
                "KEYALGORITHM": "EC",
                "KEY_STRENGTH": "256",
                "CREATED_BY": "admin",
                "CREATED_DATE": "2026-12-01",
            }
        ],
        "totalRows": 1,
    },
}


@pytest.fixture(autouse=True)
def hermetic_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator's variables (or a proxy) must not change what the tests see."""
    for name in list(os.environ):
        upper = name.upper()
        if upper.startswith(("SLACK_", "PAM360_", "SIGNCSR_")) or upper in (
            "LOG_LEVEL",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "REQUESTS_CA_BUNDLE",
            "CURL_CA_BUNDLE",
        ):
            monkeypatch.delenv(name)


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn(groups={"SPKIGROUP": [GROUP_APPROVER]}) as standin:
        yield standin


def bot_settings(slack: SlackStandIn, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "slack_bot_token": "xoxb-test-bot-token",
        "slack_signing_secret": SIGNING_SECRET,
        "slack_api_url": slack.api_url,
        "pam360_url": PAM360_URL,
        "pam360_authtoken": PAM360_TOKEN,
        "pam360_timeout": 10,
        "signcsr_approvers": f"{APPROVER},{APPROVER_2},SPKIGROUP",
        "signcsr_roots": f"testroot={ROOT_SERIAL}",
        "signcsr_database": f"sqlite:///{tmp_path / 'signcsr.db'}",
    }
    values.update(overrides)
    return Settings.from_values(values)


def signed_headers(
    body: str, secret: str = SIGNING_SECRET, at: int | None = None
) -> dict[str, str | Sequence[str]]:
    """Headers as Slack signs a request: v0 HMAC over the timestamp and body."""
    timestamp = str(int(time.time()) if at is None else at)
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body) or ""
    return {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": timestamp,
        "x-slack-signature": signature,
    }


@dataclass
class Bot:
    """The real Bolt app, fed requests the way Slack sends them."""

    runtime: Runtime
    slack: SlackStandIn

    def command_body(self, text: str, user: str, channel: str = CHANNEL) -> str:
        return urlencode(
            {
                "token": "legacy-unused",
                "team_id": TEAM,
                "channel_id": channel,
                "user_id": user,
                "user_name": user.lower(),
                "command": self.runtime.settings.signcsr_command,
                "text": text,
                "response_url": self.slack.response_url(f"command-{user}"),
                "trigger_id": "1337.42.abcd",
            }
        )

    def command(self, text: str, user: str = REQUESTER, channel: str = CHANNEL) -> BoltResponse:
        return self.send(self.command_body(text, user, channel))

    def click_body(self, action_id: str, request_id: int | str, user: str) -> str:
        payload = {
            "type": "block_actions",
            "team": {"id": TEAM},
            "user": {"id": user},
            "channel": {"id": CHANNEL},
            "container": {"type": "message", "channel_id": CHANNEL},
            "response_url": self.slack.response_url(f"click-{user}"),
            "trigger_id": "1338.42.abcd",
            "actions": [{"type": "button", "action_id": action_id, "value": str(request_id)}],
        }
        return urlencode({"payload": json.dumps(payload)})

    def click(self, action_id: str, request_id: int | str, user: str) -> BoltResponse:
        return self.send(self.click_body(action_id, request_id, user))

    def send(
        self, body: str, headers: dict[str, str | Sequence[str]] | None = None
    ) -> BoltResponse:
        request = BoltRequest(body=body, headers=headers or signed_headers(body))
        return self.runtime.app.dispatch(request)

    def close(self) -> None:
        self.runtime.close()


def start_bot(slack: SlackStandIn, settings: Settings, clock: Clock = utc_now) -> Bot:
    client = WebClient(token=settings.slack_bot_token.get_secret_value(), base_url=slack.api_url)
    return Bot(build_runtime(settings, client=client, clock=clock), slack)


@pytest.fixture
def make_bot(slack: SlackStandIn, tmp_path: Path) -> Iterator[Any]:
    """Builds bots on the stand-in; every bot made is closed at the end."""
    made: list[Bot] = []

    def make(clock: Clock = utc_now, **overrides: Any) -> Bot:
        bot = start_bot(slack, bot_settings(slack, tmp_path, **overrides), clock)
        made.append(bot)
        return bot

    yield make
    for bot in made:
        bot.close()


@pytest.fixture
def pam360() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.GET, LIST_URL, json=CSR_ROWS)
        mock.add(responses.POST, SIGN_URL, json=SUCCESS)
        yield mock
