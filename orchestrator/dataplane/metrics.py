"""What the data plane measured: :class:`Sample`, the :class:`MetricsStore` port, and its fake.

The data plane publishes a tick of samples per environment; the orchestrator's
canary reads :meth:`MetricsStore.error_rate` before and after a change, and the
Optimizer and ``apx dataplane metrics`` read :meth:`MetricsStore.read`. Whoever
runs the data plane instead (Argo CD or Flux, with Prometheus measuring) plugs
in here with another adapter of this port; nothing else in apx needs to change.

Metric names and units (:class:`Metric`), per scope ``pool/<name>`` or ``route/<name>``:

========================  =========================================================
``rps``                   requests per second: arriving at a route; reaching a pool
                          (after rate limiting)
``p95_ms``                95th-percentile latency in milliseconds (absent when idle)
``error_rate``            percent (0 to 100) of those requests answered with a 5xx
``throttled_rate``        percent (0 to 100) answered 429 by a rate limit; **not** errors
``utilisation``           pools only: busy fraction of capacity, 0 to 1
``replicas``              pools only: workers running
========================  =========================================================

Time windows are half-open, ``since <= at < until``, so "the window before a
change" and "the window after it" never share a sample. :class:`InMemoryMetricsStore`
and :class:`orchestrator.dataplane.sql.SqlMetricsStore` pass the same contract
tests (``tests/integration/test_dataplane.py``). No I/O here.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from orchestrator.records import utc

__all__ = [
    "POOL",
    "ROUTE",
    "InMemoryMetricsStore",
    "Metric",
    "MetricsStore",
    "PoolSummary",
    "Sample",
    "summarise",
    "weighted_error_rate",
]

#: Scope prefixes: ``pool/checkout``, ``route/payments-v1-charges``.
POOL = "pool/"
ROUTE = "route/"


class Metric(StrEnum):
    RPS = "rps"
    P95_MS = "p95_ms"
    ERROR_RATE = "error_rate"
    THROTTLED_RATE = "throttled_rate"
    UTILISATION = "utilisation"
    REPLICAS = "replicas"


@dataclass(frozen=True, slots=True)
class Sample:
    """One measurement: ``metric`` of ``scope`` in ``environment`` at ``at``, running ``commit``.

    ``at`` is kept in UTC; a naive datetime is refused (a store cannot guess its zone).
    """

    at: datetime
    environment: str
    commit: str
    scope: str
    metric: str
    value: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", utc(self.at))
        for name in ("environment", "commit", "scope", "metric"):
            if not getattr(self, name):
                raise ValueError(f"sample {name} is empty")
        if not math.isfinite(self.value):
            raise ValueError(f"sample {self.scope} {self.metric} is not a finite number: {self.value}")


class MetricsStore(Protocol):
    """Where the data plane's samples go, and where the canary and the Optimizer read them."""

    def publish(self, samples: Sequence[Sample]) -> None:
        """Store ``samples``, all or none (one batch per tick; many rows, one round trip)."""
        ...

    def read(
        self,
        *,
        environment: str,
        since: datetime,
        until: datetime,
        scope: str | None = None,
        metric: str | None = None,
    ) -> list[Sample]:
        """Samples with ``since <= at < until``, ordered by time, then scope, then metric.

        ``scope`` is one scope (``pool/checkout``), or every scope of a kind when it
        ends with ``/`` (``pool/``); ``metric`` one metric name.
        """
        ...

    def error_rate(self, environment: str, since: datetime, until: datetime) -> float | None:
        """The environment's error rate in percent over ``[since, until)``: the mean of
        its pools' ``error_rate`` samples weighted by their ``rps``; None without samples."""
        ...

    def prune(self, before: datetime) -> int:
        """Delete samples taken before ``before``; how many were deleted."""
        ...


