"""The Security agent: scans an environment read-only and batches every fix into one intent.

Findings, each with the fix it proposes:

* a NetworkPolicy ingress rule open to the whole internet (``0.0.0.0/0`` or ``::/0``)
  → the rule is narrowed to ``narrow_to``
  (default ``10.0.0.0/8``, the internal range) or ``narrow_to_v6`` (``fd00::/8``),
  keeping its ports (merged into an existing rule for that network);
* a Route with ``auth: none`` on a path that is not a public probe
  (``public_paths``) → ``auth: required``;
* a PolicyBundle whose observability is not PII-safe → ``piiSafe: true``; a trace
  sample rate over the budget (``max_sample_rate``) → the budget;
* a value that looks like a secret (the pipeline's own detect-secrets scan, run over
  the whole environment: a hand-made commit never passed it) → removed when it is
  an entry of a list (``piiFields``, a ``ports`` list), where dropping it leaves a valid
  resource. A secret anywhere else has no safe replacement an agent could choose:
  it is named (never echoed) in the rationale for a human to rotate and remove.

All of them go into ONE proposal (the platform design: the Security agent scans
hourly and batches), so a scan is one decision to review. Network allowlist
changes need human approval in every environment, so a proposal that narrows
ingress becomes a PR even in dev: the pipeline, not the agent, decides that.
"""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agents.base import MAX_CHANGES, MAX_SUMMARY, Observation, Proposal
from agents.graph import Agent, Nothing, Scope

if TYPE_CHECKING:
    from agents.client import Client
    from agents.settings import AgentsSettings, SecuritySettings
    from validators.secrets import SecretScanValidator

NAME = "security"

INSTRUCTIONS = """\
You are the Security agent of APX. You scan one environment's resources read-only and
propose fixes, all in one proposal: NetworkPolicy ingress open to 0.0.0.0/0 or ::/0
is narrowed to an internal network; Routes with auth none (other than public health
probes) get auth required; PolicyBundle observability gets piiSafe true and a sample
rate within budget; list entries holding secrets are removed (never repeat a secret).
Never widen access, never touch another tenant. When there is
nothing to fix, propose nothing."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SecurityPlanner:
    """The Security agent's deterministic planner: the scan described above."""

    name = "security-scan"

    def __init__(self, settings: SecuritySettings) -> None:
        self.settings = settings
        self._secret_scan: SecretScanValidator | None = None

    def _secrets(self, resources: dict[str, dict[str, Any]]) -> _Secrets:
        """Secrets in the environment: which list entries to drop, which resources are stuck."""
        if self._secret_scan is None:  # detect-secrets' plugins: built once, on first scan
            from validators.secrets import SecretScanValidator

            self._secret_scan = SecretScanValidator()
        found = _Secrets()
        for finding in self._secret_scan.scan_resources(resources):
            where = f"{finding.resource}: {finding.field} holds a secret ({', '.join(finding.detectors)})"
            value = _at(resources.get(finding.resource), finding.loc)
            if isinstance(value, str) and value:
                found.values.add(value)
            if finding.loc and isinstance(finding.loc[-1], int) and finding.resource in resources:
                found.removable.setdefault(finding.resource, []).append((finding.loc, where))
            else:
                found.stuck.setdefault(finding.resource, []).append(where)
        return found

    def plan(self, observation: Observation) -> Proposal | None:
        answer = self.assess(observation)
        return answer if isinstance(answer, Proposal) else None

    def assess(self, observation: Observation) -> Proposal | Nothing:
        fixed: dict[str, dict[str, Any]] = {}
        found: list[str] = []
        routes: list[str] = []
        routes_left = 0
        secrets = self._secrets(observation.resources)
        for key in sorted(observation.resources):
            if key in secrets.stuck:
                # Any change to it would carry the secret again, and the pipeline's scan would
                # refuse the whole batch: it waits for a human (said in the rationale).
                continue
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
        unfixable = self._remove_secrets(observation.resources, secrets, fixed, found)
        if not fixed:
            if unfixable:
                return Nothing(
                    f"scanned {len(observation.resources)} resources: "
                    + "; ".join(unfixable)
                    + " (no safe fix an agent can choose: rotate the secret, then remove it)"
                )
            return Nothing(f"scanned {len(observation.resources)} resources: no findings")
        found.extend(f"{item} (rotate it, then remove it: no safe fix)" for item in unfixable)
        if routes:
            shown = ", ".join(routes[:3]) + (", …" if len(routes) > 3 else "")
            noun = "Route" if len(routes) == 1 else "Routes"
            found.append(f"{len(routes)} {noun} served without auth → auth required ({shown})")
        if routes_left:
            found.append(f"{routes_left} more Routes without auth wait for the next scan")
        summary = f"security scan of {observation.environment}: " + "; ".join(found)
        for value in secrets.values:  # e.g. a secret pasted into piiFields, listed above
            summary = summary.replace(value, "<redacted>")
        if len(summary) > MAX_SUMMARY:
            summary = summary[: MAX_SUMMARY - 1] + "…"
        return Proposal(
            summary=summary,
            changes=[{"action": "update", "resource": fixed[k]} for k in fixed],
            caused_by=observation.reacting_to(fixed.__contains__),
        )

    def _remove_secrets(
        self,
        resources: dict[str, dict[str, Any]],
        secrets: _Secrets,
        fixed: dict[str, dict[str, Any]],
        found: list[str],
    ) -> list[str]:
        """Drop secret list entries into ``fixed`` (on top of the other fixes); return what it
        cannot fix. Findings name the resource and field, never the value."""
        unfixable = [where for wheres in secrets.stuck.values() for where in wheres]
        for key, entries in secrets.removable.items():
            if key not in fixed and len(fixed) >= MAX_CHANGES:
                unfixable.append(f"{key}: more secrets wait for the next scan")
                continue
            document = copy.deepcopy(fixed.get(key, resources[key]))
            # Highest index first, so removing one entry does not shift the next one's index.
            for loc, where in sorted(entries, key=lambda entry: entry[0][-1], reverse=True):
                if _remove(document, loc, resources[key]):
                    found.append(f"{where} → entry removed")
                else:
                    unfixable.append(f"{where}: it moved under another fix; the next scan retries")
            fixed[key] = document
        return unfixable

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


@dataclass
class _Secrets:
    """What the secret scan of an environment found, sorted by what the agent can do about it."""

    #: Resource → (list-entry path, finding text): entries the agent removes.
    removable: dict[str, list[tuple[tuple[str | int, ...], str]]] = field(default_factory=dict)
    #: Resource → finding texts: secrets with no safe replacement; the resource is left alone.
    stuck: dict[str, list[str]] = field(default_factory=dict)
    #: The values, only to keep them out of the rationale.
    values: set[str] = field(default_factory=set)


def _at(document: object, loc: tuple[str | int, ...]) -> object:
    """The value at ``loc``, or None when there is nothing there."""
    node: Any = document
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _remove(document: dict[str, Any], loc: tuple[str | int, ...], original: dict[str, Any]) -> bool:
    """Delete the list entry at ``loc`` if it still holds what the original had there."""
    try:
        parent: Any = document
        was: Any = original
        for part in loc[:-1]:
            parent, was = parent[part], was[part]
        if parent[loc[-1]] != was[loc[-1]]:
            return False
        del parent[loc[-1]]
    except (KeyError, IndexError, TypeError):
        return False
    return True


def _network(cidr: object) -> Network | None:
    try:
        return ipaddress.ip_network(str(cidr), strict=False)
    except ValueError:
        return None


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
