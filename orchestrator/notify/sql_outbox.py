"""The notification outbox in SQL, on the intent log's database (SQLite or PostgreSQL).

:class:`SqlOutbox` implements :class:`orchestrator.notify.outbox.Outbox`. The
table comes from migration ``0006_notification_outbox``; importing this module
registers its model on ``SQLModel.metadata`` (:mod:`orchestrator.sql_store`
does, so the migration test compares it).

Claiming due rows (:meth:`SqlOutbox.due`) is one write transaction that selects
and then pushes ``next_attempt_at`` a lease ahead:

* PostgreSQL: the select takes ``FOR UPDATE SKIP LOCKED``, so concurrent
  workers each claim different rows instead of waiting on, or double-claiming,
  the same ones.
* SQLite has no row locks (SQLAlchemy drops ``FOR UPDATE`` there); the
  transaction opens with ``BEGIN IMMEDIATE``, so one writer claims at a time and
  the next sees the pushed-back rows as not due. Same outcome, serialised.

Pending rows are found through a partial index on ``next_attempt_at`` (only
rows neither delivered nor given up), so delivered history does not slow it.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Engine,
    Index,
    Integer,
    String,
    Text,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Row
from sqlalchemy.sql import ColumnElement
from sqlmodel import Field, SQLModel

from orchestrator.clock import Clock, SystemClock
from orchestrator.errors import NotFound
from orchestrator.notify.events import Notification, render
from orchestrator.notify.outbox import CLAIM_LEASE, Delivery, DeliveryState, clip_error
from orchestrator.records import utc
from orchestrator.sql_base import UtcDateTime, create_engine, transaction

if TYPE_CHECKING:
    from orchestrator.notify.outbox import Outbox
    from orchestrator.notify.settings import WebhookSettings

__all__ = ["NotificationOutboxRow", "SqlOutbox"]

_SEQ = BigInteger().with_variant(Integer(), "sqlite")
#: Rows still to be sent: what the partial index covers and every claim filters on.
_UNFINISHED = "delivered_at IS NULL AND gave_up_at IS NULL"


class NotificationOutboxRow(SQLModel, table=True):
    __tablename__ = "notification_outbox"
    __table_args__ = (
        Index(
            "ix_notification_outbox_due",
            "next_attempt_at",
            sqlite_where=text(_UNFINISHED),
            postgresql_where=text(_UNFINISHED),
        ),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, sa_column=Column(_SEQ, primary_key=True, autoincrement=True))
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    #: The notification's kind (``pr.opened``), for filtering what failed.
    kind: str = Field(sa_column=Column(String(64), nullable=False))
    #: The webhook's name in the settings.
    webhook: str = Field(sa_column=Column(String(64), nullable=False))
    #: Where it is posted; for Slack this is a secret, shown redacted everywhere else.
    url: str = Field(sa_column=Column(Text(), nullable=False))
    format: str = Field(sa_column=Column(String(16), nullable=False))
    #: The rendered body, posted as is (JSON, not JSONB: keys stay in order).
    payload: dict[str, Any] = Field(sa_column=Column(JSON(), nullable=False))
    attempts: int = Field(sa_column=Column(Integer(), nullable=False))
    next_attempt_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    delivered_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    gave_up_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))


_outbox = SQLModel.metadata.tables["notification_outbox"]
_c = _outbox.c


class SqlOutbox:
    """The outbox in one SQL database (see the module docstring)."""

    def __init__(self, engine: Engine, *, clock: Clock | None = None) -> None:
        """Use ``engine`` (already migrated); :meth:`open` builds one from a URL."""
        self._engine = engine
        self._clock: Clock = clock or SystemClock()
        # Connections from it open with BEGIN IMMEDIATE on SQLite (see sql_store).
        self._writer = engine.execution_options(apx_write=True)

    @classmethod
    def open(cls, url: str, *, migrate: bool = True, clock: Clock | None = None) -> SqlOutbox:
        """The outbox at ``url``, its engine set up as the intent log's (WAL, BEGIN IMMEDIATE, …)."""
        # Imported here: sql_store imports this module (to register the table).
        from orchestrator import sql_store

        if migrate:
            sql_store.migrate(url)
        return cls(create_engine(url), clock=clock)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> SqlOutbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqlOutbox({self._engine.url.render_as_string(hide_password=True)!r})"

    def enqueue(self, notification: Notification, webhooks: Sequence[WebhookSettings]) -> int:
        if not webhooks:
            return 0
        now = utc(self._clock.now())
        rows = [
            {
                "created_at": now,
                "kind": notification.kind.value,
                "webhook": w.name,
                "url": w.url,
                "format": w.format,
                "payload": render(notification, w.format),
                "attempts": 0,
                "next_attempt_at": now,
            }
            for w in webhooks
        ]
        with self._transaction(f"queue a {notification.kind.value} notification", write=True) as conn:
            conn.execute(_outbox.insert(), rows)
        return len(rows)

    def due(self, now: datetime, limit: int = 20, *, lease: timedelta = CLAIM_LEASE) -> list[Delivery]:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        now = utc(now)
        until = now + lease
        stmt = (
            select(_outbox)
            .where(*_pending(), _c.next_attempt_at <= now)
            .order_by(_c.next_attempt_at, _c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self._transaction("claim due notifications", write=True) as conn:
            rows = conn.execute(stmt).all()
            if rows:
                conn.execute(
                    update(_outbox)
                    .where(_c.id.in_([r.id for r in rows]))
                    .values(attempts=_c.attempts + 1, next_attempt_at=until)
                )
        return [_delivery(r, attempts=r.attempts + 1, next_attempt_at=until) for r in rows]

    def mark_delivered(self, delivery_id: int, at: datetime) -> None:
        self._finish(delivery_id, "record a delivery", delivered_at=utc(at))

    def mark_failed(
        self, delivery_id: int, *, error: str, at: datetime, next_attempt_at: datetime, give_up: bool
    ) -> None:
        self._finish(
            delivery_id,
            "record a failed delivery",
            last_error=clip_error(error),
            next_attempt_at=utc(next_attempt_at),
            gave_up_at=utc(at) if give_up else None,
        )

    def pending_count(self) -> int:
        stmt = (
            select(func.count())
            .select_from(_outbox)
            .where(_c.delivered_at.is_(None), _c.gave_up_at.is_(None))
        )
        with self._transaction("count pending notifications") as conn:
            return int(conn.execute(stmt).scalar_one())

    def list(self, *, state: DeliveryState | None = None, limit: int = 100) -> builtins.list[Delivery]:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        stmt = select(_outbox).order_by(_c.id.desc()).limit(limit)
        if state is DeliveryState.PENDING:
            stmt = stmt.where(*_pending())
        elif state is DeliveryState.DELIVERED:
            stmt = stmt.where(_c.delivered_at.is_not(None))
        elif state is DeliveryState.GAVE_UP:
            stmt = stmt.where(_c.gave_up_at.is_not(None))
        with self._transaction("list notifications") as conn:
            return [_delivery(r) for r in conn.execute(stmt)]

    def _finish(self, delivery_id: int, what: str, **values: Any) -> None:
        """Update a pending row; a finished one is left alone, an unknown id is :class:`NotFound`."""
        with self._transaction(f"{what} for notification {delivery_id}", write=True) as conn:
            result = conn.execute(update(_outbox).where(_c.id == delivery_id, *_pending()).values(**values))
            if (
                result.rowcount == 0
                and conn.execute(select(_c.id).where(_c.id == delivery_id)).first() is None
            ):
                raise NotFound(f"no notification delivery {delivery_id} in the outbox")

    def _transaction(self, what: str, *, write: bool = False) -> AbstractContextManager[Connection]:
        return transaction(self._engine, what, write=write)


def _pending() -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """Neither delivered nor given up: the rows the partial index holds."""
    return (_c.delivered_at.is_(None), _c.gave_up_at.is_(None))


def _delivery(row: Row[Any], **override: Any) -> Delivery:
    values = {name: getattr(row, name) for name in Delivery.__dataclass_fields__}
    values.update(override)
    return Delivery(**values)


if TYPE_CHECKING:
    _outbox_port: type[Outbox] = SqlOutbox
