"""The pipeline end to end on a real home: SQLite or PostgreSQL, a real git repo, real signing."""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.bootstrap import App, build
from orchestrator.decision import Status
from orchestrator.errors import UnknownEnvironment
from orchestrator.home import init_home
from orchestrator.intent import Intent
from orchestrator.records import IntentQuery
from orchestrator.seed import seed_files
from orchestrator.settings import load_settings
from orchestrator.testing import FrozenClock

SEED = {path: yaml.safe_load(text) for path, text in seed_files().items()}
POOL = "WorkerPool/checkout.yaml"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def app(request: pytest.FixtureRequest, tmp_path: Path, clock: FrozenClock) -> Iterator[App]:
    home = tmp_path / "home"
    init_home(home)
    settings = load_settings(home)
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
        settings = settings.model_copy(update={"database": settings.database.model_copy(update={"url": url})})
    application = build(home, settings=settings, clock=clock)
    yield application
    application.store.close()


def doc(file: str, /, **spec: Any) -> dict[str, Any]:
    document = copy.deepcopy(SEED[file])
    document["spec"].update(spec)
    return document


def intent(environment: str, *changes: tuple[str, dict[str, Any]], rationale: str = "test") -> Intent:
    return Intent.of(*changes, tenant="acme", environment=environment, rationale=rationale)


def git(app: App, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(app.settings.repo_path), *args], capture_output=True, text=True)


def branch_file(app: App, branch: str, path: str) -> dict[str, Any]:
    return dict(yaml.safe_load(git(app, "show", f"{branch}:{path}").stdout))


def test_dev_intent_becomes_one_signed_commit_with_trailers_and_a_rollback(app: App) -> None:
    prod_before = app.repo.head("prod")
    decision = app.orchestrator.submit(
        intent("dev", ("update", doc(POOL, replicas=6)), rationale="p95 over SLO"), agent="optimizer"
    )

    assert decision.status is Status.APPLIED
    assert decision.commit == app.repo.head("dev")
    assert git(app, "verify-commit", decision.commit).returncode == 0
    message = git(app, "log", "-1", "--format=%B", decision.commit).stdout
    assert f"Intent-Id: {decision.intent_id}" in message and f"Trace-Id: {decision.trace_id}" in message
    assert "p95 over SLO" in message
    assert branch_file(app, "dev", POOL)["spec"]["replicas"] == 6
    assert app.repo.head("prod") == prod_before
    assert decision.rollback is not None and decision.rollback.changes[0]["resource"]["spec"]["replicas"] == 4
    assert "+  replicas: 6" in decision.diff[POOL]


def test_prod_intent_opens_a_signed_pr_branch_and_leaves_prod_untouched(app: App) -> None:
    prod_before = app.repo.head("prod")
    decision = app.orchestrator.submit(intent("prod", ("update", doc(POOL, replicas=6))), agent="optimizer")

    assert decision.status is Status.PR_OPEN
    assert decision.pr is not None and decision.pr.branch == f"apx/{decision.intent_id}"
    assert app.repo.head(decision.pr.branch) == decision.pr.head
    assert git(app, "verify-commit", decision.pr.head).returncode == 0
    assert git(app, "rev-list", "--count", f"prod..{decision.pr.branch}").stdout.strip() == "1"
    assert app.repo.head("prod") == prod_before
    assert branch_file(app, "prod", POOL)["spec"]["replicas"] == 4


def test_the_same_changes_again_are_a_duplicate_until_the_window_passes(app: App, clock: FrozenClock) -> None:
    proposal = intent("dev", ("update", doc(POOL, replicas=6)))
    first = app.orchestrator.submit(proposal, agent="optimizer")
    again = app.orchestrator.submit(proposal, agent="builder")
    assert again.status is Status.DUPLICATE and again.duplicate_of == first.intent_id
    assert first.intent_id in again.reasons[0]
    assert app.repo.head("dev") == first.commit

    clock.advance(timedelta(minutes=6))
    later = app.orchestrator.submit(proposal, agent="builder")
    assert later.status is Status.REJECTED  # admitted, and then there is nothing left to change
    assert "no change" in later.reasons[-1]


def test_one_agent_gets_one_deploy_per_five_minutes(app: App, clock: FrozenClock) -> None:
    assert app.orchestrator.submit(
        intent("dev", ("update", doc(POOL, replicas=6))), agent="optimizer"
    ).status is (Status.APPLIED)
    clock.advance(timedelta(minutes=2))
    held = app.orchestrator.submit(intent("dev", ("update", doc(POOL, replicas=7))), agent="optimizer")
    assert held.status is Status.RATE_LIMITED and "next deploy allowed at" in held.reasons[0]
    clock.advance(timedelta(minutes=3))
    assert app.orchestrator.submit(
        intent("dev", ("update", doc(POOL, replicas=7))), agent="optimizer"
    ).status is (Status.APPLIED)


