"""Canary with auto-rollback against the reference data plane: a change that hurts is undone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_pipeline import POOL, branch_file, doc, intent

from orchestrator.bootstrap import App, build
from orchestrator.canary import judge
from orchestrator.dataplane.runner import DataPlane
from orchestrator.decision import Status
from orchestrator.home import init_home
from orchestrator.settings import CanarySettings, RateLimitSettings, load_settings
from orchestrator.testing import FrozenClock


@pytest.fixture
def app(tmp_path: Path, clock: FrozenClock) -> Iterator[App]:
    home = tmp_path / "home"
    init_home(home)
    settings = load_settings(home)
    settings = settings.model_copy(
        update={
            "canary": CanarySettings(window="60s", min_samples=3),
            "admission": settings.admission.model_copy(update={"rate_limit": RateLimitSettings(deploys=10)}),
        }
    )
    application = build(home, settings=settings, clock=clock)
    yield application
    application.close()


def run_dataplane(app: App, clock: FrozenClock, seconds: int) -> None:
    plane = DataPlane(repo=app.repo, metrics=app.metrics, clock=clock, environments={"dev": "dev"})
    for _ in range(seconds // 10):
        plane.tick()
        clock.advance(10)


def test_a_change_that_raises_the_error_rate_is_rolled_back_automatically(
    app: App, clock: FrozenClock
) -> None:
    run_dataplane(app, clock, 60)  # a baseline at 4 replicas
    hurt = app.orchestrator.submit(
        intent("dev", ("update", doc(POOL, replicas=1, minReplicas=1))), agent="optimizer"
    )
    assert hurt.status is Status.APPLIED, hurt.reasons
    assert [w.intent_id for w in app.store.canaries(status="watching")] == [hurt.intent_id]
    run_dataplane(app, clock, 40)

    [(_watch, judgement)] = app.canary.check()
    assert judgement.verdict == "rolled_back", judgement.reason
    assert "points worse" in judgement.reason
    assert branch_file(app, "dev", POOL)["spec"]["replicas"] == 4
    original = app.store.get(hurt.intent_id)
    assert original is not None and original.status is Status.ROLLED_BACK
    undo = app.store.get(original.decision.rolled_back_by or "") if original.decision else None
    assert undo is not None and "canary: error rate" in undo.record.document["spec"]["rationale"]
    assert app.store.canaries(status="rolled_back")[0].intent_id == hurt.intent_id
    assert app.canary.check() == []  # settled once


def test_a_harmless_change_passes_once_its_window_is_over(app: App, clock: FrozenClock) -> None:
    run_dataplane(app, clock, 60)
    fine = app.orchestrator.submit(intent("dev", ("update", doc(POOL, replicas=6))), agent="optimizer")
    run_dataplane(app, clock, 30)
    assert app.canary.check() == []  # still watching: nothing wrong, window not over
    run_dataplane(app, clock, 40)
    [(_watch, judgement)] = app.canary.check()
    assert judgement.verdict == "passed"
    assert app.store.get(fine.intent_id).status is Status.APPLIED  # type: ignore[union-attr]


def test_the_rule() -> None:
    assert (
        judge(baseline=1.0, observed=6.5, samples=3, margin=5, min_samples=3, over=False).verdict
        == "rolled_back"
    )
    assert (
        judge(baseline=1.0, observed=5.9, samples=3, margin=5, min_samples=3, over=False).verdict
        == "watching"
    )
    assert (
        judge(baseline=1.0, observed=5.9, samples=3, margin=5, min_samples=3, over=True).verdict == "passed"
    )
    assert (
        judge(baseline=None, observed=None, samples=0, margin=5, min_samples=3, over=True).verdict
        == "no_data"
    )
    assert (
        judge(baseline=1.0, observed=50.0, samples=2, margin=5, min_samples=3, over=False).verdict
        == "watching"
    )
