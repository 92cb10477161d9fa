"""What scenario tests share: PAM360's sample answers, and reading what Slack was sent."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs

import responses

from bot.slack.standin import Call, SlackStandIn
from bot.workflow import Refusal
from tests.conftest import SIGN_URL, Bot


def sign_calls(mock: responses.RequestsMock) -> list[dict[str, Any]]:
    """The INPUT_DATA of every signCSR PAM360 received."""
    bodies = []
    for call in mock.calls:
        if call.request.url == SIGN_URL:
            form = parse_qs(str(call.request.body))
            bodies.append(json.loads(form["INPUT_DATA"][0]))
    return bodies


def said(call: Call) -> str:
    """Everything a person would read in one posted message."""
    parts = [str(call.args.get("text", ""))]
    for block in call.args.get("blocks") or []:
        if "text" in block:
            parts.append(block["text"]["text"])
        for element in block.get("elements", []):
            text = element.get("text")
            parts.append(text["text"] if isinstance(text, dict) else str(text or ""))
    return "\n".join(parts)


def wait_until(check: Any, timeout: float = 10.0) -> None:
    """Polls `check` until it holds; a request not stored yet counts as not yet."""
    deadline = time.monotonic() + timeout
    while not holds(check):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def holds(check: Any) -> bool:
    try:
        return bool(check())
    except Refusal:
        return False


def card_with_buttons(slack: SlackStandIn, bot: Bot | None = None) -> Call:
    """The approval message, once the bot has recorded where it is (a person can only click
    it after that; a test could click sooner)."""
    posted = slack.wait_for("chat.postMessage", where=lambda c: "thread_ts" not in c.args)
    if bot is not None:
        wait_until(lambda: bot.runtime.workflow.get(1).message_ts is not None)
    return posted[0]


def button_ids(call: Call) -> list[str]:
    return [
        element["action_id"]
        for block in call.args.get("blocks") or []
        if block["type"] == "actions"
        for element in block["elements"]
    ]
