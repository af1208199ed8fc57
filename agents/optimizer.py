"""The Optimizer: watches the data plane's pool metrics, read-only, and proposes resizing WorkerPools.

It never proposes on less than a window's worth of evidence. Its observation
keeps only samples the data plane took while running the revision it would
change (the observed head), so after any change it waits a whole window of the
new configuration before judging it; a pool with fewer distinct sample times
than ``min_samples`` (default ``window / sample_interval``) gets no proposal.

The rule, per pool, on means over the window:

* utilisation above ``scale_up_above``, or p95 above ``p95_slo_ms`` → scale up to
  ``ceil(replicas * utilisation / target_utilisation)``, at least one more;
* utilisation below ``scale_down_below`` → scale down the same way, at least one fewer;
* always within the pool's ``minReplicas..maxReplicas``.

**Reactions.** A pool's load changes when another agent changes what it serves
(a Builder's new Route) or the pool itself. When the newest landed intent that
touched the pool or what feeds it (its Routes and their Product, mapped as the
data plane maps them) came from another agent, the proposal names it as
``causedBy``, so a Builder↔Optimizer loop is visible in the log and to the breaker.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

from agents.base import Observation, Proposal
from agents.graph import Agent, Nothing, Scope
from orchestrator.dataplane.metrics import POOL, summarise
from orchestrator.dataplane.runtime import DEFAULT_POOL

if TYPE_CHECKING:
    from agents.client import Client
    from agents.settings import AgentsSettings, OptimizerSettings

NAME = "optimizer"

INSTRUCTIONS = """\
You are the Optimizer agent of APX. You read the data plane's metrics for each
WorkerPool over the observation window (utilisation 0-1, p95 latency in ms, error
rate, replicas) and propose resizing pools: up when utilisation is high or p95 is
over the SLO, down when utilisation is low, always within minReplicas..maxReplicas.
Propose nothing when a pool has fewer samples than the window needs. When the change
you react to was another agent's intent, name it in caused_by. Change only replicas."""


class OptimizerPlanner:
    """The Optimizer's deterministic planner: the thresholds of :class:`OptimizerSettings`."""

    name = "optimizer-thresholds"

    def __init__(self, settings: OptimizerSettings) -> None:
        self.settings = settings
        #: Distinct sample times a pool needs before any proposal for it.
        self.min_samples = settings.samples_needed

    def plan(self, observation: Observation) -> Proposal | None:
        answer = self.assess(observation)
        return answer if isinstance(answer, Proposal) else None

    def assess(self, observation: Observation) -> Proposal | Nothing:
        pools = sorted(k for k in observation.resources if k.startswith("WorkerPool/"))
        if not pools:
            return Nothing(f"no WorkerPool in {observation.environment}")
        changes: list[dict[str, Any]] = []
        said: list[str] = []
        why_not: list[str] = []
        causes: list[str] = []
        for key in pools:
            name = key.removeprefix("WorkerPool/")
            resized = self._resize(name, observation.resources[key], observation)
            if isinstance(resized, str):
                why_not.append(f"{key}: {resized}")
                continue
            document, reason = resized
            changes.append({"action": "update", "resource": document})
            said.append(f"{key} {reason}")
            # The newest change to what the pool runs (its Routes, their Product, the pool).
            cause = observation.reacting_to(lambda target: feeds(name, target, observation.resources))  # noqa: B023
            if cause is not None:
                causes.append(cause)
        if not changes:
            return Nothing("; ".join(why_not))
        return Proposal(
            summary="; ".join(said)[:500],
            changes=changes,
            # One intent has one cause: the newest of the changes its pools react to.
            caused_by=causes[-1] if causes else None,
        )

    def _resize(
        self, name: str, document: dict[str, Any], observation: Observation
    ) -> tuple[dict[str, Any], str] | str:
        """(the resized pool, why) or why not."""
        s = self.settings
        measured = observation.metrics.get(POOL + name)
        samples = int(measured.get("samples", observation.samples)) if measured else 0
        if measured is None or samples < self.min_samples:
            return (
                f"only {samples} of the {self.min_samples} samples a {_window(s)} window needs "
                f"at {observation.revision[:12]}; waiting for more"
            )
        spec = document.get("spec") or {}
        replicas, low, high = int(spec["replicas"]), int(spec["minReplicas"]), int(spec["maxReplicas"])
        utilisation = measured.get("utilisation")
        if utilisation is None:
            return "no utilisation measured"
        p95 = measured.get("p95_ms")
        ideal = math.ceil(replicas * utilisation / s.target_utilisation)
        facts = f"utilisation {utilisation:.2f}" + (f", p95 {p95:.0f} ms" if p95 is not None else "")
        over_slo = p95 is not None and p95 > s.p95_slo_ms
        if utilisation > s.scale_up_above or over_slo:
            target = min(max(ideal, replicas + 1), high)
            trigger = f"p95 over the {s.p95_slo_ms:.0f} ms SLO" if over_slo else f"over {s.scale_up_above}"
            if target <= replicas:
                return f"{facts} ({trigger}) but already at maxReplicas {high}"
        elif utilisation < s.scale_down_below:
            target = max(min(ideal, replicas - 1), low)
            trigger = f"under {s.scale_down_below}"
            if target >= replicas:
                return f"{facts} (under {s.scale_down_below}) but already at minReplicas {low}"
        else:
            return f"{facts} within {s.scale_down_below}..{s.scale_up_above}; nothing to change"
        resized = copy.deepcopy(document)
        resized["spec"]["replicas"] = target
        reason = f"replicas {replicas} → {target}: {facts} over {_window(s)} ({samples} samples), {trigger}"
        return resized, reason


