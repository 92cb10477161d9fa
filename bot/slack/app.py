"""Builds the Bolt app: the /signcsr command, the approval buttons, and what they post."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookResponse

from bot.commands import UsageError, parse_sign_command, spec_from_fields, usage
from bot.config import Settings
from bot.pam360.client import PAM360Client
from bot.pam360.errors import PAM360Error
from bot.pam360.models import CSRList
from bot.policy import GroupLookupFailed, Policy
from bot.slack import form, messages
from bot.store import SIGNING, RequestRecord
from bot.workflow import Decision, Refusal, Workflow

logger = logging.getLogger(__name__)

# Posting fails this way when the bot is not in the channel (a DM, a private channel).
NOT_A_MEMBER = {"not_in_channel", "channel_not_found", "is_archived", "restricted_action"}
CSR_LIST_TTL = 60.0
# How long the form's CSR select waits for PAM360's list before answering with no options.
OPTIONS_WAIT_SECONDS = 2.0
# A request number as typed or on a button: ASCII digits only (str.isdigit() takes "²"), and
# few enough of them for the store's integers.
REQUEST_NUMBER = re.compile(r"#?([0-9]{1,18})")


def slack_error(exc: SlackApiError) -> str:
    """Slack's error code, such as not_in_channel or invalid_auth; it never holds a token."""
    return str(exc.response.get("error", "error")) if exc.response is not None else "error"


def request_number(text: str) -> int | None:
    match = REQUEST_NUMBER.fullmatch(text.strip())
    return int(match.group(1)) if match else None


class DirectReply(Respond):
    """Answers a person by direct message where Slack gave no response_url (a form whose
    metadata lost it): a refusal or an outcome must not vanish."""

    def __init__(self, client: WebClient, user_id: str) -> None:
        super().__init__(response_url=None)
        self.client = client
        self.user_id = user_id

    def __call__(  # type: ignore[override]
        self, text: str | dict[str, Any] = "", blocks: Any = None, **_ignored: Any
    ) -> WebhookResponse:
        self.client.chat_postMessage(channel=self.user_id, text=str(text), blocks=blocks)
        return WebhookResponse(url="", status_code=200, body="", headers={})


class CSRDirectory:
    """PAM360's CSR lists, one per organization, cached for a minute: cards and the form read
    them often."""

    def __init__(self, client: PAM360Client | None, ttl: float = CSR_LIST_TTL) -> None:
        self.client = client
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cached: dict[str | None, tuple[float, CSRList]] = {}
        # One fetch at a time for the form's select, however fast the person types.
        self._fetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="csr-list")
        self._fetching: Future[CSRList] | None = None

    def close(self) -> None:
        self._fetcher.shutdown(wait=True)

    def listing_within(self, seconds: float) -> CSRList | None:
        """The default organization's list if it can be had within `seconds` (the select's
        options must be acked within Slack's 3), else None while the fetch goes on to fill
        the cache for the next keystroke; raises PAM360Error when it cannot be read."""
        with self._lock:
            fresh = self._fresh(None)
            if fresh is not None:
                return fresh
            if self._fetching is None or self._fetching.done():
                self._fetching = self._fetcher.submit(self.listing)
            fetching = self._fetching
        try:
            return fetching.result(timeout=seconds)
        except FutureTimeout:
            return None

    def listing(self, org: str | None = None) -> CSRList:
        """The list (of `org`, else PAM360_ORG's), from cache when fresh; raises PAM360Error
        when it cannot be read."""
        if self.client is None:
            raise PAM360Error("No PAM360 client is configured.")
        with self._lock:
            fresh = self._fresh(org)
        if fresh is not None:
            return fresh
        listing = self.client.list_csrs(org=org)
        with self._lock:
            self._cached[org] = (time.monotonic(), listing)
        return listing

    def _fresh(self, org: str | None) -> CSRList | None:
        """The cached list of `org` while it is younger than the TTL; the caller holds the
        lock."""
        cached = self._cached.get(org)
        if cached and time.monotonic() - cached[0] < self.ttl:
            return cached[1]
        return None

    def summary(self, csr_id: int, org: str | None = None) -> dict[str, Any] | None:
        """What the approver should see of a CSR; None when PAM360's list cannot be read."""
        try:
            entry = self.listing(org).find(csr_id)
        except PAM360Error as exc:
            logger.warning("could not read PAM360's CSR list: %s", exc)
            return None
        if entry is None:
            return {"missing": True}
        return entry.model_dump(include={"domain_name", "key_algorithm", "key_strength"})


