"""Puts the parts together from settings: store, PAM360 client, workflow and Bolt app."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from slack_bolt import App
from slack_sdk import WebClient

from bot.config import Settings
from bot.pam360.client import PAM360Client, build_client
from bot.pam360.errors import PAM360Error
from bot.pam360.signer import PAM360Signer
from bot.slack.app import CSRDirectory, Listeners, build_app, build_policy
from bot.store import Store
from bot.workflow import Clock, Workflow, utc_now

logger = logging.getLogger(__name__)

# Listeners run here after their ack; each signing holds one for up to PAM360_TIMEOUT.
LISTENER_THREADS = 16


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
        """Lets listeners that are still working (a signing in flight) finish first."""
        self.pool.shutdown(wait=True)
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
        pam360_timeout=settings.pam360_timeout,
        clock=clock,
    )
    pool = ThreadPoolExecutor(max_workers=LISTENER_THREADS, thread_name_prefix="listener")
    app, listeners = build_app(
        settings,
        workflow,
        CSRDirectory(pam360),
        client=web,
        listener_executor=pool,
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
    )
