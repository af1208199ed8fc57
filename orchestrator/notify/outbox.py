"""The notification outbox: queued webhook posts that survive restarts and never block.

Telling a webhook is two steps. :meth:`Outbox.enqueue` is what the pipeline's
notifier does: one fast insert of a rendered payload per webhook, no network.
A :class:`~orchestrator.notify.delivery.Deliverer` later claims what is due
with :meth:`Outbox.due`, posts it, and records how that went. A crash between
the two loses nothing: the row is still there for the next process.

Claiming is what keeps two delivery workers from sending one row twice:
:meth:`Outbox.due` counts the attempt and pushes the row's
``next_attempt_at`` a *lease* into the future in the same transaction, so no
other worker sees it as due while it is being sent. If the worker dies
mid-send, the lease runs out and the row is due again: delivery is
at-least-once, and a receiver that must not act twice can use the payload's
``intent_id`` and ``apx_event`` to tell.

Implementations: :class:`InMemoryOutbox` here (tests, and a home without a
database), :class:`orchestrator.notify.sql_outbox.SqlOutbox` on the intent
log's database. ``tests/integration/test_notify.py`` runs the same contract
over both.
"""

from __future__ import annotations

import builtins
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.clock import Clock, SystemClock
from orchestrator.errors import NotFound
from orchestrator.notify.events import Notification, render
from orchestrator.notify.urls import redact_url
from orchestrator.records import utc

if TYPE_CHECKING:
    from orchestrator.notify.settings import WebhookSettings

__all__ = ["CLAIM_LEASE", "Delivery", "DeliveryState", "InMemoryOutbox", "Outbox"]

#: How long a claimed row stays invisible to other workers by default. A
#: deliverer passes its own (its batch size times its request timeout, plus margin).
CLAIM_LEASE = timedelta(minutes=2)
#: Longest error text kept on a row: enough for a receiver's one-line reason.
MAX_ERROR_CHARS = 500


class DeliveryState(StrEnum):
    #: Waiting for its first or next attempt.
    PENDING = "pending"
    #: The receiver answered 2xx.
    DELIVERED = "delivered"
    #: Refused for good (e.g. 404) or out of attempts; ``last_error`` says why.
    GAVE_UP = "gave_up"


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """One notification for one webhook, as the outbox holds it."""

    id: int
    created_at: datetime
    kind: str
    webhook: str
    #: Where it is posted. A secret for Slack: show :attr:`safe_url` instead.
    url: str
    format: str
    #: The rendered body, exactly as it is posted.
    payload: dict[str, Any]
    #: Sends started so far (counted when a worker claims the row).
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None = None
    gave_up_at: datetime | None = None
    last_error: str | None = None

    @property
    def state(self) -> DeliveryState:
        if self.delivered_at is not None:
            return DeliveryState.DELIVERED
        if self.gave_up_at is not None:
            return DeliveryState.GAVE_UP
        return DeliveryState.PENDING

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)


class Outbox(Protocol):
    """Queued webhook posts (see the module docstring for the claiming rule)."""

    def enqueue(self, notification: Notification, webhooks: Sequence[WebhookSettings]) -> int:
        """Queue ``notification`` for each webhook, due now; how many rows were queued."""
        ...

    def due(self, now: datetime, limit: int = 20, *, lease: timedelta = CLAIM_LEASE) -> list[Delivery]:
        """Claim up to ``limit`` pending rows due at ``now``, oldest first, counting an attempt on each."""
        ...

    def mark_delivered(self, delivery_id: int, at: datetime) -> None:
        """Record success. A row already finished is left as it is (at-least-once)."""
        ...

    def mark_failed(
        self, delivery_id: int, *, error: str, at: datetime, next_attempt_at: datetime, give_up: bool
    ) -> None:
        """Record a failed attempt: retry at ``next_attempt_at``, or give up for good."""
        ...

    def pending_count(self) -> int:
        """Rows not yet delivered nor given up."""
        ...

    def list(self, *, state: DeliveryState | None = None, limit: int = 100) -> builtins.list[Delivery]:
        """Rows for inspection, newest first, optionally only those in ``state``."""
        ...


def clip_error(error: str) -> str:
    """One line, at most :data:`MAX_ERROR_CHARS`: what an operator reads in ``last_error``."""
    line = " ".join(error.split())
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 1] + "…"


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")


class InMemoryOutbox:
    """:class:`Outbox` in a dict, with :class:`orchestrator.notify.sql_outbox.SqlOutbox`'s semantics.

    Payloads go through JSON on the way in, as they do into the database.
    One lock stands in for the database's row locks.
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._rows: dict[int, Delivery] = {}
        self._next_id = 1

    def enqueue(self, notification: Notification, webhooks: Sequence[WebhookSettings]) -> int:
        now = utc(self._clock.now())
        rows = [
            {
                "kind": notification.kind.value,
                "webhook": w.name,
                "url": w.url,
                "format": w.format,
                "payload": json.loads(json.dumps(render(notification, w.format))),
            }
            for w in webhooks
        ]
        with self._lock:
            for row in rows:
                self._rows[self._next_id] = Delivery(
                    id=self._next_id, created_at=now, attempts=0, next_attempt_at=now, **row
                )
                self._next_id += 1
        return len(rows)

    def due(self, now: datetime, limit: int = 20, *, lease: timedelta = CLAIM_LEASE) -> list[Delivery]:
        _check_limit(limit)
        now = utc(now)
        with self._lock:
            ready = sorted(
                (
                    d
                    for d in self._rows.values()
                    if d.state is DeliveryState.PENDING and d.next_attempt_at <= now
                ),
                key=lambda d: (d.next_attempt_at, d.id),
            )[:limit]
            claimed = [replace(d, attempts=d.attempts + 1, next_attempt_at=now + lease) for d in ready]
            for d in claimed:
                self._rows[d.id] = d
        return claimed

    def mark_delivered(self, delivery_id: int, at: datetime) -> None:
        with self._lock:
            row = self._row(delivery_id)
            if row.state is DeliveryState.PENDING:
                self._rows[delivery_id] = replace(row, delivered_at=utc(at))

    def mark_failed(
        self, delivery_id: int, *, error: str, at: datetime, next_attempt_at: datetime, give_up: bool
    ) -> None:
        with self._lock:
            row = self._row(delivery_id)
            if row.state is not DeliveryState.PENDING:
                return
            self._rows[delivery_id] = replace(
                row,
                last_error=clip_error(error),
                next_attempt_at=utc(next_attempt_at),
                gave_up_at=utc(at) if give_up else None,
            )

    def pending_count(self) -> int:
        with self._lock:
            return sum(1 for d in self._rows.values() if d.state is DeliveryState.PENDING)

    def list(self, *, state: DeliveryState | None = None, limit: int = 100) -> builtins.list[Delivery]:
        _check_limit(limit)
        with self._lock:
            rows = [d for d in reversed(self._rows.values()) if state is None or d.state is state]
        return rows[:limit]

    def _row(self, delivery_id: int) -> Delivery:
        try:
            return self._rows[delivery_id]
        except KeyError:
            raise NotFound(f"no notification delivery {delivery_id} in the outbox") from None
