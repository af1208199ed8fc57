"""Dedupe, rate limit and breaker arithmetic, with time as plain values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.admission import Admission, Candidate, admit, reset
from orchestrator.decision import Status
from orchestrator.records import BreakerState, RecentIntent
from orchestrator.settings import AdmissionSettings

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
RULES = AdmissionSettings()  # the platform defaults: 5m dedupe, 1/5m per agent, 3/15m breaker, 30m cool-down


def candidate(agent: str = "optimizer", key: str = "k-new", tenant: str = "acme") -> Candidate:
    return Candidate(intent_id="in-new", tenant=tenant, environment="dev", agent=agent, dedupe_key=key)


def earlier(
    n: int,
    *,
    agent: str = "builder",
    key: str | None = None,
    status: Status = Status.APPLIED,
    at: datetime = T0,
    tenant: str = "acme",
) -> RecentIntent:
    return RecentIntent(
        id=f"in-{n}", tenant=tenant, agent=agent, dedupe_key=key or f"k-{n}", status=status, received_at=at
    )


def decide(
    c: Candidate,
    recent: list[RecentIntent],
    *,
    now: datetime,
    breaker: BreakerState | None = None,
    rules: AdmissionSettings = RULES,
) -> Admission:
    return admit(c, recent=recent, breaker=breaker, settings=rules, now=now)


def test_same_changes_within_five_minutes_are_a_duplicate_naming_the_original() -> None:
    result = decide(candidate(key="same"), [earlier(1, key="same")], now=T0 + timedelta(minutes=4))
    assert result.status is Status.DUPLICATE
    assert result.duplicate_of == "in-1"
    assert "in-1" in result.reasons[0]


def test_same_changes_after_the_window_are_not_a_duplicate() -> None:
    result = decide(candidate(key="same"), [earlier(1, key="same")], now=T0 + timedelta(minutes=5, seconds=1))
    assert result.status is Status.QUEUED


def test_a_refused_intent_is_not_an_original_for_dedupe() -> None:
    refused = earlier(1, key="same", status=Status.REJECTED)
    assert decide(candidate(key="same"), [refused], now=T0 + timedelta(minutes=1)).status is Status.QUEUED


def test_same_changes_for_another_tenant_are_not_a_duplicate() -> None:
    other = earlier(1, key="same", tenant="globex")
    assert decide(candidate(key="same"), [other], now=T0 + timedelta(minutes=1)).status is Status.QUEUED


def test_second_deploy_by_one_agent_within_five_minutes_is_rate_limited_and_says_when() -> None:
    result = decide(candidate(), [earlier(1, agent="optimizer")], now=T0 + timedelta(minutes=2))
    assert result.status is Status.RATE_LIMITED
    assert "next deploy allowed at 2026-11-22T12:05:00Z" in result.reasons[0]


def test_rate_limit_is_per_agent() -> None:
    assert (
        decide(candidate(), [earlier(1, agent="builder")], now=T0 + timedelta(minutes=2)).status
        is Status.QUEUED
    )


def test_rate_limit_frees_after_the_window() -> None:
    assert (
        decide(candidate(), [earlier(1, agent="optimizer")], now=T0 + timedelta(minutes=5)).status
        is Status.QUEUED
    )


def test_fourth_agent_deploy_in_fifteen_minutes_trips_the_breaker() -> None:
    recent = [earlier(i, agent=f"agent{i}", at=T0 + timedelta(minutes=i)) for i in range(3)]
    result = decide(candidate(), recent, now=T0 + timedelta(minutes=10))
    assert result.status is Status.CIRCUIT_OPEN
    assert result.tripped and result.breaker is not None and result.breaker.open
    assert result.breaker.closes_at == T0 + timedelta(minutes=40)
    assert "apx breakers reset --tenant acme --env dev" in result.reasons[0]


def test_open_breaker_holds_until_the_cooldown_then_counts_afresh() -> None:
    recent = [earlier(i, agent=f"agent{i}", at=T0 + timedelta(minutes=i)) for i in range(3)]
    tripped = decide(candidate(), recent, now=T0 + timedelta(minutes=10)).breaker
    during = decide(candidate(agent="x"), recent, now=T0 + timedelta(minutes=39), breaker=tripped)
    assert during.status is Status.CIRCUIT_OPEN and not during.tripped
    after = decide(candidate(agent="x"), recent, now=T0 + timedelta(minutes=40), breaker=tripped)
    assert after.status is Status.QUEUED
    assert after.breaker is not None and not after.breaker.open


def test_human_reset_closes_the_breaker_and_restarts_the_count() -> None:
    recent = [earlier(i, agent=f"agent{i}", at=T0 + timedelta(minutes=i)) for i in range(3)]
    tripped = decide(candidate(), recent, now=T0 + timedelta(minutes=10)).breaker
    assert tripped is not None
    closed = reset(tripped, by="alice", now=T0 + timedelta(minutes=11))
    result = decide(candidate(), recent, now=T0 + timedelta(minutes=12), breaker=closed)
    assert result.status is Status.QUEUED


def test_dedupe_is_checked_before_rate_limit_and_breaker() -> None:
    recent = [earlier(1, agent="optimizer", key="same")]
    assert decide(candidate(key="same"), recent, now=T0 + timedelta(minutes=1)).status is Status.DUPLICATE


@given(
    offsets=st.lists(st.integers(min_value=0, max_value=3600), max_size=12),
    now_offset=st.integers(min_value=0, max_value=7200),
    deploys=st.integers(min_value=1, max_value=4),
)
def test_rate_limit_admits_only_while_the_window_holds_fewer_deploys_than_the_limit(
    offsets: list[int], now_offset: int, deploys: int
) -> None:
    rules = AdmissionSettings(rate_limit={"deploys": deploys, "per": "5m"}, breaker={"max_deploys": 1000})
    now = T0 + timedelta(seconds=now_offset)
    recent = [
        earlier(i, agent="optimizer", at=T0 + timedelta(seconds=o))
        for i, o in enumerate(offsets)
        if o <= now_offset
    ]
    in_window = sum(1 for r in recent if r.received_at > now - timedelta(minutes=5))
    result = decide(candidate(), recent, now=now, rules=rules)
    assert (result.status is Status.QUEUED) == (in_window < deploys)
    if result.status is Status.RATE_LIMITED:
        # The promised time really frees a slot: admitted then, given the same history.
        when = result.reasons[0].split("next deploy allowed at ")[1].split(" ")[0]
        at = datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        later = decide(candidate(), recent, now=at + timedelta(seconds=1), rules=rules)
        assert later.status is Status.QUEUED


@given(count=st.integers(min_value=0, max_value=8), limit=st.integers(min_value=1, max_value=6))
def test_breaker_trips_exactly_when_the_window_already_holds_the_limit(count: int, limit: int) -> None:
    rules = AdmissionSettings(breaker={"max_deploys": limit, "window": "15m"})
    recent = [earlier(i, agent=f"a{i}", at=T0 + timedelta(seconds=i)) for i in range(count)]
    result = decide(candidate(), recent, now=T0 + timedelta(minutes=1), rules=rules)
    assert (result.status is Status.CIRCUIT_OPEN) == (count >= limit)