def weighted_error_rate(samples: Iterable[Sample]) -> float | None:
    """Request-weighted mean of the pool ``error_rate`` samples among ``samples`` (percent).

    Each pool sample is weighted by the pool's ``rps`` at the same instant, so a
    busy pool counts for more than an idle one and an idle pool (0 rps) counts
    for nothing. When every weight is zero the plain mean is returned; None
    when there is no pool error rate at all. Both stores use this, so they agree.
    """
    rates: dict[tuple[str, datetime, str], float] = {}
    weights: dict[tuple[str, datetime, str], float] = {}
    for s in samples:
        if not s.scope.startswith(POOL):
            continue
        key = (s.environment, s.at, s.scope)
        if s.metric == Metric.ERROR_RATE:
            rates[key] = s.value
        elif s.metric == Metric.RPS:
            weights[key] = s.value
    if not rates:
        return None
    total = sum(max(weights.get(key, 0.0), 0.0) for key in rates)
    if total == 0:
        return sum(rates.values()) / len(rates)
    return sum(rate * max(weights.get(key, 0.0), 0.0) for key, rate in rates.items()) / total


@dataclass(frozen=True)
class PoolSummary:
    """One pool over a window, as ``apx dataplane metrics`` prints it."""

    environment: str
    pool: str
    #: The commit of the latest sample: what the pool runs now.
    commit: str
    #: Ticks seen in the window.
    ticks: int
    first: datetime
    last: datetime
    #: Mean over the ticks.
    rps: float
    #: Mean of the per-tick p95 (None when the pool was idle throughout).
    p95_ms: float | None
    #: Request-weighted, as :func:`weighted_error_rate`.
    error_rate: float | None
    throttled_rate: float | None
    utilisation: float | None
    #: At the latest sample.
    replicas: int | None


def summarise(samples: Iterable[Sample]) -> list[PoolSummary]:
    """Per environment and pool, the window's figures; sorted by environment, then pool."""
    by_pool: dict[tuple[str, str], list[Sample]] = {}
    for s in samples:
        if s.scope.startswith(POOL):
            by_pool.setdefault((s.environment, s.scope.removeprefix(POOL)), []).append(s)
    out = []
    for (environment, pool), found in sorted(by_pool.items()):
        found.sort(key=lambda s: s.at)
        series: dict[str, list[float]] = {}
        for s in found:
            series.setdefault(s.metric, []).append(s.value)
        replicas = series.get(Metric.REPLICAS)
        out.append(
            PoolSummary(
                environment=environment,
                pool=pool,
                commit=found[-1].commit,
                ticks=len({s.at for s in found}),
                first=found[0].at,
                last=found[-1].at,
                rps=_mean(series.get(Metric.RPS)) or 0.0,
                p95_ms=_mean(series.get(Metric.P95_MS)),
                error_rate=weighted_error_rate(found),
                throttled_rate=_mean(series.get(Metric.THROTTLED_RATE)),
                utilisation=_mean(series.get(Metric.UTILISATION)),
                replicas=int(replicas[-1]) if replicas else None,
            )
        )
    return out


def _mean(values: list[float] | None) -> float | None:
    return sum(values) / len(values) if values else None


def _in_scope(scope: str, wanted: str) -> bool:
    return scope.startswith(wanted) if wanted.endswith("/") else scope == wanted


def _order(sample: Sample) -> tuple[datetime, str, str]:
    return (sample.at, sample.scope, sample.metric)


class InMemoryMetricsStore:
    """:class:`MetricsStore` in a list: the fake for tests and for a data plane without a database."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: list[Sample] = []

    def publish(self, samples: Sequence[Sample]) -> None:
        batch = list(samples)
        if not all(isinstance(s, Sample) for s in batch):
            raise TypeError("publish() takes Sample values")
        with self._lock:
            self._samples.extend(batch)

    def read(
        self,
        *,
        environment: str,
        since: datetime,
        until: datetime,
        scope: str | None = None,
        metric: str | None = None,
    ) -> list[Sample]:
        since, until = utc(since), utc(until)
        with self._lock:
            found = [
                s
                for s in self._samples
                if s.environment == environment
                and since <= s.at < until
                and (scope is None or _in_scope(s.scope, scope))
                and (metric is None or s.metric == metric)
            ]
        return sorted(found, key=_order)  # stable: equal keys stay in publishing order, as in SQL

    def error_rate(self, environment: str, since: datetime, until: datetime) -> float | None:
        return weighted_error_rate(self.read(environment=environment, since=since, until=until))

    def prune(self, before: datetime) -> int:
        before = utc(before)
        with self._lock:
            kept = [s for s in self._samples if s.at >= before]
            pruned = len(self._samples) - len(kept)
            self._samples = kept
        return pruned


if TYPE_CHECKING:
    _store: type[MetricsStore] = InMemoryMetricsStore