def group_reader(client: WebClient) -> Callable[[str], set[str]]:
    """Members of a Slack user group; GroupLookupFailed when Slack will not say."""

    def members(group: str) -> set[str]:
        try:
            answer = client.usergroups_users_list(usergroup=group)
        except SlackApiError as exc:
            raise GroupLookupFailed(group, slack_error(exc)) from None
        except Exception as exc:
            raise GroupLookupFailed(group, type(exc).__name__) from None
        return set(answer.get("users") or [])

    return members


def build_policy(settings: Settings, client: WebClient) -> Policy:
    return Policy(
        approvers=settings.signcsr_approvers,
        requesters=settings.signcsr_requesters,
        self_approval=settings.signcsr_self_approval,
        group_members=group_reader(client),
    )


class Listeners:
    """The app's listeners; each acks first, then does the slow part."""

    def __init__(
        self,
        settings: Settings,
        workflow: Workflow,
        directory: CSRDirectory,
        client: WebClient,
        signing: Executor,
    ) -> None:
        self.settings = settings
        self.workflow = workflow
        self.directory = directory
        self.client = client
        self.signing = signing
        self.usage = usage(settings.signcsr_command)

    # The slash command ------------------------------------------------------------------

    def on_command(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        text = (body.get("text") or "").strip()
        word, rest = [*text.split(maxsplit=1), "", ""][:2]
        subcommand = word.lower()
        if subcommand == "help":
            ack(response_type="ephemeral", text=self.help())
            return
        if subcommand in ("status", "cancel", "list"):
            ack()
            self.run_subcommand(subcommand, rest.strip(), body, respond)
            return
        if not text:
            ack()
            self.open_form(body, respond)
            return
        try:
            spec = parse_sign_command(body.get("text") or "", self.settings)
        except UsageError as exc:
            ack(response_type="ephemeral", text=messages.usage_error(exc.problem, self.usage))
            return
        ack()
        self.guarded(respond, self.submit, body, spec, respond)

    def help(self) -> str:
        s = self.settings
        return messages.help_text(
            usage=self.usage,
            command=s.signcsr_command,
            catalog=s.signcsr_roots,
            limits=(s.signcsr_default_days, s.signcsr_max_days, s.signcsr_max_intermediate_days),
            approvers=s.signcsr_approvers,
            self_approval=s.signcsr_self_approval,
            pending_hours=s.signcsr_pending_hours,
        )

    # The request form ------------------------------------------------------------------

    def open_form(self, body: dict[str, Any], respond: Respond) -> None:
        """Opens the form at once (its trigger lives 3 seconds), then swaps the CSR select
        for a number field if PAM360's CSR list cannot be read."""
        metadata = {
            "channel_id": body.get("channel_id"),
            "response_url": body.get("response_url"),
            "team_id": body.get("team_id"),
        }
        view = form.form_view(self.settings, metadata, from_list=True)
        try:
            opened = self.client.views_open(trigger_id=body.get("trigger_id", ""), view=view)
        except SlackApiError as exc:
            error = slack_error(exc)
            logger.info("could not open the request form: %s", error)
            respond(response_type="ephemeral", text=form.form_failed_note(error, self.usage))
            return
        try:
            self.directory.listing()
        except PAM360Error:
            fallback = form.form_view(self.settings, metadata, from_list=False)
            opened_view = opened.get("view") or {}
            self.client.views_update(
                view_id=opened_view.get("id"), hash=opened_view.get("hash"), view=fallback
            )

    def on_csr_options(self, ack: Ack, body: dict[str, Any]) -> None:
        """The CSR select's options: PAM360's CSRs matching what the person typed."""
        try:
            listing = self.directory.listing_within(OPTIONS_WAIT_SECONDS)
        except PAM360Error as exc:
            logger.warning("no CSR options for the form: %s", exc)
            listing = None
        entries = listing.entries if listing is not None else []
        ack(options=form.csr_options(entries, str(body.get("value") or "")))

    def on_form_submit(self, ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        """Checks the answers by the command's own rules; a problem keeps the form open."""
        state = view.get("state", {}).get("values", {})
        fields = form.field_values(state, self.settings.signcsr_default_days)
        try:
            spec = spec_from_fields(fields, self.settings)
        except UsageError as exc:
            ack(**form.form_error(exc.field, exc.problem, fields))
            return
        ack()

        origin = form.origin(view)
        user_id = body["user"]["id"]
        command_like = {
            "team_id": origin.get("team_id") or body.get("team", {}).get("id"),
            "user_id": user_id,
            "channel_id": origin.get("channel_id"),
            "response_url": origin.get("response_url"),
        }
        url = origin.get("response_url")
        respond = Respond(response_url=url) if url else DirectReply(self.client, user_id)
        self.guarded(respond, self.submit, command_like, spec, respond)

    def run_subcommand(
        self, subcommand: str, argument: str, body: dict[str, Any], respond: Respond
    ) -> None:
        user_id = body["user_id"]
        if subcommand == "list":
            self.guarded(respond, self.show_list, body.get("team_id"), respond)
            return
        request_id = request_number(argument)
        if request_id is None:
            command = self.settings.signcsr_command
            note = messages.request_number_missing(command, subcommand, argument)
            respond(response_type="ephemeral", text=note)
            return
        if subcommand == "status":
            self.guarded(respond, self.show_status, request_id, respond)
        else:
            self.guarded(respond, self.cancel, request_id, user_id, respond)

    def guarded(self, respond: Respond, action: Callable[..., None], *args: Any) -> None:
        """Runs a step; refusals reach the user as their words, bugs as an apology."""
        try:
            action(*args)
        except (Refusal, GroupLookupFailed) as exc:
            respond(response_type="ephemeral", replace_original=False, text=str(exc))
        except Exception:
            logger.exception("unexpected error in a /signcsr listener")
            respond(
                response_type="ephemeral", replace_original=False, text=messages.unexpected_error()
            )

    def show_status(self, request_id: int, respond: Respond) -> None:
        self.refresh_swept()
        record = self.workflow.get(request_id)
        history = self.workflow.history(request_id)
        text = messages.status_text(record, history, self.settings.signcsr_roots)
        respond(response_type="ephemeral", text=text)

    def show_list(self, team_id: str | None, respond: Respond) -> None:
        self.refresh_swept()
        records = self.workflow.pending(team_id)
        respond(response_type="ephemeral", text=messages.list_text(records, self.workflow.clock()))

    def cancel(self, request_id: int, user_id: str, respond: Respond) -> None:
        decision = self.workflow.cancel(request_id, user_id)
        if decision.kind != "cancelled":
            respond(response_type="ephemeral", text=messages.already_note(decision.record))
            return
        record = decision.record
        self.update_card(record)
        self.reply_in_thread(record)
        if user_id != record.requester:
            self.tell_requester(record)
        respond(response_type="ephemeral", text=f"Request #{request_id} is cancelled.")

    # Submitting a request -----------------------------------------------------------------

    def submit(self, body: dict[str, Any], spec: Any, respond: Respond) -> None:
        """Stores the request, then signs at once or asks for approval in the channel."""
        self.refresh_swept()
        record, alone = self.workflow.submit(
            team_id=body.get("team_id") or "",
            requester=body["user_id"],
            spec=spec,
            origin_channel=body.get("channel_id"),
            response_url=body.get("response_url"),
        )
        summary = self.directory.summary(spec.csr_id, spec.org)
        if summary is not None:
            self.workflow.store.set_csr_summary(record.id, summary)
        if alone:
            self.sign_alone(record, respond)
            return
        record = self.workflow.get(record.id)
        try:
            channel = self.post_card(record, respond)
        except SlackApiError as exc:
            # No approver would ever see it: a pending request without its card is withdrawn.
            error = slack_error(exc)
            self.workflow.withdraw(record.id, f"its approval message could not be posted: {error}")
            respond(response_type="ephemeral", text=messages.not_posted_note(record, error))
            return
        if channel:
            note = messages.waiting_note(record, channel, self.settings.signcsr_command)
            respond(response_type="ephemeral", text=note)

    def sign_alone(self, record: RequestRecord, respond: Respond) -> None:
        started = self.workflow.start_self_signing(record.id, record.requester)
        if started is None:
            respond(
                response_type="ephemeral", text=messages.already_note(self.workflow.get(record.id))
            )
            return
        try:
            self.post_card(started, respond)
        except SlackApiError as exc:
            # Signing goes on: its outcome still reaches the requester through `respond`.
            logger.warning("request %d: could not post its message: %s", started.id, exc)
        self.hand_over_signing(started.id, respond)

    def approval_channel(self, record: RequestRecord) -> str | None:
        return self.settings.signcsr_approval_channel or record.origin_channel

    def post_card(self, record: RequestRecord, respond: Respond) -> str | None:
        """Posts the approval message; falls back to the command's response_url when the bot
        cannot post in the channel. Returns the channel it posted in, if it did."""
        channel = self.approval_channel(record)
        text, blocks = messages.card(record, self.settings.signcsr_roots)
        try:
            if not channel:
                # No channel to post in: the command's response_url, if any, stands in for it;
                # without one the request cannot reach an approver.
                error = "channel_not_found" if respond.response_url else "no_channel_known"
                raise SlackApiError("no channel", {"ok": False, "error": error})
            answer = self.client.chat_postMessage(channel=channel, text=text, blocks=blocks)
        except SlackApiError as exc:
            error = slack_error(exc)
            if error not in NOT_A_MEMBER:
                raise
            logger.info("request %d: cannot post in %s (%s)", record.id, channel, error)
            respond(response_type="in_channel", text=text, blocks=blocks)
            respond(response_type="ephemeral", text=messages.invite_note(channel))
            return None
        self.workflow.attach_message(record.id, answer["channel"], answer["ts"])
        return str(answer["channel"])

    # The buttons ------------------------------------------------------------------------

    def on_approve(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        self.guarded(respond, self.approve, body, respond)

    def on_deny(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        self.guarded(respond, self.deny, body, respond)

    def approve(self, body: dict[str, Any], respond: Respond) -> None:
        request_id, user_id = self.clicked(body)
        self.refresh_swept()
        decision = self.workflow.approve(request_id, user_id)
        if decision.kind != "approved":
            self.report_late_click(decision, respond)
            return
        self.update_card(decision.record, respond)
        self.hand_over_signing(request_id, respond)

    def deny(self, body: dict[str, Any], respond: Respond) -> None:
        request_id, user_id = self.clicked(body)
        decision = self.workflow.deny(request_id, user_id)
        if decision.kind != "denied":
            self.report_late_click(decision, respond)
            return
        record = decision.record
        self.update_card(record, respond)
        self.reply_in_thread(record)
        self.tell_requester(record)

    @staticmethod
    def clicked(body: dict[str, Any]) -> tuple[int, str]:
        """The request a button is for, and who clicked; the clicker's rights are checked by
        the workflow, never read from the button."""
        request_id = request_number(str(body["actions"][0].get("value", "")))
        if request_id is None:
            raise Refusal("This button does not belong to a signing request.")
        return request_id, body["user"]["id"]

    def report_late_click(self, decision: Decision, respond: Respond) -> None:
        # A request still signing gets its card from its signer; a snapshot from here could
        # land after the signer's final update and undo it.
        if decision.record.state != SIGNING:
            self.update_card(decision.record, respond)
        respond(
            response_type="ephemeral",
            replace_original=False,
            text=messages.already_note(decision.record),
        )

    # After a decision -----------------------------------------------------------------------

    def hand_over_signing(self, request_id: int, respond: Respond) -> None:
        """Signs on the signing threads: a slow PAM360 must not hold a listener thread, which
        every ack needs."""
        self.signing.submit(self.guarded, respond, self.finish_signing, request_id, respond)

    def finish_signing(self, request_id: int, respond: Respond) -> None:
        """Calls PAM360 once, then shows the outcome on the card, in its thread, and to the
        requester."""
        record = self.workflow.sign(request_id)
        self.update_card(record, respond)
        self.reply_in_thread(record)
        self.tell_requester(record)

    def update_card(self, record: RequestRecord, respond: Respond | None = None) -> None:
        text, blocks = messages.card(record, self.settings.signcsr_roots)
        try:
            if record.message_channel and record.message_ts:
                self.client.chat_update(
                    channel=record.message_channel, ts=record.message_ts, text=text, blocks=blocks
                )
            elif respond is not None:
                respond(replace_original=True, text=text, blocks=blocks)
        except Exception:
            logger.exception("request %d: could not update its approval message", record.id)

    def reply_in_thread(self, record: RequestRecord) -> None:
        if not (record.message_channel and record.message_ts):
            return
        try:
            self.client.chat_postMessage(
                channel=record.message_channel,
                thread_ts=record.message_ts,
                text=messages.thread_reply(record),
            )
        except Exception:
            logger.exception("request %d: could not reply in the thread", record.id)

    def tell_requester(self, record: RequestRecord) -> None:
        """A direct message to the requester, who may not be watching the approval channel."""
        try:
            self.client.chat_postMessage(
                channel=record.requester, text=messages.requester_note(record)
            )
        except Exception:
            logger.exception("request %d: could not tell the requester", record.id)

    def refresh_swept(self) -> None:
        """Expired and abandoned requests are moved on; their cards, threads and requesters
        are told."""
        for record in self.workflow.sweep():
            self.update_card(record)
            self.reply_in_thread(record)
            self.tell_requester(record)


class ClientGivenFilter(logging.Filter):
    """Bolt warns that SLACK_BOT_TOKEN goes unused when a client is given; the client given
    is made from that very token, so the warning only misleads operators."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


def build_app(
    settings: Settings,
    workflow: Workflow,
    directory: CSRDirectory,
    *,
    client: WebClient,
    listener_executor: Executor,
    signing_executor: Executor,
    verify_token: bool = True,
) -> tuple[App, Listeners]:
    """The Bolt app on `client`, and its listeners; request signatures are verified whenever
    HTTP is used."""
    secret = settings.slack_signing_secret
    bolt_logger = logging.getLogger("bot.slack.bolt")
    if not any(isinstance(f, ClientGivenFilter) for f in bolt_logger.filters):
        bolt_logger.addFilter(ClientGivenFilter())
    app = App(
        client=client,
        listener_executor=listener_executor,
        signing_secret=secret.get_secret_value() if secret else "unused-in-socket-mode",
        token_verification_enabled=verify_token,
        logger=bolt_logger,
    )
    # Bolt logs the whole body of a rejected request at INFO: what a forger sent stays out.
    logging.getLogger("slack_bolt.RequestVerification").setLevel(logging.WARNING)

    listeners = Listeners(settings, workflow, directory, client, signing_executor)
    app.command(settings.signcsr_command)(listeners.on_command)
    app.action(messages.APPROVE_ACTION)(listeners.on_approve)
    app.action(messages.DENY_ACTION)(listeners.on_deny)
    app.options(form.CSR_SELECT_ACTION)(listeners.on_csr_options)
    app.view(form.FORM_CALLBACK)(listeners.on_form_submit)
    return app, listeners
