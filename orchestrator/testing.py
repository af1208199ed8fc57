"""Fakes of our ports, shipped in the package so tests (ours and users') need no mocks.

Every fake here is a real, in-memory implementation of a port in
:mod:`orchestrator.ports` or :mod:`orchestrator.clock`, and is run through the
same contract tests as the real adapter (``tests/integration/test_*_contract.py``
parametrize over ``[fake, real]``), so a fake cannot quietly drift from what the
real thing does. When you change an adapter's behaviour, change its fake and
the contract test with it. Nothing here does I/O or imports a database library.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from orchestrator.clock import Clock, SystemClock
from orchestrator.decision import PENDING, Decision, PullRequestRef, Status
from orchestrator.errors import StorageError
from orchestrator.records import (
    BreakerState,
    Event,
    IntentQuery,
    IntentRecord,
    IntentView,
    PolicyChange,
    RecentIntent,
    not_pending,
    plain_json,
    utc,
    utc_or_none,
)

if TYPE_CHECKING:
    from orchestrator.ports import BreakerStore, IntentStore, PolicyHistory

__all__ = ["FrozenClock", "InMemoryIntentStore"]


class FrozenClock:
    """A clock that moves only when told to: ``clock.advance(300)`` is five minutes later."""

    def __init__(self, start: datetime) -> None:
        self._now = utc(start)

    def now(self) -> datetime:
        return self._now

    def advance(self, by: float | timedelta) -> datetime:
        """Move forward by ``by`` (seconds or a timedelta); return the new now."""
        self._now += by if isinstance(by, timedelta) else timedelta(seconds=by)
        return self._now


class InMemoryIntentStore:
    """:class:`orchestrator.sql_store.SqlIntentStore`'s semantics, held in dicts.

    Values are copied through JSON on the way in, as the database does, so a
    caller mutating its document afterwards (or storing something JSON cannot
    hold) behaves the same here as against SQL. Also records the PRs it was
    given, in :attr:`pull_requests`, for tests to inspect.
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._views: dict[str, IntentView] = {}  # insertion order is arrival order
        self._breakers: dict[tuple[str, str], BreakerState] = {}
        self._policies: list[PolicyChange] = []
        self.pull_requests: dict[str, tuple[str, PullRequestRef]] = {}  # id -> (intent id, PR)

    # -- IntentStore ---------------------------------------------------------

    def receive(self, record: IntentRecord, *, status: Status, decision: Decision | None) -> int:
        at = utc(record.received_at)
        document = plain_json(record.document, f"record intent {record.id}")
        stored = replace(record, received_at=at, document=document)
        events = [Event(status=Status.RECEIVED, at=at)]
        if status is not Status.RECEIVED:
            events.append(Event(status=status, at=at, reasons=tuple(decision.reasons) if decision else ()))
        with self._lock:
            if record.id in self._views:
                raise _storage_error(f"record intent {record.id}", "intent id already recorded")
            seq = len(self._views) + 1
            self._views[record.id] = IntentView(
                seq=seq, record=stored, status=status, decision=_copy(decision), events=tuple(events)
            )
        return seq

    def decide(self, decision: Decision, *, pr: PullRequestRef | None = None) -> None:
        pr = pr or decision.pr
        if pr is not None and decision.pr != pr:
            decision = decision.model_copy(update={"pr": pr})
        at = utc(decision.decided_at or self._clock.now())
        with self._lock:
            view = self._views.get(decision.intent_id)
            if view is None or view.status not in PENDING:
                raise not_pending(decision.intent_id, view.status if view else None)
            if pr is not None and pr.id in self.pull_requests:
                raise _storage_error(f"record the decision on {decision.intent_id}", "PR id already recorded")
            event = Event(status=decision.status, at=at, reasons=tuple(decision.reasons))
            self._views[decision.intent_id] = replace(
                view, status=decision.status, decision=_copy(decision), events=(*view.events, event)
            )
            if pr is not None:
                self.pull_requests[pr.id] = (decision.intent_id, pr)

    def get(self, intent_id: str) -> IntentView | None:
        with self._lock:
            return self._views.get(intent_id)

    def query(self, query: IntentQuery) -> list[IntentView]:
        since = None if query.since is None else utc(query.since)

        def matches(v: IntentView) -> bool:
            r = v.record
            return (
                (query.agent is None or r.agent == query.agent)
                and (query.status is None or v.status == query.status)
                and (query.environment is None or r.environment == query.environment)
                and (query.tenant is None or r.tenant == query.tenant)
                and (query.trace_id is None or r.trace_id == query.trace_id)
                and (query.target is None or query.target in r.targets)
                and (since is None or r.received_at >= since)
            )

        with self._lock:
            found = [v for v in reversed(self._views.values()) if matches(v)]
        return found[: max(query.limit, 0)]

    def recent(
        self, *, environment: str, since: datetime, statuses: Collection[Status] | None = None
    ) -> list[RecentIntent]:
        since = utc(since)
        with self._lock:
            views = list(self._views.values())
        return [
            RecentIntent(
                id=v.record.id,
                tenant=v.record.tenant,
                agent=v.record.agent,
                dedupe_key=v.record.dedupe_key,
                status=v.status,
                received_at=v.record.received_at,
                targets=v.record.targets,
            )
            for v in views
            if v.record.environment == environment
            and v.record.received_at >= since
            and (statuses is None or v.status in statuses)
        ]

    def pending(self, *, environment: str) -> list[IntentView]:
        with self._lock:
            return [
                v
                for v in self._views.values()
                if v.record.environment == environment and v.status is Status.QUEUED
            ]

    # -- BreakerStore --------------------------------------------------------

    def breaker(self, *, tenant: str, environment: str) -> BreakerState | None:
        with self._lock:
            return self._breakers.get((tenant, environment))

    def save_breaker(self, state: BreakerState) -> None:
        state = replace(
            state,
            opened_at=utc_or_none(state.opened_at),
            closes_at=utc_or_none(state.closes_at),
            count_from=utc_or_none(state.count_from),
            reset_at=utc_or_none(state.reset_at),
        )
        with self._lock:
            self._breakers[(state.tenant, state.environment)] = state

    def breakers(self) -> list[BreakerState]:
        with self._lock:
            return [self._breakers[key] for key in sorted(self._breakers)]

    # -- PolicyHistory -------------------------------------------------------

    def record_policy(self, change: PolicyChange) -> bool:
        with self._lock:
            if self._policies and self._policies[-1].sha256 == change.sha256:
                return False
            self._policies.append(replace(change, at=utc(change.at)))
            return True

    def policy_history(self) -> list[PolicyChange]:
        with self._lock:
            return list(self._policies)


def _copy(decision: Decision | None) -> Decision | None:
    return None if decision is None else Decision.model_validate(decision.model_dump(mode="json"))


def _storage_error(what: str, why: str) -> StorageError:
    return StorageError(f"could not {what}: {why}")


if TYPE_CHECKING:
    _intent_store: type[IntentStore] = InMemoryIntentStore
    _breaker_store: type[BreakerStore] = InMemoryIntentStore
    _policy_history: type[PolicyHistory] = InMemoryIntentStore
