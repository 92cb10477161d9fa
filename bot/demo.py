"""`signcsr-bot demo`: the whole flow offline, printed as a person in the channel would see it."""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier

from bot.config import Settings
from bot.pam360.client import build_client
from bot.runtime import Runtime, build_runtime
from bot.sandbox.server import Sandbox
from bot.slack.messages import APPROVE_ACTION
from bot.slack.standin import TEAM, Call, SlackStandIn

# Only the local stand-in ever sees this token.
DEMO_BOT_TOKEN = "xoxb-demo"  # noqa: S105
CHANNEL = "C0PKIREQ"
CHANNEL_NAME = "pki-requests"
REQUESTER = "U0SAM"
APPROVER = "U0PRIYA"
PEOPLE = {REQUESTER: "Sam (engineer)", APPROVER: "Priya (PKI approver)"}
CSR_NAME = "payments-api.demo.example"
CA_NAME = "testintermediate"
DAYS = 90
EMOJI = {
    ":hourglass_flowing_sand:": "⏳",
    ":gear:": "⚙",
    ":white_check_mark:": "✅",
    ":x:": "❌",
    ":warning:": "⚠",
    ":no_entry:": "⛔",
}
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy")


class DemoFailed(Exception):
    """A step of the demo did not hold."""


def say(text: str = "") -> None:
    print(text, flush=True)


def readable(mrkdwn: str) -> str:
    """Slack's markup as a person reads it: names for mentions, no asterisks."""
    text = re.sub(
        r"<@(\w+)>", lambda m: "@" + PEOPLE.get(m.group(1), m.group(1)).split()[0], mrkdwn
    )
    text = re.sub(r"<#\w+>", "#" + CHANNEL_NAME, text)
    text = re.sub(r"<!subteam\^\w+>", "@pki-approvers", text)
    text = text.replace("*", "").replace("`", "")
    for code, symbol in EMOJI.items():
        text = text.replace(code, symbol)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def message_lines(call: Call) -> list[str]:
    """The text of a posted message, block by block, with its buttons."""
    blocks = call.args.get("blocks") or []
    if not blocks:
        return readable(str(call.args.get("text", ""))).splitlines()
    lines: list[str] = []
    for block in blocks:
        if block.get("type") == "actions":
            lines.append("  ".join(f"[{e['text']['text']}]" for e in block["elements"]))
        elif "text" in block:
            lines.extend(readable(block["text"]["text"]).splitlines())
        for element in block.get("elements", []) if block.get("type") == "context" else []:
            lines.extend(readable(element["text"]).splitlines())
    return lines


def show(call: Call) -> None:
    """Prints what the bot just did in Slack."""
    method, args = call.method, call.args
    if method == "chat.postMessage" and args.get("channel") in PEOPLE:
        heading = f"signcsr-bot → direct message to {PEOPLE[args['channel']]}:"
    elif method == "chat.postMessage" and args.get("thread_ts"):
        heading = "signcsr-bot, replying in the thread:"
    elif method == "chat.postMessage":
        heading = f"signcsr-bot posts in #{CHANNEL_NAME}:"
    elif method == "chat.update":
        heading = "signcsr-bot updates its message:"
    elif method == "response_url":
        heading = "signcsr-bot (only you can see this):"
    else:
        return
    say(heading)
    for line in message_lines(call):
        say(f"    {line}")
    say()


