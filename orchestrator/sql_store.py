"""The intent log and the circuit breakers in SQL: SQLite (WAL) by default, PostgreSQL by URL.

:class:`SqlIntentStore` implements :class:`orchestrator.ports.IntentStore` and
:class:`orchestrator.ports.BreakerStore`; only :mod:`orchestrator.bootstrap`
constructs it, through :meth:`SqlIntentStore.open`. This is the one module
(besides :mod:`orchestrator.migrations`) that imports sqlmodel/sqlalchemy, so
the core stays free of I/O and the fakes in :mod:`orchestrator.testing` are the
only other implementation (the contract tests run both).

Choices worth knowing before changing anything here:

* The schema comes from the Alembic migrations, never from ``create_all``;
  :func:`migrate` runs them. Every CLI command calls it, so it first compares
  the ``alembic_version`` row with the newest revision file and returns without
  importing Alembic when they match.
* SQLite: several processes (``apx serve``, ``apx submit``, the scheduler) write
  one file. WAL lets readers run beside a writer, ``busy_timeout`` makes a
  writer wait instead of failing, and writes open with ``BEGIN IMMEDIATE`` so
  a transaction never starts as a reader and dies upgrading to a writer.
  pysqlite's own transaction handling is switched off so we control ``BEGIN``.
* Datetimes go in and come out timezone-aware in UTC on both databases:
  SQLite keeps no offset, so values are converted to UTC on write and tagged
  UTC on read; a naive datetime is refused rather than guessed at.
* The order of arrival is ``seq``, an autoincrementing key. ``pending()`` and
  ``recent()`` return it ascending, ``query()`` descending.
* JSON (not JSONB) on PostgreSQL, so a stored intent document keeps the key
  order its author wrote.
* ``decide()`` is one conditional UPDATE (``WHERE status IN PENDING``), so a
  final decision is never overwritten, even by a racing process; deciding one
  raises :class:`InternalError` (a bug upstream), an unknown id :class:`NotFound`.
  A decision without ``decided_at`` is timed by the injected clock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Engine,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    cast,
    exists,
    func,
    or_,
    select,
)
from sqlalchemy.engine import Connection, Row, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql import ColumnElement, Select
from sqlmodel import Field, SQLModel

from audit.entry import AuditEvent
from audit.sql import SqlAuditStore, append_in
from orchestrator import audit_trail
from orchestrator.clock import Clock, SystemClock
from orchestrator.dataplane import sql as _dataplane_sql  # noqa: F401  (registers dataplane_metrics)
from orchestrator.decision import OPEN, PENDING, Decision, PullRequestRef, Status
from orchestrator.errors import InternalError, NotFound, StorageError
from orchestrator.notify import sql_outbox as _outbox  # noqa: F401  (registers notification_outbox)
from orchestrator.records import (
    PRUNED_DOCUMENT,
    REVIEWABLE,
    BreakerState,
    CanaryWatch,
    Event,
    IntentQuery,
    IntentRecord,
    IntentView,
    PolicyChange,
    PullRequestView,
    RecentIntent,
    Review,
    not_in,
    not_pending,
    plain_json,
    pruned_decision,
    utc,
    utc_or_none,
)
from orchestrator.sql_base import SEQ, UtcDateTime, create_engine, one_line, transaction

if TYPE_CHECKING:
    from orchestrator.locks import PostgresEnvironmentLock
    from orchestrator.ports import BreakerStore, IntentStore, PolicyHistory

__all__ = ["SqlIntentStore", "migrate"]

#: Key of the PostgreSQL advisory lock that serialises concurrent migrations.
_MIGRATION_LOCK_KEY = 0x41505801  # "APX" + 1
_MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_REVISION_FILE = re.compile(r"^(\d{4})_\w+\.py$")
#: SQLite allows 32766 bound parameters; stay far below it in ``IN (...)``.
_IN_CHUNK = 500


_SEQ = SEQ


class IntentRow(SQLModel, table=True):
    __tablename__ = "intents"
    __table_args__ = (
        Index("ix_intents_environment_received_at", "environment", "received_at"),
        Index("ix_intents_dedupe_key", "dedupe_key"),
        Index("ix_intents_trace_id", "trace_id"),
        # `apx intents list` filters, newest first: with seq last, one filter's
        # matches come out of the index already in order, so LIMIT stops early
        # instead of sorting every match (migration 0004, bench/intent_queries.py).
        Index("ix_intents_agent_seq", "agent", "seq"),
        Index("ix_intents_status_seq", "status", "seq"),
        Index("ix_intents_tenant_seq", "tenant", "seq"),
        Index("ix_intents_environment_status_seq", "environment", "status", "seq"),
        Index("ix_intents_caused_by", "caused_by"),
        Index("ix_intents_received_at_seq", "received_at", "seq"),
        Index("ix_intents_pruned_at_decided_at", "pruned_at", "decided_at"),
        UniqueConstraint("id", name="uq_intents_id"),
        {"sqlite_autoincrement": True},
    )

    seq: int | None = Field(default=None, sa_column=Column(_SEQ, primary_key=True, autoincrement=True))
    id: str = Field(sa_column=Column(String(64), nullable=False))
    trace_id: str = Field(sa_column=Column(String(64), nullable=False))
    tenant: str = Field(sa_column=Column(String(128), nullable=False))
    environment: str = Field(sa_column=Column(String(128), nullable=False))
    agent: str = Field(sa_column=Column(String(128), nullable=False))
    caused_by: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    dedupe_key: str = Field(sa_column=Column(String(128), nullable=False))
    base_revision: str = Field(sa_column=Column(String(128), nullable=False))
    received_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    status: str = Field(sa_column=Column(String(32), nullable=False))
    decided_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    document: dict[str, Any] = Field(sa_column=Column(JSON(), nullable=False))
    decision: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(), nullable=True))
    commit: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    pr_id: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))
    #: ``sha256:`` of the document as received; the audit log holds the same digest,
    #: so it still proves what the intent said after retention prunes the document.
    payload_digest: str | None = Field(default=None, sa_column=Column(String(80), nullable=True))
    #: When retention replaced the document and the decision's diff with a stub.
    pruned_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    #: The pipeline worker that claimed (and then decided) this intent, and until when
    #: its claim holds while the intent is queued (:meth:`SqlIntentStore.claim`).
    claimed_by: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))
    claimed_until: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))


class IntentTargetRow(SQLModel, table=True):
    __tablename__ = "intent_targets"
    # A resource's intents newest first, from a cursor on: `intents list --target`
    # is one ordered index range, like the other filters (migration 0010).
    __table_args__ = (Index("ix_intent_targets_target_intent_seq", "target", "intent_seq"),)

    intent_id: str = Field(sa_column=Column(String(64), ForeignKey("intents.id"), primary_key=True))
    #: Keeps the targets in the order the intent lists them.
    position: int = Field(sa_column=Column(Integer(), primary_key=True, autoincrement=False))
    target: str = Field(sa_column=Column(String(300), nullable=False))
    #: The intent's ``seq`` (its order of arrival), copied from ``intents``.
    intent_seq: int = Field(sa_column=Column(_SEQ, nullable=False))


class IntentEventRow(SQLModel, table=True):
    __tablename__ = "intent_events"
    __table_args__ = (Index("ix_intent_events_intent_id", "intent_id"), {"sqlite_autoincrement": True})

    id: int | None = Field(default=None, sa_column=Column(_SEQ, primary_key=True, autoincrement=True))
    intent_id: str = Field(sa_column=Column(String(64), ForeignKey("intents.id"), nullable=False))
    status: str = Field(sa_column=Column(String(32), nullable=False))
    at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    reasons: list[str] = Field(sa_column=Column(JSON(), nullable=False))


class PullRequestRow(SQLModel, table=True):
    __tablename__ = "pull_requests"
    __table_args__ = (Index("ix_pull_requests_intent_id", "intent_id"),)

    id: str = Field(sa_column=Column(String(128), primary_key=True))
    intent_id: str = Field(sa_column=Column(String(64), ForeignKey("intents.id"), nullable=False))
    branch: str = Field(sa_column=Column(String(300), nullable=False))
    base: str = Field(sa_column=Column(String(300), nullable=False))
    head: str = Field(sa_column=Column(String(128), nullable=False))
    status: str = Field(sa_column=Column(String(32), nullable=False))
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    expires_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    merge_commit: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    closed_reason: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))
    #: Where a provider published it: ``{"provider", "url", "number"}``.
    publication: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(), nullable=True))


class CanaryWatchRow(SQLModel, table=True):
    __tablename__ = "canary_watches"
    __table_args__ = (Index("ix_canary_watches_status", "status"),)

    intent_id: str = Field(sa_column=Column(String(64), ForeignKey("intents.id"), primary_key=True))
    environment: str = Field(sa_column=Column(String(128), nullable=False))
    started_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    until: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    status: str = Field(sa_column=Column(String(32), nullable=False))
    reason: str = Field(default="", sa_column=Column(Text(), nullable=False))
    settled_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))


class ReviewRow(SQLModel, table=True):
    __tablename__ = "pr_reviews"
    __table_args__ = (Index("ix_pr_reviews_pr_id", "pr_id"), {"sqlite_autoincrement": True})

    id: int | None = Field(default=None, sa_column=Column(_SEQ, primary_key=True, autoincrement=True))
    pr_id: str = Field(sa_column=Column(String(128), ForeignKey("pull_requests.id"), nullable=False))
    head: str = Field(sa_column=Column(String(64), nullable=False))
    reviewer: str = Field(sa_column=Column(String(128), nullable=False))
    verdict: str = Field(sa_column=Column(String(16), nullable=False))
    comment: str = Field(default="", sa_column=Column(Text(), nullable=False))
    at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class BreakerRow(SQLModel, table=True):
    __tablename__ = "breakers"

    tenant: str = Field(sa_column=Column(String(128), primary_key=True))
    environment: str = Field(sa_column=Column(String(128), primary_key=True))
    open: bool = Field(sa_column=Column(Boolean(), nullable=False))
    opened_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    closes_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    reason: str = Field(default="", sa_column=Column(Text(), nullable=False))
    tripped_by: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))
    count_from: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    reset_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    reset_by: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))


class PolicyVersionRow(SQLModel, table=True):
    __tablename__ = "policy_versions"
    __table_args__ = ({"sqlite_autoincrement": True},)

    seq: int | None = Field(default=None, sa_column=Column(_SEQ, primary_key=True, autoincrement=True))
    name: str = Field(sa_column=Column(String(128), nullable=False))
    version: str = Field(sa_column=Column(String(64), nullable=False))
    sha256: str = Field(sa_column=Column(String(64), nullable=False))
    source: str = Field(sa_column=Column(Text(), nullable=False))
    by: str = Field(sa_column=Column(String(128), nullable=False))
    at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


# The Core tables behind the models. Reads and writes use them directly: the
# ORM's unit of work and identity map doubled the cost of receive()/decide() and
# made reading 300 intents 5x slower, and this module needs neither.
_intents = SQLModel.metadata.tables["intents"]
_targets = SQLModel.metadata.tables["intent_targets"]
_events = SQLModel.metadata.tables["intent_events"]
_prs = SQLModel.metadata.tables["pull_requests"]
_reviews = SQLModel.metadata.tables["pr_reviews"]
_canaries = SQLModel.metadata.tables["canary_watches"]
_breakers = SQLModel.metadata.tables["breakers"]
_policies = SQLModel.metadata.tables["policy_versions"]
_BREAKER_FIELDS = (
    "open",
    "opened_at",
    "closes_at",
    "reason",
    "tripped_by",
    "count_from",
    "reset_at",
    "reset_by",
)


class SqlIntentStore:
    """The intent log and breakers in one SQL database (see the module docstring)."""

    def __init__(self, url: str, *, clock: Clock | None = None) -> None:
        """Connect lazily to ``url``; the schema must already be migrated (see :meth:`open`)."""
        self._url = url
        self._clock: Clock = clock or SystemClock()
        self._engine = create_engine(url)
        # Same pool and listeners; connections from it open with BEGIN IMMEDIATE on SQLite.
        self._writer = self._engine.execution_options(apx_write=True)

    @classmethod
    def open(cls, url: str, *, migrate: bool = True, clock: Clock | None = None) -> SqlIntentStore:
        """The store for ``url``, with its schema brought up to date first unless ``migrate=False``."""
        store = cls(url, clock=clock)
        if migrate:
            try:
                _migrate(store._engine)
            except BaseException:
                store.close()
                raise
        return store

    def close(self) -> None:
        self._engine.dispose()

    def environment_lock(self, *, timeout: timedelta) -> PostgresEnvironmentLock | None:
        """On PostgreSQL, a lock per environment that every process sharing the database
        honours (see :mod:`orchestrator.locks`); None on SQLite, where the home's file
        lock already covers every process that can open the database."""
        if self._engine.dialect.name != "postgresql":
            return None
        from orchestrator.locks import PostgresEnvironmentLock

        return PostgresEnvironmentLock(self._engine, timeout=timeout)

    def __enter__(self) -> SqlIntentStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqlIntentStore({make_url(self._url).render_as_string(hide_password=True)!r})"

    # -- IntentStore ---------------------------------------------------------

    def receive(
        self,
        record: IntentRecord,
        *,
        status: Status,
        decision: Decision | None,
        breaker: BreakerState | None = None,
    ) -> int:
        what = f"record intent {record.id}"
        at = utc(record.received_at)
        document = plain_json(record.document, what)
        audited = audit_trail.received(record, status, decision)
        row = {
            "id": record.id,
            "trace_id": record.trace_id,
            "tenant": record.tenant,
            "environment": record.environment,
            "agent": record.agent,
            "caused_by": record.caused_by,
            "dedupe_key": record.dedupe_key,
            "base_revision": record.base_revision,
            "received_at": at,
            "status": status.value,
            "decided_at": None if decision is None else utc(decision.decided_at or at),
            "document": document,
            "payload_digest": audited[0].digest,
            "decision": None if decision is None else decision.model_dump(mode="json"),
            "commit": None if decision is None else decision.commit,
            "pr_id": None if decision is None or decision.pr is None else decision.pr.id,
        }
        events = [{"intent_id": record.id, "status": Status.RECEIVED.value, "at": at, "reasons": []}]
        if status is not Status.RECEIVED:
            reasons = [] if decision is None else list(decision.reasons)
            events.append({"intent_id": record.id, "status": status.value, "at": at, "reasons": reasons})
        with self._transaction(what, write=True) as conn:
            key = conn.execute(_intents.insert().values(row)).inserted_primary_key
            assert key is not None
            seq = int(key[0])
            if record.targets:
                conn.execute(
                    _targets.insert(),
                    [
                        {"intent_id": record.id, "intent_seq": seq, "position": i, "target": t}
                        for i, t in enumerate(record.targets)
                    ],
                )
            conn.execute(_events.insert(), events)
            if breaker is not None:
                audited.extend(self._save_breaker_in(conn, breaker, at=at))
            append_in(conn, audited)
        return seq

    def decide(self, decision: Decision, *, pr: PullRequestRef | None = None) -> None:
        pr = pr or decision.pr
        if pr is not None and decision.pr != pr:
            decision = decision.model_copy(update={"pr": pr})
        at = utc(decision.decided_at or self._clock.now())
        intent_id = decision.intent_id
        with self._transaction(f"record the decision on {intent_id}", write=True) as conn:
            # One conditional UPDATE is the guard: two deciders racing on either
            # database cannot both win, and a final decision is never overwritten.
            result = conn.execute(
                _intents.update()
                .where(_intents.c.id == intent_id, _intents.c.status.in_([s.value for s in PENDING]))
                .values(
                    status=decision.status.value,
                    decided_at=at,
                    decision=decision.model_dump(mode="json"),
                    commit=decision.commit,
                    pr_id=None if pr is None else pr.id,
                )
            )
            if result.rowcount != 1:
                current = conn.execute(select(_intents.c.status).where(_intents.c.id == intent_id)).scalar()
                raise not_pending(intent_id, None if current is None else Status(current))
            conn.execute(
                _events.insert().values(
                    intent_id=intent_id, status=decision.status.value, at=at, reasons=list(decision.reasons)
                )
            )
            append_in(conn, [audit_trail.decided(decision, at=at)])
            if pr is not None:
                conn.execute(
                    _prs.insert().values(
                        id=pr.id,
                        intent_id=intent_id,
                        branch=pr.branch,
                        base=pr.base,
                        head=pr.head,
                        status=pr.status,
                        created_at=at,
                        expires_at=utc_or_none(pr.expires_at),
                    )
                )

    # -- CanaryStore ---------------------------------------------------------

    def watch_canary(self, watch: CanaryWatch) -> None:
        with self._transaction(f"watch the canary of {watch.intent_id}", write=True) as conn:
            if conn.execute(
                select(_canaries.c.intent_id).where(_canaries.c.intent_id == watch.intent_id)
            ).first():
                return
            conn.execute(
                _canaries.insert().values(
                    intent_id=watch.intent_id,
                    environment=watch.environment,
                    started_at=utc(watch.started_at),
                    until=utc(watch.until),
                    status=watch.status,
                    reason=watch.reason,
                )
            )

    def canaries(self, *, status: str | None = None) -> list[CanaryWatch]:
        stmt = select(_canaries).order_by(_canaries.c.started_at, _canaries.c.intent_id)
        if status is not None:
            stmt = stmt.where(_canaries.c.status == status)
        with self._transaction("read canary watches") as conn:
            return [
                CanaryWatch(
                    intent_id=r.intent_id,
                    environment=r.environment,
                    started_at=r.started_at,
                    until=r.until,
                    status=r.status,
                    reason=r.reason,
                    settled_at=r.settled_at,
                )
                for r in conn.execute(stmt)
            ]

    def settle_canary(self, intent_id: str, *, verdict: str, reason: str, at: datetime) -> None:
        with self._transaction(f"settle the canary of {intent_id}", write=True) as conn:
            row = conn.execute(select(_canaries).where(_canaries.c.intent_id == intent_id)).first()
            if row is None:
                raise NotFound(f"no canary watch for {intent_id}")
            watch = CanaryWatch(
                intent_id=row.intent_id,
                environment=row.environment,
                started_at=row.started_at,
                until=row.until,
            )
            conn.execute(
                _canaries.update()
                .where(_canaries.c.intent_id == intent_id)
                .values(status=verdict, reason=reason, settled_at=utc(at))
            )
            append_in(conn, [audit_trail.canary_settled(watch, verdict=verdict, reason=reason, at=utc(at))])

    # -- ReviewStore ---------------------------------------------------------

    def pull_request(self, ref: str) -> PullRequestView | None:
        stmt = select(_prs).where((_prs.c.id == ref) | (_prs.c.intent_id == ref))
        with self._transaction(f"read PR {ref}") as conn:
            found = self._pr_views(conn, stmt)
        return found[0] if found else None

    def pull_requests(
        self, *, status: str | None = None, environment: str | None = None, limit: int = 100
    ) -> list[PullRequestView]:
        stmt = select(_prs)
        if status is not None:
            stmt = stmt.where(_prs.c.status == status)
        if environment is not None:
            stmt = stmt.where(
                exists().where(_intents.c.id == _prs.c.intent_id, _intents.c.environment == environment)
            )
        stmt = stmt.order_by(_prs.c.created_at.desc(), _prs.c.id.desc()).limit(max(limit, 0))
        with self._transaction("list PRs") as conn:
            return self._pr_views(conn, stmt)

    def agents(self) -> frozenset[str]:
        with self._transaction("list agents") as conn:
            return frozenset(conn.execute(select(_intents.c.agent).distinct()).scalars())

    def count_pull_requests(self, *, status: str) -> dict[str, int]:
        """PRs in ``status`` by environment: one aggregate query, for ``/metrics`` scrapes."""
        stmt = (
            select(_intents.c.environment, func.count())
            .select_from(_prs.join(_intents, _intents.c.id == _prs.c.intent_id))
            .where(_prs.c.status == status)
            .group_by(_intents.c.environment)
        )
        with self._transaction("count PRs") as conn:
            return {environment: int(n) for environment, n in conn.execute(stmt)}

    def update_pull_request(
        self,
        pr_id: str,
        *,
        review: Review | None = None,
        decision: Decision | None = None,
        status: str | None = None,
        merge_commit: str | None = None,
        closed_reason: str | None = None,
        publication: dict[str, Any] | None = None,
    ) -> None:
        with self._transaction(f"update PR {pr_id}", write=True) as conn:
            found = conn.execute(select(_prs.c.intent_id, _prs.c.status).where(_prs.c.id == pr_id)).first()
            if found is None:
                raise NotFound(f"there is no PR {pr_id!r}")
            intent_id, current = found
            audited: list[AuditEvent] = []
            if review is not None:
                conn.execute(
                    _reviews.insert().values(
                        pr_id=pr_id,
                        head=review.head,
                        reviewer=review.reviewer,
                        verdict=review.verdict,
                        comment=review.comment,
                        at=utc(review.at),
                    )
                )
                trace = conn.execute(select(_intents.c.trace_id).where(_intents.c.id == intent_id)).scalar()
                audited.append(audit_trail.reviewed(review, intent_id=intent_id, trace_id=trace))
            if decision is not None:
                audited.extend(self._advance_in(conn, decision, expected=REVIEWABLE))
            values: dict[str, Any] = {}
            for name, value in (
                ("status", status),
                ("merge_commit", merge_commit),
                ("closed_reason", closed_reason),
                ("publication", publication),
            ):
                if value is not None:
                    values[name] = value
            if values:
                if current != "open" and status is not None:
                    raise InternalError(f"PR {pr_id} is already {current}; refusing to change it to {status}")
                conn.execute(_prs.update().where(_prs.c.id == pr_id).values(values))
            append_in(conn, audited)

    def advance(self, decision: Decision, *, expected: Collection[Status]) -> None:
        """Move a decided intent on (e.g. applied → rolled_back), only from ``expected``."""
        with self._transaction(f"record {decision.status.value} on {decision.intent_id}", write=True) as conn:
            append_in(conn, self._advance_in(conn, decision, expected=expected))

    def _advance_in(
        self, conn: Connection, decision: Decision, *, expected: Collection[Status]
    ) -> list[AuditEvent]:
        at = utc(decision.decided_at or self._clock.now())
        result = conn.execute(
            _intents.update()
            .where(_intents.c.id == decision.intent_id, _intents.c.status.in_([s.value for s in expected]))
            .values(
                status=decision.status.value,
                decided_at=at,
                decision=decision.model_dump(mode="json"),
                commit=decision.commit,
            )
        )
        if result.rowcount != 1:
            current = conn.execute(
                select(_intents.c.status).where(_intents.c.id == decision.intent_id)
            ).scalar()
            raise not_in(decision, expected, None if current is None else Status(current))
        conn.execute(
            _events.insert().values(
                intent_id=decision.intent_id,
                status=decision.status.value,
                at=at,
                reasons=list(decision.reasons),
            )
        )
        return [audit_trail.decided(decision, at=at)]

    def _pr_views(self, conn: Connection, stmt: Select[Any]) -> list[PullRequestView]:
        rows = conn.execute(stmt).all()
        if not rows:
            return []
        intents = {
            v.record.id: v
            for v in self._views(conn, select(_intents).where(_intents.c.id.in_([r.intent_id for r in rows])))
        }
        reviews: dict[str, list[Review]] = {}
        for r in conn.execute(
            select(_reviews).where(_reviews.c.pr_id.in_([r.id for r in rows])).order_by(_reviews.c.id)
        ):
            reviews.setdefault(r.pr_id, []).append(
                Review(
                    pr_id=r.pr_id,
                    head=r.head,
                    reviewer=r.reviewer,
                    verdict=r.verdict,
                    at=r.at,
                    comment=r.comment,
                )
            )
        return [
            PullRequestView(
                id=r.id,
                intent=intents[r.intent_id],
                branch=r.branch,
                base=r.base,
                head=r.head,
                status=r.status,
                created_at=r.created_at,
                expires_at=r.expires_at,
                reviews=tuple(reviews.get(r.id, ())),
                merge_commit=r.merge_commit,
                closed_reason=r.closed_reason,
                publication=r.publication,
            )
            for r in rows
        ]

    def get(self, intent_id: str) -> IntentView | None:
        with self._transaction(f"read intent {intent_id}") as conn:
            views = self._views(conn, select(_intents).where(_intents.c.id == intent_id))
        return views[0] if views else None

    def query(self, query: IntentQuery) -> list[IntentView]:
        c = _intents.c
        with self._transaction("query the intent log") as conn:
            # Two steps: find the page's sequence numbers (from indexes alone where the
            # filters allow, sorting integers rather than whole rows), then read those rows.
            page = _page(conn, query)
            return self._views(conn, select(_intents).where(c.seq.in_(page)).order_by(c.seq.desc()))

    def recent(
        self, *, environment: str, since: datetime, statuses: Collection[Status] | None = None
    ) -> list[RecentIntent]:
        c = _intents.c
        window: tuple[Any, ...] = (c.environment == environment, c.received_at >= utc(since))
        if statuses is not None:
            window = (*window, c.status.in_([s.value for s in statuses]))
        stmt = (
            select(c.id, c.tenant, c.agent, c.dedupe_key, c.status, c.received_at)
            .where(*window)
            .order_by(c.seq)
        )
        # Targets by a join on the same window rather than a long IN (...) list.
        targets_stmt = (
            select(_targets.c.intent_id, _targets.c.target)
            .join(_intents, _intents.c.id == _targets.c.intent_id)
            .where(*window)
            .order_by(_targets.c.intent_id, _targets.c.position)
        )
        with self._transaction(f"read recent intents in {environment}") as conn:
            rows = conn.execute(stmt).all()
            targets: dict[str, list[str]] = {}
            for intent_id, target in conn.execute(targets_stmt):
                targets.setdefault(intent_id, []).append(target)
        return [
            RecentIntent(
                id=r.id,
                tenant=r.tenant,
                agent=r.agent,
                dedupe_key=r.dedupe_key,
                status=Status(r.status),
                received_at=r.received_at,
                targets=tuple(targets.get(r.id, ())),
            )
            for r in rows
        ]

    def pending(self, *, environment: str) -> list[IntentView]:
        c = _intents.c
        stmt = (
            select(_intents)
            .where(c.environment == environment, c.status == Status.QUEUED.value)
            .order_by(c.seq)
        )
        with self._transaction(f"read pending intents in {environment}") as conn:
            return self._views(conn, stmt)

    def claim(self, *, worker: str, environments: Collection[str], lease: timedelta) -> IntentView | None:
        """Claim the oldest queued intent that heads its environment's queue and that no
        live claim holds; None when there is none.

        Only a queue's head is claimable, so each environment is decided in
        arrival order by one worker at a time while other workers take other
        environments. On PostgreSQL the candidate row is locked ``FOR UPDATE SKIP
        LOCKED``: concurrent claimers never wait on each other and never take the
        same row. On SQLite the write transaction (``BEGIN IMMEDIATE``) does the same.
        A claim is coordination, not the guard: the decision still runs under the
        environment's lock and :meth:`decide` refuses a second decision.
        """
        if not environments:
            return None
        now = utc(self._clock.now())
        c = _intents.c
        older = _intents.alias("older")
        heads_queue = ~exists().where(
            older.c.environment == c.environment,
            older.c.status == Status.QUEUED.value,
            older.c.seq < c.seq,
        )
        candidate = (
            select(c.seq)
            .where(
                c.status == Status.QUEUED.value,
                c.environment.in_(sorted(environments)),
                or_(c.claimed_until.is_(None), c.claimed_until < now),
                heads_queue,
            )
            .order_by(c.seq)
            .limit(1)
            .with_for_update(skip_locked=True, of=_intents)
        )
        with self._transaction(f"claim a queued intent for {worker}", write=True) as conn:
            seq = conn.execute(candidate).scalar()
            if seq is None:
                return None
            conn.execute(
                _intents.update().where(c.seq == seq).values(claimed_by=worker, claimed_until=now + lease)
            )
            return self._views(conn, select(_intents).where(c.seq == seq))[0]

    def release(self, intent_id: str, *, worker: str) -> None:
        """Give up ``worker``'s claim on a still-queued intent, so another worker may take it now."""
        c = _intents.c
        with self._transaction(f"release the claim on {intent_id}", write=True) as conn:
            conn.execute(
                _intents.update()
                .where(c.id == intent_id, c.claimed_by == worker, c.status == Status.QUEUED.value)
                .values(claimed_until=None)
            )

    # -- BreakerStore --------------------------------------------------------

    def breaker(self, *, tenant: str, environment: str) -> BreakerState | None:
        stmt = select(_breakers).where(_breakers.c.tenant == tenant, _breakers.c.environment == environment)
        with self._transaction(f"read the breaker of {tenant}/{environment}") as conn:
            row = conn.execute(stmt).first()
        return None if row is None else _breaker_state(row)

    def save_breaker(self, state: BreakerState) -> None:
        with self._transaction(f"save the breaker of {state.tenant}/{state.environment}", write=True) as c:
            append_in(c, self._save_breaker_in(c, state, at=self._clock.now()))

    def _save_breaker_in(self, conn: Connection, state: BreakerState, *, at: datetime) -> list[AuditEvent]:
        """Upsert ``state`` in the caller's transaction; the audit entry its change calls for."""
        values: dict[str, Any] = {name: getattr(state, name) for name in _BREAKER_FIELDS}
        for name in ("opened_at", "closes_at", "count_from", "reset_at"):
            values[name] = utc_or_none(values[name])
        if self._engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        key = (_breakers.c.tenant == state.tenant, _breakers.c.environment == state.environment)
        found = conn.execute(select(_breakers).where(*key)).first()
        before = None if found is None else _breaker_state(found)
        stmt = insert(_breakers).values(tenant=state.tenant, environment=state.environment, **values)
        stmt = stmt.on_conflict_do_update(index_elements=["tenant", "environment"], set_=values)
        conn.execute(stmt)
        event = audit_trail.breaker_changed(before, state, at=utc(at))
        return [] if event is None else [event]

    def breakers(self) -> list[BreakerState]:
        stmt = select(_breakers).order_by(_breakers.c.tenant, _breakers.c.environment)
        with self._transaction("list breakers") as conn:
            return [_breaker_state(row) for row in conn.execute(stmt)]

    # -- PolicyHistory -------------------------------------------------------

    def record_policy(self, change: PolicyChange) -> bool:
        last = select(_policies.c.sha256).order_by(_policies.c.seq.desc()).limit(1)
        with self._transaction(f"record policy {change.name}@{change.version}", write=True) as conn:
            if conn.execute(last).scalar() == change.sha256:
                return False
            values = {f: getattr(change, f) for f in ("name", "version", "sha256", "source", "by")}
            conn.execute(_policies.insert().values(**values, at=utc(change.at)))
            append_in(conn, [audit_trail.policy_changed(change)])
        return True

    # -- retention -----------------------------------------------------------

    def prune_payloads(self, *, before: datetime, at: datetime, batch: int = 500) -> int:
        c = _intents.c
        stmt = (
            select(c.id, c.decision)
            .where(
                c.pruned_at.is_(None),
                c.decided_at < utc(before),
                c.status.not_in([s.value for s in OPEN]),
            )
            .order_by(c.decided_at)
            .limit(batch)
        )
        pruned = 0
        while True:
            with self._transaction("prune intent payloads", write=True) as conn:
                rows = conn.execute(stmt).all()
                if not rows:
                    return pruned
                for intent_id, decided in rows:
                    conn.execute(
                        _intents.update()
                        .where(c.id == intent_id)
                        .values(
                            document=PRUNED_DOCUMENT, decision=pruned_decision(decided), pruned_at=utc(at)
                        )
                    )
                append_in(conn, [audit_trail.pruned([r.id for r in rows], before=utc(before), at=utc(at))])
            pruned += len(rows)

    # -- AuditStore ----------------------------------------------------------

    @property
    def audit(self) -> SqlAuditStore:
        """The audit log in this database (entries are appended by the writes above)."""
        return SqlAuditStore(self._engine, writer=self._writer)

    def policy_history(self) -> list[PolicyChange]:
        stmt = select(_policies).order_by(_policies.c.seq)
        with self._transaction("read the policy history") as conn:
            return [
                PolicyChange(
                    name=r.name, version=r.version, sha256=r.sha256, source=r.source, by=r.by, at=utc(r.at)
                )
                for r in conn.execute(stmt)
            ]

    # -- internals -----------------------------------------------------------

    def _transaction(self, what: str, *, write: bool = False) -> AbstractContextManager[Connection]:
        return transaction(self._engine, what, write=write)

    def _views(self, conn: Connection, stmt: Select[Any]) -> list[IntentView]:
        rows = conn.execute(stmt).all()
        ids = [r.id for r in rows]
        targets = _targets_of(conn, ids)
        events: dict[str, list[Event]] = {}
        for chunk in _chunks(ids):
            found = conn.execute(
                select(_events.c.intent_id, _events.c.status, _events.c.at, _events.c.reasons)
                .where(_events.c.intent_id.in_(chunk))
                .order_by(_events.c.id)
            )
            for e in found:
                events.setdefault(e.intent_id, []).append(
                    Event(status=Status(e.status), at=e.at, reasons=tuple(e.reasons))
                )
        return [
            IntentView(
                seq=r.seq,
                record=IntentRecord(
                    id=r.id,
                    trace_id=r.trace_id,
                    tenant=r.tenant,
                    environment=r.environment,
                    agent=r.agent,
                    caused_by=r.caused_by,
                    dedupe_key=r.dedupe_key,
                    base_revision=r.base_revision,
                    received_at=r.received_at,
                    document=r.document,
                    targets=targets.get(r.id, ()),
                ),
                status=Status(r.status),
                decision=None if r.decision is None else Decision.model_validate(r.decision),
                events=tuple(events.get(r.id, ())),
                payload_digest=r.payload_digest,
                pruned_at=r.pruned_at,
                claimed_by=r.claimed_by,
            )
            for r in rows
        ]


