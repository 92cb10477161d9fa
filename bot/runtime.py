"""Puts the parts together from settings: store, PAM360 client, workflow and Bolt app."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from slack_bolt import App
from slack_sdk import WebClient

from bot.config import Settings
from bot.pam360.client import PAM360Client, Transport, build_client
from bot.pam360.errors import PAM360Error
from bot.pam360.signer import PAM360Signer
from bot.slack.app import CSRDirectory, Listeners, build_app, build_policy
from bot.store import Store
from bot.workflow import Clock, Workflow, utc_now

logger = logging.getLogger(__name__)

# Listeners run here: each acks first, then does its Slack and store work.
LISTENER_THREADS = 16
# Signings run apart from the listeners, so that a slow PAM360 cannot take the threads that
# acks need; approvals come at a person's pace, so this many are seldom all busy.
SIGNING_THREADS = 32


@dataclass
class Runtime:
    """Everything a running bot holds; `close()` releases it."""

    settings: Settings
    store: Store
    pam360: PAM360Client
    workflow: Workflow
    app: App
    listeners: Listeners
    pool: ThreadPoolExecutor
    signing_pool: ThreadPoolExecutor

    def check_pam360(self) -> None:
        """Reads PAM360's CSR list once, so that a wrong PAM360_URL, token or CA bundle shows
        in the log at start and not first at an approver's click. PAM360 being down is no
        reason to refuse to start: requests can wait, and the log says what is wrong."""
        try:
            listing = self.pam360.list_csrs()
        except PAM360Error as exc:
            logger.warning("PAM360 cannot be used yet: %s", exc)
            return
        logger.info("PAM360 at %s answers; it lists %d CSRs", self.pam360.url, listing.total_rows)

    def close(self) -> None:
        """Lets listeners and signings that are still in flight finish first."""
        self.pool.shutdown(wait=True)
        # After the listeners: they are what hands signings over.
        self.signing_pool.shutdown(wait=True)
        self.listeners.directory.close()
        self.pam360.close()
        self.store.close()


def build_runtime(
    settings: Settings,
    *,
    client: WebClient | None = None,
    verify_token: bool = True,
    clock: Clock = utc_now,
) -> Runtime:
    """Builds the bot. `App` calls Slack's auth.test here unless `verify_token` is off."""
    store = Store(settings.signcsr_database)
    pam360 = build_client(
        settings.pam360_url,
        settings.pam360_authtoken,
        org=settings.pam360_org,
        ca_bundle=settings.pam360_ca_bundle,
        timeout=settings.pam360_timeout,
    )
    web = client or WebClient(
        token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url
    )
    workflow = Workflow(
        store,
        build_policy(settings, web),
        PAM360Signer(pam360),
        pending_hours=settings.signcsr_pending_hours,
        longest_signing=longest_call(pam360.transport),
        clock=clock,
    )
    pool = ThreadPoolExecutor(max_workers=LISTENER_THREADS, thread_name_prefix="listener")
    signing_pool = ThreadPoolExecutor(max_workers=SIGNING_THREADS, thread_name_prefix="signing")
    app, listeners = build_app(
        settings,
        workflow,
        CSRDirectory(pam360),
        client=web,
        listener_executor=pool,
        signing_executor=signing_pool,
        verify_token=verify_token,
    )
    return Runtime(
        settings=settings,
        store=store,
        pam360=pam360,
        workflow=workflow,
        app=app,
        listeners=listeners,
        pool=pool,
        signing_pool=signing_pool,
    )


def longest_call(transport: Transport) -> float:
    """Seconds one signCSR may take: connects that time out are retried (nothing was sent),
    each within the timeout, and the last try may also wait that long for the answer."""
    pauses = sum(transport.retry_pause * attempt for attempt in range(1, transport.attempts))
    return (transport.attempts + 1) * transport.timeout + pauses