def make_csr() -> bytes:
    """A fresh CSR, as an engineer would generate one; the key is thrown away."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, CSR_NAME),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Payments"),
        ]
    )
    sans = x509.SubjectAlternativeName([x509.DNSName(CSR_NAME)])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    csr = builder.add_extension(sans, critical=False).sign(key, hashes.SHA256())
    return csr.public_bytes(Encoding.PEM)


def signed_post(runtime: Runtime, secret: str, body: str) -> int:
    """Sends a request to the Bolt app exactly as Slack would, signature and all."""
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body) or ""
    headers: dict[str, Any] = {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": timestamp,
        "x-slack-signature": signature,
    }
    return runtime.app.dispatch(BoltRequest(body=body, headers=headers)).status


@contextmanager
def quiet_environment() -> Iterator[None]:
    """The demo talks only to loopback: an operator's proxy settings must not reroute it."""
    saved = {name: os.environ.pop(name) for name in PROXY_VARIABLES if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def run_demo() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with quiet_environment(), tempfile.TemporaryDirectory(prefix="signcsr-demo-") as workdir:
        try:
            walk_through(Path(workdir))
        except DemoFailed as exc:
            say(f"Demo FAILED: {exc}")
            return 1
    say("Demo passed: requested, approved, signed once, and the certificate verified.")
    return 0


def walk_through(workdir: Path) -> None:
    with ExitStack() as stack:
        sandbox = Sandbox(workdir / "sandbox", port=0, token=secrets.token_hex(16))
        sandbox.start()
        stack.callback(sandbox.stop)
        say("signcsr-bot demo: the whole flow, offline.\n")
        say(f"1. PAM360 sandbox running at {sandbox.url}")
        say(f"   CAs: {', '.join(f'{n} (serial {s})' for n, s in sandbox.roots.items())}")

        pam360 = build_client(sandbox.url, sandbox.token, ca_bundle=sandbox.ca_bundle)
        stack.callback(pam360.close)
        csr = pam360.import_csr(make_csr(), filename="payments-api.csr")
        say(f"2. Imported a CSR for {csr.domain_name} into PAM360: CSR ID {csr.csr_id}.")

        slack = SlackStandIn(on_call=show).start()
        stack.callback(slack.stop)
        secret = secrets.token_hex(16)
        runtime = start_bot(workdir, sandbox, slack, secret)
        stack.callback(runtime.close)
        say(f"3. Bot started against a local Slack stand-in. Approver: {PEOPLE[APPROVER]}.\n")

        converse(runtime, slack, secret, csr.csr_id)
        verify(pam360, sandbox, runtime)


def start_bot(workdir: Path, sandbox: Sandbox, slack: SlackStandIn, secret: str) -> Runtime:
    settings = Settings.from_values(
        {
            "slack_bot_token": DEMO_BOT_TOKEN,
            "slack_signing_secret": secret,
            "slack_api_url": slack.api_url,
            "pam360_url": sandbox.url,
            "pam360_authtoken": sandbox.token,
            "pam360_ca_bundle": sandbox.ca_bundle,
            "signcsr_approvers": APPROVER,
            "signcsr_roots": sandbox.roots,
            "signcsr_database": f"sqlite:///{workdir / 'signcsr.db'}",
        }
    )
    client = WebClient(token=DEMO_BOT_TOKEN, base_url=slack.api_url)
    return build_runtime(settings, client=client)


def converse(runtime: Runtime, slack: SlackStandIn, secret: str, csr_id: int) -> None:
    """Sam asks, Priya approves, as Slack would deliver both; Sam checks on it."""
    say(f"── #{CHANNEL_NAME} " + "─" * 50)
    text = f'{csr_id} root={CA_NAME} days={DAYS} reason="TLS for the payments API"'
    type_command(runtime, slack, secret, text)
    card = slack.wait_for("chat.postMessage")[0]
    slack.wait_for("response_url")
    actions = next(block for block in card.args["blocks"] if block["type"] == "actions")
    request_id = int(actions["elements"][0]["value"])

    type_command(runtime, slack, secret, "list")
    slack.wait_for("response_url", count=2)

    say(f"{PEOPLE[APPROVER]} presses Approve.\n")
    click = {
        "type": "block_actions",
        "team": {"id": TEAM},
        "user": {"id": APPROVER},
        "channel": {"id": CHANNEL},
        "response_url": slack.response_url("click"),
        "actions": [{"action_id": APPROVE_ACTION, "type": "button", "value": str(request_id)}],
    }
    if signed_post(runtime, secret, urlencode({"payload": json.dumps(click)})) != 200:
        raise DemoFailed("Slack's Approve click was not accepted")
    told = slack.wait_for("chat.postMessage", where=lambda c: c.args.get("channel") == REQUESTER)
    if len(told) != 1:
        raise DemoFailed("the requester was not told the outcome")

    type_command(runtime, slack, secret, f"status {request_id}")
    slack.wait_for("response_url", count=3)
    say("─" * 66 + "\n")


def type_command(runtime: Runtime, slack: SlackStandIn, secret: str, text: str) -> None:
    """Sam types `/signcsr <text>`; Slack sends it, signed, to the app."""
    say(f"{PEOPLE[REQUESTER]} types: /signcsr {text}\n")
    command = {
        "team_id": TEAM,
        "channel_id": CHANNEL,
        "user_id": REQUESTER,
        "command": "/signcsr",
        "text": text,
        "response_url": slack.response_url("command"),
        "trigger_id": "demo.trigger",
    }
    if signed_post(runtime, secret, urlencode(command)) != 200:
        raise DemoFailed(f"Slack's request for /signcsr {text} was not accepted")


def verify(pam360: Any, sandbox: Sandbox, runtime: Runtime) -> None:
    """Fetches the issued certificate from PAM360 and checks it as a PKI engineer would."""
    record = runtime.workflow.get(1)
    if record.state != "signed" or not record.certificate_serial or not record.certificate_cn:
        raise DemoFailed(f"the request ended {record.state}: {record.pam360_message}")
    pem = pam360.get_certificate(record.certificate_cn, record.certificate_serial)
    chain = x509.load_pem_x509_certificates(pem.encode())
    leaf, issuer, root = (
        chain[0],
        sandbox.ca_certificate(CA_NAME),
        sandbox.ca_certificate("testroot"),
    )
    say(f"4. Fetched the certificate from PAM360: {leaf.subject.rfc4514_string()},")
    say(f"   serial {leaf.serial_number:x}, issued by {issuer.subject.rfc4514_string()}.")

    try:
        leaf.verify_directly_issued_by(issuer)
        issuer.verify_directly_issued_by(root)
    except Exception as exc:
        raise DemoFailed(f"the certificate does not chain to {CA_NAME}: {exc}") from None
    say(f"   ✓ chains to {CA_NAME}, which chains to testroot")

    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    if lifetime != timedelta(days=DAYS):
        raise DemoFailed(f"the certificate is valid {lifetime}, not {DAYS} days")
    start, end = leaf.not_valid_before_utc.date(), leaf.not_valid_after_utc.date()
    say(f"   ✓ valid {DAYS} days, {start} to {end}")

    names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names or names[0].value != CSR_NAME:
        raise DemoFailed(f"the certificate is for {leaf.subject.rfc4514_string()}")
    say(f"   ✓ issued for {CSR_NAME}, the CSR's subject\n")


if __name__ == "__main__":
    sys.exit(run_demo())