def _page(conn: Connection, query: IntentQuery) -> Select[Any]:
    """The sequence numbers of the intents ``query`` asks for, newest first, at most ``limit``.

    Every filter reads an index whose last column is the order of arrival, so the
    matches come out newest first and ``LIMIT`` stops early. ``target`` reads the
    targets table's (target, intent_seq) index, from the cursor down, and joins
    each intent by ``seq`` only to check the other filters. (``conn`` is unused
    here; bench/intent_queries.py times this step alone through it.)
    """
    c, t = _intents.c, _targets.c
    limit = max(query.limit, 0)
    if query.target is None:
        return select(c.seq).where(*_filters(query, seq=c.seq)).order_by(c.seq.desc()).limit(limit)
    return (
        select(t.intent_seq)
        .join_from(_targets, _intents, c.seq == t.intent_seq)
        .where(t.target == query.target, *_filters(query, seq=t.intent_seq))
        .order_by(t.intent_seq.desc())
        .limit(limit)
    )


def _filters(query: IntentQuery, *, seq: ColumnElement[int]) -> list[ColumnElement[bool]]:
    """``query``'s conditions on the intents table (all but ``target``), its cursor on ``seq``.

    The cursor goes on the column the page is ordered by, so the index range starts
    there (PostgreSQL carries equalities across a join, not ``<``).
    """
    c = _intents.c
    out: list[ColumnElement[bool]] = [
        column == value
        for column, value in (
            (c.agent, query.agent),
            (c.status, None if query.status is None else query.status.value),
            (c.environment, query.environment),
            (c.tenant, query.tenant),
            (c.trace_id, query.trace_id),
            (c.caused_by, query.caused_by),
        )
        if value is not None
    ]
    if query.since is not None:
        out.append(c.received_at >= utc(query.since))
    if query.until is not None:
        out.append(c.received_at < utc(query.until))
    if query.before_seq is not None:
        out.append(seq < query.before_seq)
    if query.reason is not None:
        out.append(_reason_in_timeline(query.reason))
    return out


