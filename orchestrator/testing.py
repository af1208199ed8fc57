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
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from audit.checkpoint import Checkpoint
from audit.entry import AuditEvent
from audit.hashing import GENESIS, Frontier, leaf_hash, link
from orchestrator import audit_trail
from orchestrator.clock import Clock, SystemClock
from orchestrator.decision import OPEN, PENDING, Decision, PullRequestRef, Status
from orchestrator.errors import InternalError, NotFound, StorageError
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

if TYPE_CHECKING:
    from audit.ports import AuditStore, Row
    from orchestrator.ports import BreakerStore, IntentStore, PolicyHistory

__all__ = ["FrozenClock", "InMemoryAuditStore", "InMemoryIntentStore"]


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
    hold) behaves the same here as against SQL.
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._views: dict[str, IntentView] = {}  # insertion order is arrival order
        self._breakers: dict[tuple[str, str], BreakerState] = {}
        self._policies: list[PolicyChange] = []
        self._prs: dict[str, _PrState] = {}
        self._canaries: dict[str, CanaryWatch] = {}
        #: intent id -> (worker, claimed until), for queued intents a worker claimed.
        self._claims: dict[str, tuple[str, datetime]] = {}
        #: The audit log, appended to under the same lock as each change it records.
        self.audit = InMemoryAuditStore(lock=self._lock)

    # -- IntentStore ---------------------------------------------------------

    def receive(
        self,
        record: IntentRecord,
        *,
        status: Status,
        decision: Decision | None,
        breaker: BreakerState | None = None,
    ) -> int:
        at = utc(record.received_at)
        document = plain_json(record.document, f"record intent {record.id}")
        audited = audit_trail.received(record, status, decision)
        stored = replace(record, received_at=at, document=document)
        events = [Event(status=Status.RECEIVED, at=at)]
        if status is not Status.RECEIVED:
            events.append(Event(status=status, at=at, reasons=tuple(decision.reasons) if decision else ()))
        with self._lock:
            if record.id in self._views:
                raise _storage_error(f"record intent {record.id}", "intent id already recorded")
            seq = len(self._views) + 1
            self._views[record.id] = IntentView(
                seq=seq,
                record=stored,
                status=status,
                decision=_copy(decision),
                events=tuple(events),
                payload_digest=audited[0].digest,
            )
            if breaker is not None:
                audited.extend(self._save_breaker_locked(breaker, at=at))
            self.audit.append_locked(audited)
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
            if pr is not None and pr.id in self._prs:
                raise _storage_error(f"record the decision on {decision.intent_id}", "PR id already recorded")
            event = Event(status=decision.status, at=at, reasons=tuple(decision.reasons))
            self._views[decision.intent_id] = replace(
                view, status=decision.status, decision=_copy(decision), events=(*view.events, event)
            )
            if pr is not None:
                self._prs[pr.id] = _PrState(
                    intent_id=decision.intent_id,
                    ref=pr,
                    created_at=at,
                    expires_at=utc_or_none(pr.expires_at),
                )
            self.audit.append_locked([audit_trail.decided(decision, at=at)])

    # -- CanaryStore ---------------------------------------------------------

    def watch_canary(self, watch: CanaryWatch) -> None:
        with self._lock:
            self._canaries.setdefault(
                watch.intent_id, replace(watch, started_at=utc(watch.started_at), until=utc(watch.until))
            )

    def canaries(self, *, status: str | None = None) -> list[CanaryWatch]:
        with self._lock:
            found = [w for w in self._canaries.values() if status is None or w.status == status]
        return sorted(found, key=lambda w: (w.started_at, w.intent_id))

    def settle_canary(self, intent_id: str, *, verdict: str, reason: str, at: datetime) -> None:
        with self._lock:
            watch = self._canaries.get(intent_id)
            if watch is None:
                raise NotFound(f"no canary watch for {intent_id}")
            self._canaries[intent_id] = replace(watch, status=verdict, reason=reason, settled_at=utc(at))
            self.audit.append_locked(
                [audit_trail.canary_settled(watch, verdict=verdict, reason=reason, at=utc(at))]
            )

    # -- ReviewStore ---------------------------------------------------------

    def pull_request(self, ref: str) -> PullRequestView | None:
        with self._lock:
            for pr_id, state in self._prs.items():
                if ref in (pr_id, state.intent_id):
                    return self._pr_view(pr_id, state)
        return None

    def pull_requests(
        self, *, status: str | None = None, environment: str | None = None, limit: int = 100
    ) -> list[PullRequestView]:
        with self._lock:
            views = [
                self._pr_view(pr_id, state)
                for pr_id, state in self._prs.items()
                if (status is None or state.status == status)
                and (environment is None or self._views[state.intent_id].record.environment == environment)
            ]
        views.sort(key=lambda v: (v.created_at, v.id), reverse=True)
        return views[: max(limit, 0)]

    def agents(self) -> frozenset[str]:
        with self._lock:
            return frozenset(v.record.agent for v in self._views.values())

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
        with self._lock:
            state = self._prs.get(pr_id)
            if state is None:
                raise NotFound(f"there is no PR {pr_id!r}")
            if status is not None and state.status != "open":
                raise InternalError(
                    f"PR {pr_id} is already {state.status}; refusing to change it to {status}"
                )
            audited: list[AuditEvent] = []
            if review is not None:
                review = replace(review, at=utc(review.at))
                trace = self._views[state.intent_id].record.trace_id
                audited.append(audit_trail.reviewed(review, intent_id=state.intent_id, trace_id=trace))
            if decision is not None:
                audited.extend(self._advance_locked(decision, expected=REVIEWABLE))
            if review is not None:
                state.reviews.append(review)
            state.status = status or state.status
            state.merge_commit = merge_commit or state.merge_commit
            state.closed_reason = closed_reason or state.closed_reason
            state.publication = publication or state.publication
            self.audit.append_locked(audited)

    def advance(self, decision: Decision, *, expected: Collection[Status]) -> None:
        with self._lock:
            self.audit.append_locked(self._advance_locked(decision, expected=expected))

    def _advance_locked(self, decision: Decision, *, expected: Collection[Status]) -> list[AuditEvent]:
        at = utc(decision.decided_at or self._clock.now())
        view = self._views.get(decision.intent_id)
        if view is None or view.status not in expected:
            raise not_in(decision, expected, view.status if view else None)
        event = Event(status=decision.status, at=at, reasons=tuple(decision.reasons))
        self._views[decision.intent_id] = replace(
            view, status=decision.status, decision=_copy(decision), events=(*view.events, event)
        )
        return [audit_trail.decided(decision, at=at)]

    def _pr_view(self, pr_id: str, state: _PrState) -> PullRequestView:
        return PullRequestView(
            id=pr_id,
            intent=self._views[state.intent_id],
            branch=state.ref.branch,
            base=state.ref.base,
            head=state.ref.head,
            status=state.status,
            created_at=state.created_at,
            expires_at=state.expires_at,
            reviews=tuple(state.reviews),
            merge_commit=state.merge_commit,
            closed_reason=state.closed_reason,
            publication=state.publication,
        )

    def get(self, intent_id: str) -> IntentView | None:
        with self._lock:
            return self._views.get(intent_id)

    def query(self, query: IntentQuery) -> list[IntentView]:
        since = None if query.since is None else utc(query.since)
        until = None if query.until is None else utc(query.until)

        def matches(v: IntentView) -> bool:
            r = v.record
            return (
                (query.agent is None or r.agent == query.agent)
                and (query.status is None or v.status == query.status)
                and (query.environment is None or r.environment == query.environment)
                and (query.tenant is None or r.tenant == query.tenant)
                and (query.trace_id is None or r.trace_id == query.trace_id)
                and (query.target is None or query.target in r.targets)
                and (query.caused_by is None or r.caused_by == query.caused_by)
                and (since is None or r.received_at >= since)
                and (until is None or r.received_at < until)
                and (query.before_seq is None or v.seq < query.before_seq)
                and query.reason_matches(reason for e in v.events for reason in e.reasons)
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

    def claim(self, *, worker: str, environments: Collection[str], lease: timedelta) -> IntentView | None:
        now = utc(self._clock.now())
        with self._lock:
            heads: dict[str, IntentView] = {}
            for v in self._views.values():
                if v.status is Status.QUEUED and v.record.environment not in heads:
                    heads[v.record.environment] = v
            for v in sorted(heads.values(), key=lambda v: v.seq):
                held = self._claims.get(v.record.id)
                if v.record.environment in environments and (held is None or held[1] < now):
                    self._claims[v.record.id] = (worker, now + lease)
                    self._views[v.record.id] = replace(v, claimed_by=worker)
                    return self._views[v.record.id]
        return None

    def release(self, intent_id: str, *, worker: str) -> None:
        with self._lock:
            held = self._claims.get(intent_id)
            view = self._views.get(intent_id)
            if held is not None and held[0] == worker and view is not None and view.status is Status.QUEUED:
                del self._claims[intent_id]

    def prune_payloads(self, *, before: datetime, at: datetime, batch: int = 500) -> int:
        before, at = utc(before), utc(at)
        pruned = 0
        with self._lock:
            due = [
                v
                for v in self._views.values()
                if v.pruned_at is None and v.status not in OPEN and v.events[-1].at < before
            ]
            due.sort(key=lambda v: v.events[-1].at)
            for start in range(0, len(due), batch):
                chunk = due[start : start + batch]
                for v in chunk:
                    stored = pruned_decision(
                        None if v.decision is None else v.decision.model_dump(mode="json")
                    )
                    self._views[v.record.id] = replace(
                        v,
                        record=replace(v.record, document=dict(PRUNED_DOCUMENT)),
                        decision=None if stored is None else Decision.model_validate(stored),
                        pruned_at=at,
                    )
                self.audit.append_locked(
                    [audit_trail.pruned([v.record.id for v in chunk], before=before, at=at)]
                )
                pruned += len(chunk)
        return pruned

    # -- BreakerStore --------------------------------------------------------

    def breaker(self, *, tenant: str, environment: str) -> BreakerState | None:
        with self._lock:
            return self._breakers.get((tenant, environment))

    def save_breaker(self, state: BreakerState) -> None:
        with self._lock:
            self.audit.append_locked(self._save_breaker_locked(state, at=self._clock.now()))

    def _save_breaker_locked(self, state: BreakerState, *, at: datetime) -> list[AuditEvent]:
        state = replace(
            state,
            opened_at=utc_or_none(state.opened_at),
            closes_at=utc_or_none(state.closes_at),
            count_from=utc_or_none(state.count_from),
            reset_at=utc_or_none(state.reset_at),
        )
        before = self._breakers.get((state.tenant, state.environment))
        self._breakers[(state.tenant, state.environment)] = state
        event = audit_trail.breaker_changed(before, state, at=utc(at))
        return [] if event is None else [event]

    def breakers(self) -> list[BreakerState]:
        with self._lock:
            return [self._breakers[key] for key in sorted(self._breakers)]

    # -- PolicyHistory -------------------------------------------------------

    def record_policy(self, change: PolicyChange) -> bool:
        with self._lock:
            if self._policies and self._policies[-1].sha256 == change.sha256:
                return False
            self._policies.append(replace(change, at=utc(change.at)))
            self.audit.append_locked([audit_trail.policy_changed(change)])
            return True

    def policy_history(self) -> list[PolicyChange]:
        with self._lock:
            return list(self._policies)


@dataclass(kw_only=True)
class _PrState:
    intent_id: str
    ref: PullRequestRef
    created_at: datetime
    expires_at: datetime | None
    status: str = "open"
    reviews: list[Review] = field(default_factory=list)
    merge_commit: str | None = None
    closed_reason: str | None = None
    publication: dict[str, Any] | None = None


class InMemoryAuditStore:
    """:class:`audit.sql.SqlAuditStore`'s semantics in a list (see ``test_audit_store.py``)."""

    def __init__(self, *, lock: threading.Lock | None = None) -> None:
        self._lock = lock or threading.Lock()
        self._rows: list[Row] = []
        self._checkpoints: dict[int, tuple[Checkpoint, Frontier]] = {}

    def append(self, events: Sequence[AuditEvent]) -> list[int]:
        with self._lock:
            return self.append_locked(events)

    def append_locked(self, events: Sequence[AuditEvent]) -> list[int]:
        """Append while the caller holds the lock (the fake's "same transaction")."""
        seq, previous = (self._rows[-1][0], self._rows[-1][2]) if self._rows else (0, GENESIS)
        added: list[Row] = []
        for event in events:
            seq += 1
            body = event.body(seq)
            previous = link(previous, leaf_hash(body))
            added.append((seq, body, previous))
        self._rows.extend(added)
        return [row[0] for row in added]

    def size(self) -> int:
        with self._lock:
            return len(self._rows)

    def rows(self, start: int = 1, stop: int | None = None) -> Iterator[Row]:
        with self._lock:
            chosen = self._rows[max(start, 1) - 1 : stop]
        yield from chosen

    def checkpoints(self) -> list[Checkpoint]:
        with self._lock:
            return [self._checkpoints[size][0] for size in sorted(self._checkpoints)]

    def latest(self) -> tuple[Checkpoint, Frontier] | None:
        with self._lock:
            if not self._checkpoints:
                return None
            checkpoint, frontier = self._checkpoints[max(self._checkpoints)]
            return checkpoint, frontier.copy()

    def add_checkpoint(self, checkpoint: Checkpoint, frontier: Frontier) -> bool:
        with self._lock:
            if checkpoint.size in self._checkpoints:
                return False
            self._checkpoints[checkpoint.size] = (checkpoint, frontier.copy())
            return True


def _copy(decision: Decision | None) -> Decision | None:
    return None if decision is None else Decision.model_validate(decision.model_dump(mode="json"))


def _storage_error(what: str, why: str) -> StorageError:
    return StorageError(f"could not {what}: {why}")


if TYPE_CHECKING:
    _intent_store: type[IntentStore] = InMemoryIntentStore
    _breaker_store: type[BreakerStore] = InMemoryIntentStore
    _policy_history: type[PolicyHistory] = InMemoryIntentStore
    _audit_store: type[AuditStore] = InMemoryAuditStore
