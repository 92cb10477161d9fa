"""The signing request's state machine: submit, approve, deny, cancel, sign. Knows no Slack."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from bot.commands import SignSpec
from bot.policy import GroupLookupFailed, Policy
from bot.store import (
    CANCELLED,
    DENIED,
    EXPIRED,
    FAILED,
    PENDING,
    SIGNED,
    SIGNING,
    UNKNOWN,
    AuditEvent,
    RequestRecord,
    Store,
)

logger = logging.getLogger(__name__)

BOT_ACTOR = "signcsr-bot"
PAM360_ACTOR = "PAM360"
# A signer that has been silent this long past its longest possible signCSR has died.
SIGNER_GRACE = timedelta(minutes=1)


@dataclass(frozen=True)
class SignOutcome:
    """What came of one signCSR call, in the store's terms."""

    state: Literal["signed", "failed", "unknown"]
    message: str
    certificate_id: str | None = None
    common_name: str | None = None
    serial_number: str | None = None


class Signer(Protocol):
    """Sends one signing to PAM360; reports every result as an outcome, never raises."""

    def sign(self, spec: SignSpec) -> SignOutcome: ...


class Refusal(Exception):
    """A request the workflow will not carry out; `str()` says why, in words."""


@dataclass(frozen=True)
class Decision:
    """The result of a click: what happened, and the request as it now stands."""

    kind: Literal["approved", "denied", "cancelled", "expired", "already"]
    record: RequestRecord


Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Workflow:
    """Every move of a request goes through here, and every move is an audit event."""

    def __init__(
        self,
        store: Store,
        policy: Policy,
        signer: Signer,
        *,
        pending_hours: float,
        longest_signing: float,
        clock: Clock = utc_now,
    ) -> None:
        self.store = store
        self.policy = policy
        self.signer = signer
        self.pending_age = timedelta(hours=pending_hours)
        self.signing_deadline = timedelta(seconds=longest_signing) + SIGNER_GRACE
        self.clock = clock

    def submit(
        self,
        *,
        team_id: str,
        requester: str,
        spec: SignSpec,
        origin_channel: str | None,
        response_url: str | None,
    ) -> tuple[RequestRecord, bool]:
        """Stores a pending request; the flag says the requester may sign it alone."""
        if not self.policy.may_request(requester):
            raise Refusal(
                "You are not on the list of people who may ask for signatures"
                " (SIGNCSR_REQUESTERS). Ask a PKI approver to add you or to ask for you."
            )
        alone = self._signs_alone(requester)
        record = self.store.create(
            team_id=team_id,
            requester=requester,
            spec=spec.model_dump(),
            origin_channel=origin_channel,
            response_url=response_url,
            now=self.clock(),
            detail=spec.reason,
        )
        logger.info("request %d: %s asked to sign CSR %d", record.id, requester, spec.csr_id)
        return record, alone

    def _signs_alone(self, requester: str) -> bool:
        """Closed on doubt: if the approver groups cannot be read, a second person decides."""
        try:
            return self.policy.signs_alone(requester)
        except GroupLookupFailed as exc:
            logger.warning("cannot tell if %s is an approver, so asking: %s", requester, exc)
            return False

    def start_self_signing(self, request_id: int, requester: str) -> RequestRecord | None:
        """Moves an approver's own request straight to signing."""
        won = self.store.transition(
            request_id,
            from_states=[PENDING],
            to_state=SIGNING,
            actor=requester,
            now=self.clock(),
            detail="approver's own request, self-approval is on",
            decided_by=requester,
        )
        return self.store.get(request_id) if won else None

    def approve(self, request_id: int, user: str) -> Decision:
        """pending → signing, once: the first approval wins, every later click is `already`."""
        record = self._decidable(request_id, user)
        expired = self._expire_if_old(record)
        if expired:
            return expired

        won = self.store.transition(
            request_id,
            from_states=[PENDING],
            to_state=SIGNING,
            actor=user,
            now=self.clock(),
            created_after=self.clock() - self.pending_age,
            decided_by=user,
        )
        current = self._get(request_id)
        if not won:
            return self._expire_if_old(current) or Decision("already", current)
        logger.info("request %d: approved by %s", request_id, user)
        return Decision("approved", current)

    def deny(self, request_id: int, user: str) -> Decision:
        record = self._decidable(request_id, user)
        return self._close(record, user, DENIED)

    def cancel(self, request_id: int, user: str) -> Decision:
        """The requester, or any approver, withdraws a pending request."""
        record = self._get(request_id)
        if user != record.requester and not self.policy.is_approver(user):
            raise Refusal(
                f"Only the requester (<@{record.requester}>) or an approver can cancel"
                f" request {request_id}."
            )
        return self._close(record, user, CANCELLED)

    def withdraw(self, request_id: int, reason: str) -> bool:
        """pending → cancelled by the bot itself, when no approver could be asked."""
        return self.store.transition(
            request_id,
            from_states=[PENDING],
            to_state=CANCELLED,
            actor=BOT_ACTOR,
            now=self.clock(),
            detail=reason,
        )

    def sign(self, request_id: int) -> RequestRecord:
        """Calls PAM360 for a request in `signing` and records what came of it."""
        record = self._get(request_id)
        if record.state != SIGNING:
            return record
        outcome = self.signer.sign(SignSpec.model_validate(record.spec))

        # A clear answer is recorded even if a sweep already called this signer dead.
        self.store.transition(
            request_id,
            from_states=[SIGNING, UNKNOWN],
            to_state=outcome.state,
            actor=PAM360_ACTOR,
            now=self.clock(),
            detail=outcome.message,
            pam360_message=outcome.message,
            certificate_id=outcome.certificate_id,
            certificate_cn=outcome.common_name,
            certificate_serial=outcome.serial_number,
        )
        logger.info("request %d: %s: %s", request_id, outcome.state, outcome.message)
        return self._get(request_id)

    def sweep(self) -> list[RequestRecord]:
        """Old pending requests expire; a signing whose signer died becomes unknown, never
        resent. Returns the requests it moved, so their messages can be updated."""
        now = self.clock()
        moved = []
        for record in self.store.pending():
            expired = self._expire_if_old(record)
            if expired and expired.kind == "expired":
                moved.append(expired.record)
        for request_id in self.store.stale_signing(now - self.signing_deadline):
            if self.store.transition(
                request_id,
                from_states=[SIGNING],
                to_state=UNKNOWN,
                actor=BOT_ACTOR,
                now=now,
                detail="The signer stopped before PAM360 answered. PAM360 may have signed:"
                " check it before asking again.",
                pam360_message="No answer was recorded from PAM360: the signer stopped.",
            ):
                logger.warning("request %d: signing never finished; outcome unknown", request_id)
                moved.append(self._get(request_id))
        return moved

    def get(self, request_id: int) -> RequestRecord:
        return self._get(request_id)

    def history(self, request_id: int) -> list[AuditEvent]:
        return self.store.events(request_id)

    def pending(self, team_id: str | None) -> list[RequestRecord]:
        oldest = self.clock() - self.pending_age
        return [r for r in self.store.pending(team_id) if r.created_at > oldest]

    def attach_message(self, request_id: int, channel: str, ts: str) -> None:
        self.store.set_message(request_id, channel, ts)

    def _get(self, request_id: int) -> RequestRecord:
        record = self.store.get(request_id)
        if record is None:
            raise Refusal(f"There is no request {request_id}.")
        return record

    def _decidable(self, request_id: int, user: str) -> RequestRecord:
        record = self._get(request_id)
        verdict = self.policy.may_decide(user, record.requester)
        if not verdict.allowed:
            logger.info("request %d: %s may not decide: %s", request_id, user, verdict.reason)
            raise Refusal(verdict.reason)
        return record

    def _expire_if_old(self, record: RequestRecord) -> Decision | None:
        now = self.clock()
        if record.state != PENDING or record.created_at > now - self.pending_age:
            return None
        hours = self.pending_age.total_seconds() / 3600
        self.store.transition(
            record.id,
            from_states=[PENDING],
            to_state=EXPIRED,
            actor=BOT_ACTOR,
            now=now,
            detail=f"no decision within {hours:g} hours",
        )
        current = self._get(record.id)
        return Decision("expired" if current.state == EXPIRED else "already", current)

    def _close(
        self, record: RequestRecord, user: str, state: Literal["denied", "cancelled"]
    ) -> Decision:
        """pending → denied or cancelled, once."""
        expired = self._expire_if_old(record)
        if expired:
            return expired
        won = self.store.transition(
            record.id,
            from_states=[PENDING],
            to_state=state,
            actor=user,
            now=self.clock(),
            decided_by=user,
        )
        current = self._get(record.id)
        if not won:
            return Decision("already", current)
        logger.info("request %d: %s by %s", record.id, state, user)
        return Decision(state, current)


__all__ = [
    "CANCELLED",
    "DENIED",
    "EXPIRED",
    "FAILED",
    "PENDING",
    "SIGNED",
    "SIGNING",
    "UNKNOWN",
    "Decision",
    "Refusal",
    "SignOutcome",
    "Signer",
    "Workflow",
]
