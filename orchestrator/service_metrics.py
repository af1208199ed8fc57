"""The service's Prometheus metrics: what ``GET /metrics`` serves.

Two sources, chosen by what each number means when several processes share
one database (``apx serve``, ``apx worker``, CLI commands):

* **Counted here, in process**: ``apx_decisions_total`` and
  ``apx_decision_seconds`` are observed as the pipeline and the review flow
  make decisions (:meth:`ServiceMetrics.decided`). Each process counts its own;
  Prometheus sums them across scraped processes. Decisions made by a
  short-lived CLI command are not counted anywhere (the intent log has them).
* **Read from the database at scrape time** (:class:`StateCollector`): open
  breakers, open PRs, pending notifications and audit entries. These are
  states, not events, so every process reports the same values.

Labels are low-cardinality on purpose: agent, environment, status. Never a
tenant (``/metrics`` needs no token, so a label would tell any caller which
customers exist) and never an intent id (one series per intent).

Each :class:`~orchestrator.bootstrap.App` owns its registry, never
prometheus_client's global one, so tests and several Apps in one process
cannot collide.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from orchestrator.logs import get_logger

if TYPE_CHECKING:
    from orchestrator.bootstrap import App

__all__ = ["ServiceMetrics", "StateCollector"]

log = get_logger("apx.metrics")

#: From a cached admission (a few ms) to a decision that waited on a slow git or policy (seconds).
_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    """The registry of one App: the in-process counters plus, given an App, the state gauges."""

    def __init__(self, app: App | None = None) -> None:
        self.registry = CollectorRegistry()
        self._decisions = Counter(
            "apx_decisions",
            "Decisions made by this process, by agent, environment and resulting status.",
            ["agent", "environment", "status"],
            registry=self.registry,
        )
        self._seconds = Histogram(
            "apx_decision_seconds",
            "Time this process spent on one decision: admission for a held intent, "
            "sequence/validate/route for an admitted one (not the time spent queued).",
            ["environment"],
            registry=self.registry,
            buckets=_SECONDS_BUCKETS,
        )
        if app is not None:
            self.registry.register(StateCollector(app))

    def decided(self, *, agent: str, environment: str, status: str, seconds: float | None = None) -> None:
        """Count one decision; ``seconds`` when the pipeline timed it (review outcomes are not)."""
        self._decisions.labels(agent=agent, environment=environment, status=status).inc()
        if seconds is not None:
            self._seconds.labels(environment=environment).observe(seconds)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The registry in the format the scraper asked for (text, or OpenMetrics), and its type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class StateCollector(Collector):
    """Gauges read from the database on every scrape.

    A read that fails (the database is down) leaves its gauge out of that
    scrape and sets ``apx_state_up`` to 0, so the scrape still answers and an
    alert can fire on the gap instead of on a 500.
    """

    def __init__(self, app: App) -> None:
        self._app = app

    def describe(self) -> list[Metric]:
        # Nothing up front: describing would read the database at registration.
        return []

    def collect(self) -> Iterator[Metric]:
        up = 1
        for read in (self._breakers, self._prs, self._notifications, self._audit):
            try:
                yield read()
            except Exception as exc:
                up = 0
                log.error("metrics.read_failed", gauge=read.__name__.lstrip("_"), error=str(exc))
        yield GaugeMetricFamily(
            "apx_state_up", "1 when every state gauge could be read from the database.", value=up
        )

    def _environments(self) -> list[str]:
        return sorted(self._app.settings.environments)

    def _breakers(self) -> Metric:
        now = self._app.clock.now()
        open_here = Tally(
            s.environment
            for s in self._app.store.breakers()
            # Past its cool-down a breaker is closed for admission, even before a write records it.
            if s.open and (s.closes_at is None or now < s.closes_at)
        )
        return self._by_environment(
            "apx_breakers_open", "Open circuit breakers (tenant and environment pairs).", open_here
        )

    def _prs(self) -> Metric:
        counts = self._app.store.count_pull_requests(status="open")
        return self._by_environment("apx_prs_open", "PRs waiting for human review.", counts)

    def _notifications(self) -> Metric:
        return GaugeMetricFamily(
            "apx_notifications_pending",
            "Webhook notifications queued and not yet delivered nor given up.",
            value=self._app.outbox.pending_count(),
        )

    def _audit(self) -> Metric:
        return GaugeMetricFamily(
            "apx_audit_entries", "Entries in the audit log.", value=self._app.store.audit.size()
        )

    def _by_environment(self, name: str, documentation: str, counts: Tally[str] | dict[str, int]) -> Metric:
        """One sample per configured environment (0 included, so alerts see it), plus any other found."""
        gauge = GaugeMetricFamily(name, documentation, labels=["environment"])
        for environment in sorted({*self._environments(), *counts}):
            gauge.add_metric([environment], counts.get(environment, 0))
        return gauge
