"""Sixty one-route intents do not get around a 50-route limit."""

from __future__ import annotations

from datetime import UTC, datetime

from orchestrator.cumulative import routes_in_window
from orchestrator.decision import Status
from orchestrator.records import RecentIntent

T0 = datetime(2026, 11, 22, tzinfo=UTC)


def earlier(n: int, *targets: str, agent: str = "builder", tenant: str = "acme") -> RecentIntent:
    return RecentIntent(
        id=f"in-{n}",
        tenant=tenant,
        agent=agent,
        dedupe_key=str(n),
        status=Status.APPLIED,
        received_at=T0,
        targets=targets,
    )


def count(recent: list[RecentIntent], *targets: str, agent: str = "builder") -> tuple[int, list[str]]:
    result = routes_in_window(
        intent_id="in-new", agent=agent, tenant="acme", targets=targets, recent=recent, window="1h"
    )
    return result.routes, result.intents


def test_routes_of_the_agents_earlier_intents_add_up_and_are_named() -> None:
    recent = [earlier(i, f"Route/r{i}") for i in range(50)]
    routes, intents = count(recent, "Route/r-new")
    assert routes == 51
    assert intents == [f"in-{i}" for i in range(50)]


def test_the_same_route_counts_once() -> None:
    assert count([earlier(1, "Route/a"), earlier(2, "Route/a")], "Route/a")[0] == 1


def test_other_agents_tenants_and_kinds_do_not_count() -> None:
    recent = [
        earlier(1, "Route/a", agent="optimizer"),
        earlier(2, "Route/b", tenant="globex"),
        earlier(3, "WorkerPool/checkout"),
    ]
    assert count(recent, "Route/c") == (1, [])
