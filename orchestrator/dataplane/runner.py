""":class:`DataPlane`: follow the environment branches, run what they say, publish what it does.

``apx dataplane run`` drives it; tests drive :meth:`DataPlane.tick` and
:meth:`DataPlane.run` with a :class:`~orchestrator.testing.FrozenClock` and a
``sleep`` that advances it, so nothing really waits.

Each tick, for every environment: read the branch head; when it moved, parse
the snapshot and reconcile a new :class:`~orchestrator.dataplane.runtime.Runtime`
(logged as ``dataplane.reconciled`` with what changed); then observe the
runtime at the tick's time and publish the samples in one batch. This is what a
GitOps controller does (Argo CD polls the branch, syncs on a new commit), with
the simulated runtime in place of a cluster.

Read-only towards the config repo, by construction: the data plane is handed a
:class:`BranchReader` (``head`` and ``read``), not the ``ConfigRepo`` port with
``commit``. Only the orchestrator writes configuration; the data plane executes it.

A commit it cannot parse is not run: the last good runtime keeps serving (and
publishing, under its own commit) and ``dataplane.reconcile_failed`` is logged
once, as a controller whose sync failed keeps the last synced state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import yaml

from orchestrator.changeset import parse_environment
from orchestrator.clock import Clock
from orchestrator.dataplane.metrics import MetricsStore, weighted_error_rate
from orchestrator.dataplane.runtime import Changes, Runtime, changes, observe, reconcile
from orchestrator.logs import get_logger
from orchestrator.ports import Snapshot

__all__ = ["DEFAULT_RETENTION", "BranchReader", "DataPlane", "TickReport"]

log = get_logger("apx.dataplane")

#: Samples older than this are pruned. A day covers the canary's windows and the
#: Optimizer's look-back many times over, and keeps SQLite small (~250 samples per
#: environment per tick: about 20 M rows a day per environment at one tick a second).
DEFAULT_RETENTION = timedelta(days=1)
#: How often (data-plane time) the pruning runs.
PRUNE_EVERY = timedelta(minutes=10)
#: Names (or reasons) a list on a log line shows; longer lists are cut and counted
#: (``routes_added_total``): the first reconcile of the seed adds 60 routes.
_NAMES_IN_LOG = 10


class BranchReader(Protocol):
    """All the data plane may do to the config repo: look, never write."""

    def head(self, branch: str) -> str | None: ...

    def read(self, revision: str) -> Snapshot: ...


@dataclass(frozen=True)
class TickReport:
    """One environment in one tick."""

    at: datetime
    environment: str
    branch: str
    #: The commit the runtime runs (None while nothing could run yet).
    commit: str | None
    #: What changed, when this tick reconciled a new commit.
    reconciled: Changes | None
    samples: int
    #: This tick's request-weighted pool error rate, percent.
    error_rate: float | None
    #: Why nothing new could run (no such branch; a commit that does not parse).
    problem: str | None = None


class DataPlane:
    """The reference data plane over ``environments`` (environment → branch)."""

    def __init__(
        self,
        *,
        repo: BranchReader,
        metrics: MetricsStore,
        clock: Clock,
        environments: Mapping[str, str],
        retention: timedelta | None = DEFAULT_RETENTION,
    ) -> None:
        if not environments:
            raise ValueError("the data plane needs at least one environment")
        self._repo = repo
        self._metrics = metrics
        self._clock = clock
        self._environments = dict(environments)
        self._retention = retention
        self._runtimes: dict[str, Runtime] = {}
        #: The last head looked at per environment (good or not), so a bad commit is reported once.
        self._seen: dict[str, str | None] = {}
        self._problems: dict[str, str] = {}
        self._last_prune: datetime | None = None

    @property
    def runtimes(self) -> Mapping[str, Runtime]:
        """What each environment runs now."""
        return dict(self._runtimes)

    def tick(self) -> list[TickReport]:
        """Reconcile every environment whose branch moved, then publish one tick of metrics."""
        at = self._clock.now()
        reports: list[TickReport] = []
        batch = []
        for environment, branch in self._environments.items():
            reconciled = self._follow(environment, branch)
            runtime = self._runtimes.get(environment)
            samples = observe(runtime, environment=environment, at=at) if runtime else []
            batch.extend(samples)
            reports.append(
                TickReport(
                    at=at,
                    environment=environment,
                    branch=branch,
                    commit=runtime.commit if runtime else None,
                    reconciled=reconciled,
                    samples=len(samples),
                    error_rate=weighted_error_rate(samples),
                    problem=self._problems.get(environment),
                )
            )
        self._metrics.publish(batch)
        self._prune(at)
        return reports

    def run(
        self,
        *,
        interval: timedelta,
        ticks: int | None = None,
        duration: timedelta | None = None,
        until: Callable[[], bool] | None = None,
        sleep: Callable[[float], object] = time.sleep,
        report: Callable[[list[TickReport]], object] | None = None,
    ) -> int:
        """Tick every ``interval`` until ``ticks`` ticks ran, ``duration`` passed, or ``until()``
        is true, whichever comes first (with none of them: until interrupted). Returns the ticks run.

        Ticks keep to a fixed schedule (start + n * interval); a tick that overruns
        is followed at once by the next, and slots missed entirely are skipped
        rather than caught up. ``duration`` counts scheduled time, so ``--for 30s``
        at ``1s`` is exactly 30 ticks.
        """
        if interval <= timedelta(0):
            raise ValueError("the interval must be positive")
        if ticks is not None and ticks < 1:
            raise ValueError("ticks must be at least 1")
        start = self._clock.now()
        deadline = None if duration is None else start + duration
        next_at = start
        done = 0
        while until is None or not until():
            reports = self.tick()
            done += 1
            if report is not None:
                report(reports)
            if ticks is not None and done >= ticks:
                break
            next_at += interval
            now = self._clock.now()
            if next_at < now:
                next_at = now
            if deadline is not None and next_at >= deadline:
                break
            if until is not None and until():
                break
            sleep((next_at - now).total_seconds())
        return done

    def _follow(self, environment: str, branch: str) -> Changes | None:
        head = self._repo.head(branch)
        if head == self._seen.get(environment, ""):
            return None
        self._seen[environment] = head
        if head is None:
            self._problems[environment] = f"branch {branch!r} does not exist"
            log.warning("dataplane.branch_missing", environment=environment, branch=branch)
            return None
        try:
            runtime = reconcile(parse_environment(self._repo.read(head).files), commit=head)
        except (yaml.YAMLError, ValueError) as exc:
            problem = f"commit {head[:12]} on {branch!r} does not parse: {' '.join(str(exc).split())}"
            self._problems[environment] = problem
            log.error(
                "dataplane.reconcile_failed",
                environment=environment,
                branch=branch,
                commit=head,
                reason=problem,
            )
            return None
        previous = self._runtimes.get(environment)
        moved = changes(previous, runtime)
        self._runtimes[environment] = runtime
        self._problems.pop(environment, None)
        log.info(
            "dataplane.reconciled",
            environment=environment,
            branch=branch,
            commit=head,
            previous=previous.commit if previous else None,
            routes=len(runtime.routes),
            pools={name: pool.replicas for name, pool in runtime.pools.items()},
            **_capped({**moved.as_fields(), "skipped": list(runtime.skipped)}),
        )
        return moved

    def _prune(self, at: datetime) -> None:
        if self._retention is None:
            return
        if self._last_prune is not None and at - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = at
        pruned = self._metrics.prune(at - self._retention)
        if pruned:
            log.info("dataplane.pruned", samples=pruned, before=(at - self._retention).isoformat())


def _capped(fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, list):
            if not value:
                continue
            if len(value) > _NAMES_IN_LOG:
                out[f"{key}_total"] = len(value)
                value = value[:_NAMES_IN_LOG]
        out[key] = value
    return out
