"""The Security agent: scans an environment read-only and batches every fix into one intent.

Findings, each with the fix it proposes:

* a NetworkPolicy ingress rule open to the whole internet (``0.0.0.0/0`` or ``::/0``)
  → the rule is narrowed to ``narrow_to``
  (default ``10.0.0.0/8``, the internal range) or ``narrow_to_v6`` (``fd00::/8``),
  keeping its ports (merged into an existing rule for that network);
* a Route with ``auth: none`` on a path that is not a public probe
  (``public_paths``) → ``auth: required``;
* a PolicyBundle whose observability is not PII-safe → ``piiSafe: true``; a trace
  sample rate over the budget (``max_sample_rate``) → the budget.

All of them go into ONE proposal (the platform design: the Security agent scans
hourly and batches), so a scan is one decision to review. Network allowlist
changes need human approval in every environment, so a proposal that narrows
ingress becomes a PR even in dev: the pipeline, not the agent, decides that.
"""

from __future__ import annotations

import copy
import ipaddress
from typing import TYPE_CHECKING, Any

from agents.base import MAX_CHANGES, MAX_SUMMARY, Observation, Proposal
from agents.graph import Agent, Nothing, Scope

if TYPE_CHECKING:
    from agents.client import Client
    from agents.settings import AgentsSettings, SecuritySettings

NAME = "security"

INSTRUCTIONS = """\
You are the Security agent of APX. You scan one environment's resources read-only and
propose fixes, all in one proposal: NetworkPolicy ingress open to 0.0.0.0/0 or ::/0
is narrowed to an internal network; Routes with auth none (other than public health
probes) get auth required; PolicyBundle observability gets piiSafe true and a sample
rate within budget. Never widen access, never touch another tenant. When there is
nothing to fix, propose nothing."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SecurityPlanner:
    """The Security agent's deterministic planner: the scan described above."""

    name = "security-scan"

    def __init__(self, settings: SecuritySettings) -> None:
        self.settings = settings

    def plan(self, observation: Observation) -> Proposal | None:
        answer = self.assess(observation)
        return answer if isinstance(answer, Proposal) else None

    def assess(self, observation: Observation) -> Proposal | Nothing:
        fixed: dict[str, dict[str, Any]] = {}
        found: list[str] = []
        routes: list[str] = []
        routes_left = 0
        for key in sorted(observation.resources):
            document = observation.resources[key]
            kind = key.partition("/")[0]
            if kind == "Route":
                route = self._route(document)
                if route is None:
                    continue
                if len(routes) >= self.settings.max_routes or len(fixed) >= MAX_CHANGES:
                    routes_left += 1
                    continue
                fixed[key] = route
                routes.append(key.removeprefix("Route/"))
                continue
            fix = (
                self._ingress(document)
                if kind == "NetworkPolicy"
                else self._observability(document)
                if kind == "PolicyBundle"
                else None
            )
            if fix is not None and len(fixed) < MAX_CHANGES:
                fixed[key], finding = fix
                found.append(f"{key}: {finding}")
        if not fixed:
            return Nothing(f"scanned {len(observation.resources)} resources: no findings")
        if routes:
            shown = ", ".join(routes[:3]) + (", …" if len(routes) > 3 else "")
            noun = "Route" if len(routes) == 1 else "Routes"
            found.append(f"{len(routes)} {noun} served without auth → auth required ({shown})")
        if routes_left:
            found.append(f"{routes_left} more Routes without auth wait for the next scan")
        summary = f"security scan of {observation.environment}: " + "; ".join(found)
        if len(summary) > MAX_SUMMARY:
            summary = summary[: MAX_SUMMARY - 1] + "…"
        return Proposal(
            summary=summary,
            changes=[{"action": "update", "resource": fixed[k]} for k in fixed],
            caused_by=_cause(list(fixed), observation),
        )

    def _ingress(self, document: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
        rules = list((document.get("spec") or {}).get("ingress") or [])
        networks = [_network(r.get("cidr")) for r in rules]
        open_rules = {i: n for i, n in enumerate(networks) if n is not None and n.prefixlen == 0}
        if not open_rules:
            return None
        kept = [copy.deepcopy(rule) for i, rule in enumerate(rules) if i not in open_rules]
        narrowed: list[str] = []
        for i, network in open_rules.items():
            to = self.settings.narrow_to if network.version == 4 else self.settings.narrow_to_v6
            ports = list(rules[i].get("ports") or [])
            same = next((r for r in kept if _network(r.get("cidr")) == _network(to)), None)
            if same is None:
                kept.append({"cidr": to, "ports": ports})
            else:
                same["ports"] = sorted({*same.get("ports", []), *ports})
            narrowed.append(f"{rules[i].get('cidr')} → {to}")
        fixed = copy.deepcopy(document)
        fixed["spec"]["ingress"] = kept
        return fixed, f"ingress open to the internet narrowed ({', '.join(narrowed)})"

    def _route(self, document: dict[str, Any]) -> dict[str, Any] | None:
        spec = document.get("spec") or {}
        if spec.get("auth") != "none" or spec.get("path") in self.settings.public_paths:
            return None
        fixed = copy.deepcopy(document)
        fixed["spec"]["auth"] = "required"
        return fixed

    def _observability(self, document: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
        seen = (document.get("spec") or {}).get("observability")
        if not isinstance(seen, dict):
            return None
        budget = self.settings.max_sample_rate
        problems: list[str] = []
        fixed = copy.deepcopy(document)
        wanted = fixed["spec"]["observability"]
        if seen.get("piiSafe") is False:
            wanted["piiSafe"] = True
            fields = ", ".join(seen.get("piiFields") or []) or "none listed"
            problems.append(f"PII fields ({fields}) not redacted → piiSafe true")
        rate = seen.get("sampleRate")
        if isinstance(rate, int | float) and rate > budget:
            wanted["sampleRate"] = budget
            problems.append(f"sample rate {rate} over the {budget} budget → {budget}")
        return (fixed, "; ".join(problems)) if problems else None


def _network(cidr: object) -> Network | None:
    try:
        return ipaddress.ip_network(str(cidr), strict=False)
    except ValueError:
        return None


def _cause(fixed: list[str], observation: Observation) -> str | None:
    """The newest landed intent that touched a fixed resource, if another agent's."""
    touching = [r for r in observation.recent if set(r["targets"]) & set(fixed)]
    if not touching or touching[-1]["agent"] == observation.agent:
        return None
    return str(touching[-1]["id"])


def observe(client: Client, scope: Scope, settings: AgentsSettings) -> Observation:
    """The environment's resources, and the intents that recently landed there."""
    revision, resources = client.environment(scope.environment)
    return Observation(
        agent=NAME,
        tenant=scope.tenant,
        environment=scope.environment,
        at=scope.at,
        revision=revision,
        resources=resources,
        recent=client.recent(scope.environment, scope.at - settings.security.react_within),
    )


SECURITY = Agent(
    name=NAME,
    instructions=INSTRUCTIONS,
    observe=observe,
    planner=lambda settings: SecurityPlanner(settings.security),
)