def _window(settings: OptimizerSettings) -> str:
    from orchestrator.durations import format_duration

    return format_duration(settings.window)


def feeds(pool: str, target: str, resources: dict[str, dict[str, Any]]) -> bool:
    """Whether a change to ``target`` (``Kind/name``) changes ``pool``'s load or capacity.

    A Route runs on the pool named like its product, else on ``checkout`` (the
    data plane's rule); a Product feeds the pools its routes run on.
    """
    if target == f"WorkerPool/{pool}":
        return True
    kind, _, name = target.partition("/")
    if kind == "Route":
        route = resources.get(target)
        product = ((route or {}).get("spec") or {}).get("product")
        return product is not None and _pool_for(product, resources) == pool
    if kind == "Product":
        return _pool_for(name, resources) == pool
    return False


def _pool_for(product: str, resources: dict[str, dict[str, Any]]) -> str | None:
    if f"WorkerPool/{product}" in resources:
        return product
    return DEFAULT_POOL if f"WorkerPool/{DEFAULT_POOL}" in resources else None


def observe(client: Client, scope: Scope, settings: AgentsSettings) -> Observation:
    """The environment, its pools' metrics over the window at that revision, and recent landed intents."""
    s = settings.optimizer
    revision, resources = client.environment(scope.environment)
    samples = [
        x
        for x in client.metrics(scope.environment, scope.at - s.window, scope.at)
        if x.scope.startswith(POOL) and x.commit == revision
    ]
    metrics: dict[str, dict[str, float]] = {}
    for pool in summarise(samples):
        figures = {
            "samples": float(pool.ticks),
            "rps": pool.rps,
            "p95_ms": pool.p95_ms,
            "error_rate": pool.error_rate,
            "utilisation": pool.utilisation,
            "replicas": None if pool.replicas is None else float(pool.replicas),
        }
        metrics[POOL + pool.pool] = {k: v for k, v in figures.items() if v is not None}
    return Observation(
        agent=NAME,
        tenant=scope.tenant,
        environment=scope.environment,
        at=scope.at,
        revision=revision,
        resources=resources,
        metrics=metrics,
        samples=len({x.at for x in samples}),
        recent=client.recent(scope.environment, scope.at - s.react_within),
    )


OPTIMIZER = Agent(
    name=NAME,
    instructions=INSTRUCTIONS,
    observe=observe,
    planner=lambda settings: OptimizerPlanner(settings.optimizer),
)
