"""The whole product against the PAM360 sandbox: form, command, list, status, cancel, sign."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography import x509

from bot.pam360.client import build_client
from bot.sandbox.server import Sandbox
from bot.slack.form import CSR_SELECT_ACTION, FORM_CALLBACK
from bot.slack.messages import APPROVE_ACTION
from bot.slack.standin import TEAM, SlackStandIn
from tests.conftest import APPROVER, CSR_DIR, REQUESTER, STRANGER, Bot, bot_settings, start_bot
from tests.scenario import card_with_buttons, said, wait_until
from tests.test_form import submit_form


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with Sandbox(tmp_path_factory.mktemp("sandbox"), port=0) as running:
        yield running


@pytest.fixture
def bot(sandbox: Sandbox, slack: SlackStandIn, tmp_path: Path) -> Iterator[Bot]:
    settings = bot_settings(
        slack,
        tmp_path,
        pam360_url=sandbox.url,
        pam360_authtoken=sandbox.token,
        pam360_ca_bundle=sandbox.ca_bundle,
        signcsr_roots=sandbox.roots,
    )
    running = start_bot(slack, settings)
    yield running
    running.close()


def import_fixture(sandbox: Sandbox, name: str) -> int:
    client = build_client(sandbox.url, sandbox.token, ca_bundle=sandbox.ca_bundle)
    try:
        return client.import_csr((CSR_DIR / name).read_bytes()).csr_id
    finally:
        client.close()


def test_request_list_status_approve_and_verify(
    sandbox: Sandbox, bot: Bot, slack: SlackStandIn
) -> None:
    csr_id = import_fixture(sandbox, "rsa2048-sans.csr")

    bot.command(f'{csr_id} root=testintermediate days=30 reason="payments"', user=REQUESTER)
    card = card_with_buttons(slack, bot)
    assert "api.payments.example.com" in said(card) and "RSA 2048" in said(card)

    bot.command("list", user=STRANGER)
    listed = slack.wait_for("response_url", where=lambda c: "Pending" in c.args["text"])[0]
    assert f"CSR {csr_id}, CA testintermediate, 30 days" in listed.args["text"]

    bot.click(APPROVE_ACTION, 1, APPROVER)
    wait_until(lambda: bot.runtime.workflow.get(1).state == "signed")
    record = bot.runtime.workflow.get(1)

    bot.command("status 1", user=REQUESTER)
    status = slack.wait_for("response_url", where=lambda c: "History" in c.args["text"])[0]
    assert f"`{record.certificate_serial}`" in status.args["text"]

    client = build_client(sandbox.url, sandbox.token, ca_bundle=sandbox.ca_bundle)
    try:
        pem = client.get_certificate(record.certificate_cn or "", record.certificate_serial or "")
    finally:
        client.close()
    leaf = x509.load_pem_x509_certificates(pem.encode())[0]
    leaf.verify_directly_issued_by(sandbox.ca_certificate("testintermediate"))
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == timedelta(days=30)


def test_form_lists_sandbox_csrs_and_cancel_stops_it(
    sandbox: Sandbox, bot: Bot, slack: SlackStandIn
) -> None:
    csr_id = import_fixture(sandbox, "ec-p256.csr")
    suggestion = {
        "type": "block_suggestion",
        "action_id": CSR_SELECT_ACTION,
        "block_id": "csr",
        "value": "csrtest",
        "team": {"id": TEAM},
        "user": {"id": REQUESTER},
        "view": {"id": "VSTANDIN", "type": "modal", "callback_id": FORM_CALLBACK},
    }
    options = json.loads(bot.send(urlencode({"payload": json.dumps(suggestion)})).body)["options"]
    assert {"text": {"type": "plain_text", "text": f"csrtest · CSR {csr_id} · EC 256"},
            "value": str(csr_id)} in options  # fmt: skip

    submit_form(bot, slack, csr=csr_id, root="testroot", days=10)
    card_with_buttons(slack, bot)
    bot.command("cancel 1", user=REQUESTER)

    update = slack.wait_for("chat.update")[0]
    assert "Cancelled" in said(update)
    assert bot.runtime.workflow.get(1).state == "cancelled"
    assert [e.state for e in bot.runtime.workflow.history(1)] == ["pending", "cancelled"]


def test_validity_past_the_issuer_is_refused_in_words(
    sandbox: Sandbox, slack: SlackStandIn, tmp_path: Path
) -> None:
    settings = bot_settings(
        slack,
        tmp_path,
        pam360_url=sandbox.url,
        pam360_authtoken=sandbox.token,
        pam360_ca_bundle=sandbox.ca_bundle,
        signcsr_roots=sandbox.roots,
        signcsr_max_intermediate_days=9000,
    )
    bot = start_bot(slack, settings)
    try:
        csr_id = import_fixture(sandbox, "rsa4096-intermediate.csr")

        # testintermediate itself ends in ten years.
        bot.command(f"{csr_id} root=testintermediate days=4000 intermediate=yes", user=APPROVER)

        wait_until(lambda: bot.runtime.workflow.get(1).state == "failed")
        update: Any = slack.wait_for("chat.update", where=lambda c: "Not signed" in said(c))[0]
        assert "PAM360 said:" in said(update) and "expires on" in said(update)
    finally:
        bot.close()
