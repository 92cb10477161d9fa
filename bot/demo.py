"""`signcsr-bot demo`: the whole flow offline, printed as a person in the channel would see it."""

from __future__ import annotations

import itertools
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
        csr_pem = make_csr()
        csr = pam360.import_csr(csr_pem, filename="payments-api.csr")
        say(f"2. Imported a CSR for {csr.domain_name} into PAM360: CSR ID {csr.csr_id}.")

        slack = SlackStandIn(on_call=show).start()
        stack.callback(slack.stop)
        secret = secrets.token_hex(16)
        runtime = start_bot(workdir, sandbox, slack, secret)
        stack.callback(runtime.close)
        say(f"3. Bot started against a local Slack stand-in. Approver: {PEOPLE[APPROVER]}.\n")

        converse(runtime, slack, secret, csr.csr_id)
        verify(pam360, sandbox, runtime, csr_pem)


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


def verify(pam360: Any, sandbox: Sandbox, runtime: Runtime, csr_pem: bytes) -> None:
    """Fetches the issued certificate from PAM360 and checks it as a PKI engineer would."""
    record = runtime.workflow.get(1)
    if record.state != "signed" or not record.certificate_serial or not record.certificate_cn:
        raise DemoFailed(f"the request ended {record.state}: {record.pam360_message}")
    pem = pam360.get_certificate(record.certificate_cn, record.certificate_serial)
    leaf, *issuers = x509.load_pem_x509_certificates(pem.encode())
    say(f"4. Fetched the certificate from PAM360: {subject_words(leaf.subject)},")
    say(f"   serial {leaf.serial_number:x}, issued by {subject_words(leaf.issuer)}.")

    check_chain(leaf, issuers, sandbox.ca_certificate("testroot"))
    check_validity(leaf)
    check_matches_csr(leaf, x509.load_pem_x509_csr(csr_pem))
    check_signed_once(runtime, sandbox)


def subject_words(name: x509.Name) -> str:
    """A name in the order its parts were written (RFC 4514 would turn it around)."""
    return ", ".join(f"{part.rfc4514_attribute_name}={part.value!s}" for part in name)


def check_chain(
    leaf: x509.Certificate, issuers: list[x509.Certificate], root: x509.Certificate
) -> None:
    """The chain PAM360 sent back, link by link, up to testroot (the trust anchor)."""
    chain = [leaf, *issuers]
    if chain[-1] != root:
        chain.append(root)
    try:
        for child, parent in itertools.pairwise(chain):
            child.verify_directly_issued_by(parent)
    except Exception as exc:
        raise DemoFailed(f"the certificate does not chain to testroot: {exc}") from None
    path = " → ".join(str(subject_cn(cert)) for cert in chain)
    if subject_cn(chain[1]) != CA_NAME:
        raise DemoFailed(f"the certificate was issued by {subject_cn(chain[1])}, not {CA_NAME}")
    say(f"   ✓ chains to the trusted root: {path}")


def subject_cn(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else certificate.subject.rfc4514_string()


def check_validity(leaf: x509.Certificate) -> None:
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    if lifetime != timedelta(days=DAYS):
        raise DemoFailed(f"the certificate is valid {lifetime}, not {DAYS} days")
    start, end = leaf.not_valid_before_utc.date(), leaf.not_valid_after_utc.date()
    say(f"   ✓ valid {DAYS} days, {start} to {end}, as asked")


def check_matches_csr(leaf: x509.Certificate, csr: x509.CertificateSigningRequest) -> None:
    """Same key, subject and DNS names as the CSR: it is the CSR that was signed."""
    if leaf.public_key() != csr.public_key():
        raise DemoFailed("the certificate's public key is not the CSR's")
    if leaf.subject != csr.subject:
        raise DemoFailed(f"the certificate is for {subject_words(leaf.subject)}")
    wanted = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    got = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    if got.get_values_for_type(x509.DNSName) != wanted.get_values_for_type(x509.DNSName):
        raise DemoFailed("the certificate's DNS names are not the CSR's")
    names = ", ".join(got.get_values_for_type(x509.DNSName))
    say(f"   ✓ the CSR's public key, subject and DNS names ({names})")


def check_signed_once(runtime: Runtime, sandbox: Sandbox) -> None:
    """One approval, one signCSR, one certificate: what the audit trail and PAM360 show."""
    states = [event.state for event in runtime.workflow.history(1)]
    if states != ["pending", "signing", "signed"] or sandbox.issued_count != 1:
        raise DemoFailed(f"expected one signing; history {states}, {sandbox.issued_count} issued")
    say("   ✓ signed once: the audit trail is pending → signing → signed, and PAM360 issued")
    say("     exactly one certificate\n")


if __name__ == "__main__":
    sys.exit(run_demo())