def test_a_fourth_agent_deploy_trips_the_breaker_until_a_human_resets_it(
    app: App, clock: FrozenClock
) -> None:
    for n, agent in enumerate(["builder", "optimizer", "security"]):
        decision = app.orchestrator.submit(intent("dev", ("update", doc(POOL, replicas=5 + n))), agent=agent)
        assert decision.status is Status.APPLIED
        clock.advance(timedelta(minutes=1))

    held = app.orchestrator.submit(intent("dev", ("update", doc(POOL, replicas=9))), agent="planner")
    assert held.status is Status.CIRCUIT_OPEN
    assert "apx breakers reset --tenant acme --env dev" in held.reasons[0]
    [breaker] = app.orchestrator.breakers()
    assert breaker.open and breaker.tripped_by == held.intent_id
    logged = (app.settings.home / "logs" / "apx.jsonl").read_text()
    assert '"event": "breaker.tripped"' in logged

    still = app.orchestrator.submit(intent("dev", ("update", doc(POOL, replicas=10))), agent="other")
    assert still.status is Status.CIRCUIT_OPEN
    assert app.orchestrator.submit(
        intent("prod", ("update", doc(POOL, replicas=10))), agent="other"
    ).status is (Status.PR_OPEN)

    app.orchestrator.reset_breaker(tenant="acme", environment="dev", by="alice")
    assert app.orchestrator.submit(
        intent("dev", ("update", doc(POOL, replicas=11))), agent="other"
    ).status is (Status.APPLIED)


def test_intents_proposed_at_once_are_decided_in_order_and_a_clash_is_a_conflict(app: App) -> None:
    first = app.orchestrator.submit(
        intent("dev", ("update", doc(POOL, replicas=10))), agent="autoscaler", wait=False
    )
    second = app.orchestrator.submit(
        intent("dev", ("update", doc(POOL, replicas=3))), agent="cost", wait=False
    )
    third = app.orchestrator.submit(
        intent("dev", ("update", doc(POOL, spot=True))), agent="finops", wait=False
    )
    assert first.status is second.status is third.status is Status.QUEUED

    decided = {d.intent_id: d for d in app.orchestrator.drain("dev")}
    assert decided[first.intent_id].status is Status.APPLIED
    assert decided[second.intent_id].status is Status.REJECTED
    assert (
        decided[second.intent_id]
        .reasons[0]
        .startswith("conflict: WorkerPool/checkout: spec.replicas was set to 10 by a change")
    )
    assert decided[third.intent_id].status is Status.APPLIED  # another field: merged on top
    assert branch_file(app, "dev", POOL)["spec"] | {} == doc(POOL, replicas=10, spot=True)["spec"]


def test_a_schema_violation_is_rejected_naming_the_field_and_writes_nothing(app: App) -> None:
    head = app.repo.head("dev")
    decision = app.orchestrator.submit(intent("dev", ("update", doc(POOL, replicas=25))), agent="builder")
    assert decision.status is Status.REJECTED
    assert any("WorkerPool/checkout" in r and "replicas" in r for r in decision.reasons)
    assert app.repo.head("dev") == head
    assert [c.name for c in decision.checks if not c.passed] == ["schema"]


def test_a_route_to_a_missing_product_is_rejected_by_references(app: App) -> None:
    route = doc("Route/payments-v1-refunds.yaml", path="/beta/refunds", product="refunds-api")
    route["metadata"]["name"] = "refunds-beta"
    decision = app.orchestrator.submit(intent("dev", ("create", route)), agent="builder")
    assert decision.status is Status.REJECTED
    assert any("refunds-api" in r for r in decision.reasons)


def test_an_unknown_environment_is_bad_input_and_nothing_is_recorded(app: App) -> None:
    with pytest.raises(UnknownEnvironment, match="'staging' is not configured"):
        app.orchestrator.submit(intent("staging", ("update", doc(POOL, replicas=6))), agent="builder")
    assert app.store.query(IntentQuery()) == []


def test_an_apply_that_fails_is_recorded_as_failed_with_the_reason(app: App) -> None:
    (app.settings.home / "keys" / "apx_signing").unlink()  # signing can no longer work
    head = app.repo.head("dev")
    decision = app.orchestrator.submit(intent("dev", ("update", doc(POOL, replicas=6))), agent="optimizer")
    assert decision.status is Status.FAILED
    assert "internal error" in decision.reasons[0]
    assert app.repo.head("dev") == head
    view = app.store.get(decision.intent_id)
    assert view is not None and view.status is Status.FAILED


def test_intents_list_filters_and_show_has_the_timeline(app: App) -> None:
    applied = app.orchestrator.submit(intent("dev", ("update", doc(POOL, replicas=6))), agent="optimizer")
    app.orchestrator.submit(intent("prod", ("update", doc(POOL, replicas=6))), agent="security")
    assert [v.record.id for v in app.store.query(IntentQuery(agent="optimizer"))] == [applied.intent_id]
    assert len(app.store.query(IntentQuery(target="WorkerPool/checkout"))) == 2
    view = app.store.get(applied.intent_id)
    assert view is not None
    assert [e.status for e in view.events] == [Status.RECEIVED, Status.QUEUED, Status.APPLIED]
