"""Cumulative limits: the route limit over an agent's recent intents, not just one.

Without this, an agent could change sixty routes as sixty intents of one
route each and never meet the 50-routes-per-intent rule. Counted per agent,
tenant and environment, over the distinct routes of its admitted intents in
the window (refused intents changed nothing and do not count). The decision
names the earlier intents that counted, so the agent can see why.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from orchestrator.records import RecentIntent


@dataclass(frozen=True, kw_only=True)
class Cumulative:
    window: str
    routes: int
    intents: list[str] = field(default_factory=list)

    def policy_input(self) -> dict[str, object]:
        return {"window": self.window, "routes": self.routes, "intents": list(self.intents)}


def routes_in_window(
    *,
    intent_id: str,
    agent: str,
    tenant: str,
    targets: Iterable[str],
    recent: Sequence[RecentIntent],
    window: str,
) -> Cumulative:
    """Distinct routes this intent and the agent's earlier admitted ones in ``recent`` touch."""
    routes = {t for t in targets if t.startswith("Route/")}
    counted: list[str] = []
    for earlier in recent:
        if earlier.id == intent_id or earlier.agent != agent or earlier.tenant != tenant:
            continue
        theirs = {t for t in earlier.targets if t.startswith("Route/")}
        if theirs:
            counted.append(earlier.id)
            routes |= theirs
    return Cumulative(window=window, routes=len(routes), intents=counted)