def _reason_in_timeline(text: str) -> ColumnElement[bool]:
    """``IntentQuery.reason``: some event of the intent has a reason containing ``text``.

    Matched against the stored JSON text of the event's reasons, which is the
    same on both databases (JSON, not JSONB: kept as written), so ``text`` is
    JSON-escaped the same way first: quotes, backslashes and non-ASCII then
    match as written, and an escaped term has no bare ``"`` to straddle two
    reasons with (only a term of nothing but ``[``, ``]``, ``,`` and spaces could
    match the list's own punctuation). ``%``/``_`` are escaped by ``autoescape``.
    ASCII case is ignored (``lower() LIKE`` on SQLite, ``ILIKE`` on PostgreSQL),
    as :meth:`IntentQuery.reason_matches` documents. Per-element functions
    (``json_each``, ``json_array_elements_text``) would differ between the two
    databases in how they fold non-ASCII case; this does not.
    """
    escaped = json.dumps(text)[1:-1]
    return exists().where(
        _events.c.intent_id == _intents.c.id,
        cast(_events.c.reasons, Text).icontains(escaped, autoescape=True),
    )


def _targets_of(conn: Connection, ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {}
    for chunk in _chunks(ids):
        rows = conn.execute(
            select(_targets.c.intent_id, _targets.c.target)
            .where(_targets.c.intent_id.in_(chunk))
            .order_by(_targets.c.intent_id, _targets.c.position)
        )
        for intent_id, target in rows:
            found.setdefault(intent_id, []).append(target)
    return {k: tuple(v) for k, v in found.items()}


def _breaker_state(row: Row[Any]) -> BreakerState:
    return BreakerState(
        tenant=row.tenant,
        environment=row.environment,
        **{name: getattr(row, name) for name in _BREAKER_FIELDS},
    )


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


# -- engines and migrations ----------------------------------------------------


def head_revision() -> str:
    """The newest migration, read from the revision files' names (``0001_intent_log.py`` → ``0001``).

    Reading names instead of loading Alembic keeps :func:`migrate` cheap when
    there is nothing to do; a test checks Alembic agrees.
    """
    revisions = (_REVISION_FILE.match(p.name) for p in (_MIGRATIONS_DIR / "versions").iterdir())
    return max(m.group(1) for m in revisions if m)


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest schema (``alembic upgrade head``).

    Cheap when already up to date; safe when several processes call it on a
    new database at once (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an advisory lock).
    """
    engine = create_engine(url)
    try:
        _migrate(engine)
    finally:
        engine.dispose()


def _current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            value = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    except SQLAlchemyError:
        return None  # no such table yet (or no database): the full path reports real errors
    return None if value is None else str(value)


def _migrate(engine: Engine) -> None:
    if _current_revision(engine) != head_revision():
        _upgrade(engine)


def _upgrade(engine: Engine) -> None:
    """``alembic upgrade head`` in one write transaction that holds the migration lock."""
    # Imported here: Alembic costs ~200 ms to import and is needed once per schema change.
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS_DIR).replace("%", "%%"))
    try:
        with engine.execution_options(apx_write=True).connect() as conn, conn.begin():
            # Whoever gets here second waits, then finds the schema at head.
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})")
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    except SQLAlchemyError as exc:
        raise StorageError(f"could not migrate the intent log: {one_line(exc)}") from exc
    except CommandError as exc:
        # e.g. a database written by a newer apx than this one
        raise StorageError(f"could not migrate the intent log: {exc}") from exc


if TYPE_CHECKING:
    _intent_store: type[IntentStore] = SqlIntentStore
    _breaker_store: type[BreakerStore] = SqlIntentStore
    _policy_history: type[PolicyHistory] = SqlIntentStore
