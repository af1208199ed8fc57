"""Admission: dedupe, rate limit and circuit breaker, as arithmetic on facts.

No I/O here: the pipeline reads the recent intents and the breaker state from
the store, calls :func:`admit`, and writes back what it returns. Keeping the
windows pure is what lets tests cover the 5- and 15-minute rules with an
injected clock, and hypothesis check their invariants.

The guards run in the contract's order — dedupe, then rate limit, then breaker
— and the first that holds an intent decides its status. Only *admitted*
intents (queued, applied, pr_open, approved, merged) count for any of them: a
refused intent never uses up an agent's budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from orchestrator.decision import ADMITTED, Status
from orchestrator.durations import format_duration
from orchestrator.records import BreakerState, RecentIntent
from orchestrator.settings import AdmissionSettings


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """The facts of an arriving intent that admission looks at."""

    intent_id: str
    tenant: str
    environment: str
    agent: str
    dedupe_key: str


@dataclass(frozen=True, kw_only=True)
class Admission:
    status: Status
    reasons: tuple[str, ...] = ()
    duplicate_of: str | None = None
    #: The breaker's new state when it changed (tripped or cooled down), to save.
    breaker: BreakerState | None = None
    #: True when this intent tripped the breaker: raise the alert.
    tripped: bool = False

    @property
    def admitted(self) -> bool:
        return self.status is Status.QUEUED


def lookback(settings: AdmissionSettings) -> timedelta:
    """How far back :func:`admit` needs to see recent intents."""
    return max(settings.dedupe_window, settings.rate_limit.per, settings.breaker.window)


def admit(
    candidate: Candidate,
    *,
    recent: Sequence[RecentIntent],
    breaker: BreakerState | None,
    settings: AdmissionSettings,
    now: datetime,
) -> Admission:
    """Decide whether ``candidate`` may proceed. ``recent``: the environment's intents, any tenant."""
    admitted = [r for r in recent if r.status in ADMITTED and r.id != candidate.intent_id]

    original = _duplicate_of(candidate, admitted, since=now - settings.dedupe_window)
    if original is not None:
        return Admission(
            status=Status.DUPLICATE,
            duplicate_of=original.id,
            reasons=(
                f"duplicate of {original.id} ({original.status.value}, received "
                f"{_ago(now, original.received_at)} ago by {original.agent}): the same changes to "
                f"{candidate.tenant}/{candidate.environment} within "
                f"{format_duration(settings.dedupe_window)}",
            ),
        )

    held = _rate_limited(candidate, admitted, settings=settings, now=now)
    if held is not None:
        return held

    return _breaker(candidate, admitted, breaker=breaker, settings=settings, now=now)


def _duplicate_of(
    candidate: Candidate, admitted: Sequence[RecentIntent], *, since: datetime
) -> RecentIntent | None:
    matches = [
        r
        for r in admitted
        if r.dedupe_key == candidate.dedupe_key and r.tenant == candidate.tenant and r.received_at >= since
    ]
    return min(matches, key=lambda r: r.received_at, default=None)


def _rate_limited(
    candidate: Candidate, admitted: Sequence[RecentIntent], *, settings: AdmissionSettings, now: datetime
) -> Admission | None:
    limit = settings.rate_limit
    times = sorted(
        r.received_at for r in admitted if r.agent == candidate.agent and r.received_at > now - limit.per
    )
    if len(times) < limit.deploys:
        return None
    # The budget frees up when the oldest deploy that keeps it full leaves the window.
    next_at = times[len(times) - limit.deploys] + limit.per
    return Admission(
        status=Status.RATE_LIMITED,
        reasons=(
            f"rate limited: {candidate.agent} already deployed {len(times)} time(s) to "
            f"{candidate.environment} in the last {format_duration(limit.per)} (limit {limit.deploys} per "
            f"{format_duration(limit.per)}); next deploy allowed at {_iso(next_at)} "
            f"(in {_ago(next_at, now)})",
        ),
    )


def _breaker(
    candidate: Candidate,
    admitted: Sequence[RecentIntent],
    *,
    breaker: BreakerState | None,
    settings: AdmissionSettings,
    now: datetime,
) -> Admission:
    rules = settings.breaker
    state = breaker or BreakerState(tenant=candidate.tenant, environment=candidate.environment, open=False)
    changed: BreakerState | None = None
    where = f"{candidate.tenant}/{candidate.environment}"
    reset_hint = f"`apx breakers reset --tenant {candidate.tenant} --env {candidate.environment}`"

    if state.open and state.closes_at is not None and now >= state.closes_at:
        # Cool-down over: close, and restart the count from the moment it closed.
        state = changed = replace(state, open=False, count_from=state.closes_at)

    if state.open:
        return Admission(
            status=Status.CIRCUIT_OPEN,
            reasons=(
                f"circuit breaker for {where} is open since {_iso(state.opened_at)} ({state.reason}); "
                f"agent intents are held until a human runs {reset_hint} or the cool-down ends at "
                f"{_iso(state.closes_at)}",
            ),
        )

    start = now - rules.window
    if state.count_from is not None and state.count_from > start:
        start = state.count_from
    deploys = [r for r in admitted if r.tenant == candidate.tenant and r.received_at > start]
    if len(deploys) < rules.max_deploys:
        return Admission(status=Status.QUEUED, breaker=changed)

    agents = sorted({r.agent for r in deploys})
    reason = (
        f"{len(deploys)} agent deploys to {where} within {format_duration(rules.window)} "
        f"(limit {rules.max_deploys}) by {', '.join(agents)}"
    )
    tripped = replace(
        state,
        open=True,
        opened_at=now,
        closes_at=now + rules.cooldown,
        reason=reason,
        tripped_by=candidate.intent_id,
    )
    return Admission(
        status=Status.CIRCUIT_OPEN,
        breaker=tripped,
        tripped=True,
        reasons=(
            f"circuit breaker for {where} tripped: {reason}; agent intents are held until a human runs "
            f"{reset_hint} or the cool-down ends at {_iso(tripped.closes_at)}",
        ),
    )


def reset(state: BreakerState, *, by: str, now: datetime) -> BreakerState:
    """A human closes the breaker; the deploy count restarts now."""
    return replace(state, open=False, count_from=now, reset_at=now, reset_by=by)


def _iso(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ") if at else "?"


def _ago(later: datetime, earlier: datetime) -> str:
    seconds = max(0, int((later - earlier).total_seconds()))
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"
