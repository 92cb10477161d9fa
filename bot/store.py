"""Persistence of signing requests and their audit trail, through SQLAlchemy Core."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.pool import StaticPool

PENDING: Final = "pending"
SIGNING: Final = "signing"
SIGNED: Final = "signed"
FAILED: Final = "failed"
UNKNOWN: Final = "unknown"
DENIED: Final = "denied"
CANCELLED: Final = "cancelled"
EXPIRED: Final = "expired"
FINAL_STATES = {SIGNED, FAILED, UNKNOWN, DENIED, CANCELLED, EXPIRED}

metadata = MetaData()

requests_table = Table(
    "sign_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("state", String(16), nullable=False, index=True),
    Column("team_id", String(32), nullable=False, default=""),
    Column("requester", String(32), nullable=False),
    Column("spec", Text, nullable=False),
    Column("csr_summary", Text, nullable=True),
    Column("origin_channel", String(32), nullable=True),
    Column("response_url", Text, nullable=True),
    Column("message_channel", String(32), nullable=True),
    Column("message_ts", String(32), nullable=True),
    Column("decided_by", String(32), nullable=True),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("signing_started_at", DateTime, nullable=True),
    Column("pam360_message", Text, nullable=True),
    Column("certificate_id", String(64), nullable=True),
    Column("certificate_cn", Text, nullable=True),
    Column("certificate_serial", String(128), nullable=True),
)

events_table = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", Integer, ForeignKey("sign_requests.id"), nullable=False, index=True),
    Column("at", DateTime, nullable=False),
    Column("actor", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    Column("detail", Text, nullable=True),
)


def to_db(moment: datetime) -> datetime:
    """UTC without tzinfo: SQLite keeps no zone, and every stored time is UTC."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def from_db(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class RequestRecord:
    """One signing request as stored."""

    id: int
    state: str
    team_id: str
    requester: str
    spec: dict[str, Any]
    csr_summary: dict[str, Any] | None
    origin_channel: str | None
    response_url: str | None
    message_channel: str | None
    message_ts: str | None
    decided_by: str | None
    created_at: datetime
    updated_at: datetime
    signing_started_at: datetime | None
    pam360_message: str | None
    certificate_id: str | None
    certificate_cn: str | None
    certificate_serial: str | None

    @classmethod
    def from_row(cls, row: Any) -> RequestRecord:
        values = dict(row._mapping)
        values["spec"] = json.loads(values["spec"])
        summary = values["csr_summary"]
        values["csr_summary"] = json.loads(summary) if summary else None
        for name in ("created_at", "updated_at", "signing_started_at"):
            values[name] = from_db(values[name])
        return cls(**values)


@dataclass(frozen=True)
class AuditEvent:
    """One state change of a request: who, when, what."""

    request_id: int
    at: datetime
    actor: str
    state: str
    detail: str | None


def make_engine(url: str) -> Engine:
    """An engine safe for several threads; SQLite waits for locks and journals in WAL mode."""
    if url.startswith("sqlite"):
        memory = ":memory:" in url or url in ("sqlite://", "sqlite:///")
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=StaticPool if memory else None,
        )
        if not memory:
            event.listen(engine, "connect", _sqlite_wal)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


class Store:
    """Requests and audit events. Every state change and its audit event share a transaction."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def create(
        self,
        *,
        team_id: str,
        requester: str,
        spec: dict[str, Any],
        origin_channel: str | None,
        response_url: str | None,
        now: datetime,
        detail: str | None = None,
    ) -> RequestRecord:
        """Stores a new pending request with its first audit event."""
        values = {
            "state": PENDING,
            "team_id": team_id,
            "requester": requester,
            "spec": json.dumps(spec, sort_keys=True, ensure_ascii=False),
            "origin_channel": origin_channel,
            "response_url": response_url,
            "created_at": to_db(now),
            "updated_at": to_db(now),
        }
        with self.engine.begin() as connection:
            inserted = connection.execute(insert(requests_table).values(**values))
            request_id = int(inserted.inserted_primary_key[0])  # type: ignore[index]
            self._audit(connection, request_id, now, requester, PENDING, detail)
        found = self.get(request_id)
        assert found is not None
        return found

    def get(self, request_id: int) -> RequestRecord | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(requests_table).where(requests_table.c.id == request_id)
            ).first()
        return None if row is None else RequestRecord.from_row(row)

    def transition(
        self,
        request_id: int,
        *,
        from_states: Iterable[str],
        to_state: str,
        actor: str,
        now: datetime,
        detail: str | None = None,
        created_after: datetime | None = None,
        **fields: Any,
    ) -> bool:
        """Compare-and-set: moves the request only if it is in one of `from_states` (and, when
        given, was created after `created_after`). The row count decides who won."""
        condition = (requests_table.c.id == request_id) & requests_table.c.state.in_(
            list(from_states)
        )
        if created_after is not None:
            condition &= requests_table.c.created_at > to_db(created_after)
        values = {"state": to_state, "updated_at": to_db(now), **fields}
        if to_state == SIGNING:
            values["signing_started_at"] = to_db(now)
        with self.engine.begin() as connection:
            moved = connection.execute(update(requests_table).where(condition).values(**values))
            if moved.rowcount != 1:
                return False
            self._audit(connection, request_id, now, actor, to_state, detail)
        return True

    def set_message(self, request_id: int, channel: str, ts: str) -> None:
        """Where the approval message lives, so later updates find it after a restart."""
        with self.engine.begin() as connection:
            connection.execute(
                update(requests_table)
                .where(requests_table.c.id == request_id)
                .values(message_channel=channel, message_ts=ts)
            )

    def set_csr_summary(self, request_id: int, summary: dict[str, Any]) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(requests_table)
                .where(requests_table.c.id == request_id)
                .values(csr_summary=json.dumps(summary, sort_keys=True, ensure_ascii=False))
            )

    def stale_signing(self, started_before: datetime) -> list[int]:
        """Requests whose signer has been silent since before `started_before`."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(requests_table.c.id).where(
                    (requests_table.c.state == SIGNING)
                    & (requests_table.c.signing_started_at < to_db(started_before))
                )
            )
            return [row.id for row in rows]

    def pending(self, team_id: str | None = None) -> list[RequestRecord]:
        """Pending requests, newest first."""
        query = select(requests_table).where(requests_table.c.state == PENDING)
        if team_id:
            query = query.where(requests_table.c.team_id == team_id)
        query = query.order_by(requests_table.c.created_at.desc(), requests_table.c.id.desc())
        with self.engine.connect() as connection:
            return [RequestRecord.from_row(row) for row in connection.execute(query)]

    def events(self, request_id: int) -> list[AuditEvent]:
        query = (
            select(events_table)
            .where(events_table.c.request_id == request_id)
            .order_by(events_table.c.id)
        )
        with self.engine.connect() as connection:
            return [
                AuditEvent(
                    request_id=row.request_id,
                    at=from_db(row.at) or row.at,
                    actor=row.actor,
                    state=row.state,
                    detail=row.detail,
                )
                for row in connection.execute(query)
            ]

    @staticmethod
    def _audit(
        connection: Any, request_id: int, now: datetime, actor: str, state: str, detail: str | None
    ) -> None:
        connection.execute(
            insert(events_table).values(
                request_id=request_id, at=to_db(now), actor=actor, state=state, detail=detail
            )
        )
