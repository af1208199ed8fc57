"""``GET /metrics``: the decisions this process made, and the state of the database, for Prometheus.

Real home (SQLite or PostgreSQL), real pipeline, FastAPI's TestClient on an
application that includes the metrics router and holds the App the way
``create_api`` does. Values are read with prometheus_client's own parser.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from test_pipeline import POOL, doc, intent

from orchestrator.api.metrics import router
from orchestrator.bootstrap import App, build
from orchestrator.decision import Decision, Status
from orchestrator.home import init_home
from orchestrator.notify.settings import NotificationSettings
from orchestrator.settings import BreakerSettings, Settings
from orchestrator.testing import FrozenClock

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
INTENT_ID = re.compile(r"in-[0-9a-z]{26}")
TRACE_ID = re.compile(r"\b[0-9a-f]{32}\b")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The home (conftest's, on each database) with a breaker that trips on the second agent
    deploy, and one webhook (that never answers)."""
    loaded = settings
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{probe.getsockname()[1]}/hook"
    return loaded.model_copy(
        update={
            "admission": loaded.admission.model_copy(update={"breaker": BreakerSettings(max_deploys=2)}),
            "notifications": NotificationSettings.model_validate(
                {"webhooks": [{"name": "ops", "url": nowhere}]}
            ),
        }
    )


@pytest.fixture
def app(settings: Settings, clock: FrozenClock) -> Iterator[App]:
    application = build(settings.home, settings=settings, clock=clock)
    yield application
    application.close()


def client_for(app: App) -> TestClient:
    api = FastAPI()
    api.state.apx = app
    api.include_router(router)
    return TestClient(api)


def scrape(app: App) -> tuple[str, Samples]:
    response = client_for(app).get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return response.text, samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def submit(app: App, environment: str, agent: str, replicas: int) -> Decision:
    return app.orchestrator.submit(intent(environment, ("update", doc(POOL, replicas=replicas))), agent=agent)


def a_busy_morning(app: App) -> list[Decision]:
    """One decision of each kind a dashboard shows: applied, duplicate, rate limited, breaker, PR."""
    decisions = [
        submit(app, "dev", "optimizer", 5),
        submit(app, "dev", "builder", 5),  # the same change again
        submit(app, "dev", "optimizer", 6),  # one deploy per agent per 5 minutes
        submit(app, "dev", "security", 7),  # acme/dev's second agent deploy...
        submit(app, "dev", "builder", 8),  # ...so the next one trips the breaker
        submit(app, "prod", "optimizer", 6),
    ]
    assert [d.status for d in decisions] == [
        Status.APPLIED,
        Status.DUPLICATE,
        Status.RATE_LIMITED,
        Status.APPLIED,
        Status.CIRCUIT_OPEN,
        Status.PR_OPEN,
    ], [d.reasons for d in decisions]
    return decisions


def test_metrics_count_this_processs_decisions_by_agent_environment_and_status(app: App) -> None:
    a_busy_morning(app)
    _text, samples = scrape(app)

    decided = {
        (dict(labels)["agent"], dict(labels)["environment"], dict(labels)["status"]): n
        for (name, labels), n in samples.items()
        if name == "apx_decisions_total"
    }
    assert decided == {
        ("optimizer", "dev", "applied"): 1,
        ("builder", "dev", "duplicate"): 1,
        ("optimizer", "dev", "rate_limited"): 1,
        ("security", "dev", "applied"): 1,
        ("builder", "dev", "circuit_open"): 1,
        ("optimizer", "prod", "pr_open"): 1,
    }
    assert value(samples, "apx_decision_seconds_count", environment="dev") == 5
    assert value(samples, "apx_decision_seconds_count", environment="prod") == 1
    assert value(samples, "apx_breakers_open", environment="dev") == 1
    assert value(samples, "apx_breakers_open", environment="prod") == 0
    assert value(samples, "apx_prs_open", environment="prod") == 1
    assert value(samples, "apx_prs_open", environment="dev") == 0
    # breaker.tripped and pr.opened, queued for the one webhook and not delivered.
    assert value(samples, "apx_notifications_pending") == app.outbox.pending_count() == 2
    assert value(samples, "apx_audit_entries") == app.store.audit.size() > 0
    assert value(samples, "apx_state_up") == 1


def test_metrics_name_no_tenant_no_intent_and_no_trace(app: App) -> None:
    decisions = a_busy_morning(app)
    text, _samples = scrape(app)
    assert "acme" not in text
    assert not INTENT_ID.search(text)
    assert not TRACE_ID.search(text)
    assert all(d.intent_id not in text and d.trace_id not in text for d in decisions)


def test_review_outcomes_are_counted_and_the_pr_gauge_follows(app: App) -> None:
    opened = submit(app, "prod", "optimizer", 6)
    assert opened.pr is not None
    assert app.reviews.approve(opened.pr.id, by="alice").result == "merged"
    _text, samples = scrape(app)
    for status in ("pr_open", "approved", "merged"):
        assert (
            value(samples, "apx_decisions_total", agent="optimizer", environment="prod", status=status) == 1
        )
    assert value(samples, "apx_prs_open", environment="prod") == 0


def test_another_process_reports_the_same_state_but_only_its_own_counts(
    app: App, settings: Settings, clock: FrozenClock
) -> None:
    a_busy_morning(app)
    _text, here = scrape(app)
    other = build(settings.home, settings=settings, clock=clock)  # e.g. `apx worker` beside `apx serve`
    try:
        _text, there = scrape(other)
    finally:
        other.close()
    gauges = ("apx_breakers_open", "apx_prs_open", "apx_notifications_pending", "apx_audit_entries")
    state_here = {k: v for k, v in here.items() if k[0] in gauges}
    state_there = {k: v for k, v in there.items() if k[0] in gauges}
    assert state_here and state_there == state_here
    assert not [k for k in there if k[0] == "apx_decisions_total"]


def test_a_scraper_that_asks_for_openmetrics_gets_it(app: App) -> None:
    submit(app, "dev", "optimizer", 5)
    response = client_for(app).get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0; charset=utf-8"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    assert 'apx_decisions_total{agent="optimizer",environment="dev",status="applied"} 1.0' in response.text


def test_an_unreadable_database_still_answers_and_says_so(tmp_path: Path, clock: FrozenClock) -> None:
    home = tmp_path / "home"
    init_home(home)
    (home / "apx.db").write_bytes(b"this is not a database" * 100)
    broken = build(home, clock=clock)
    try:
        _text, samples = scrape(broken)
    finally:
        broken.close()
    assert value(samples, "apx_state_up") == 0
    assert not [k for k in samples if k[0] in ("apx_prs_open", "apx_audit_entries")]


def test_the_served_api_exposes_metrics_without_a_token(app: App) -> None:
    from orchestrator.api.app import create_api

    submit(app, "dev", "optimizer", 5)
    response = TestClient(create_api(app)).get("/metrics")  # no Authorization header
    assert response.status_code == 200
    assert 'apx_decisions_total{agent="optimizer",environment="dev",status="applied"} 1.0' in response.text
