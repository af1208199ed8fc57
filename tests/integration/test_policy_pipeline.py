"""Validators and policy deciding real intents: a real home, real regopy, real git."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.bootstrap import App, build
from orchestrator.decision import Status
from orchestrator.home import init_home
from orchestrator.intent import Intent
from orchestrator.seed import seed_files
from orchestrator.settings import load_settings
from orchestrator.testing import FrozenClock

SEED = {path: yaml.safe_load(text) for path, text in seed_files().items()}
POOL = "WorkerPool/checkout.yaml"
SHIPPED = Path(__file__).resolve().parents[2] / "constraints" / "bundle"


def doc(file: str, /, **spec: Any) -> dict[str, Any]:
    document = copy.deepcopy(SEED[file])
    document["spec"].update(spec)
    return document


def intent(environment: str, *changes: tuple[str, dict[str, Any]], rationale: str = "test") -> Intent:
    return Intent.of(*changes, tenant="acme", environment=environment, rationale=rationale)


def make_app(home: Path, clock: FrozenClock, **overrides: Any) -> App:
    settings = load_settings(home)
    if overrides:
        settings = settings.model_copy(update=overrides)
    return build(home, settings=settings, clock=clock)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    init_home(path)
    return path


@pytest.fixture
def app(home: Path, clock: FrozenClock) -> Iterator[App]:
    application = make_app(home, clock)
    yield application
    application.store.close()


def new_route(n: int) -> dict[str, Any]:
    route = doc("Route/payments-v1-refunds.yaml", path=f"/v9/generated/{n}")
    route["metadata"]["name"] = f"generated-{n}"
    return route


def test_every_decision_records_the_policy_version_in_force(app: App) -> None:
    decision = app.orchestrator.submit(intent("dev", ("update", doc(POOL, replicas=6))), agent="optimizer")
    assert decision.status is Status.APPLIED
    assert decision.policy_version == app.policy.bundle.label
    assert decision.policy_version.startswith("apx-default@1.0.0+")
    assert decision.blast_radius is not None and decision.blast_radius["replica_delta"] == 2


def test_ten_thousand_replicas_is_denied_by_policy(app: App) -> None:
    pool = doc(POOL, replicas=10_000, maxReplicas=20_000)
    decision = app.orchestrator.submit(intent("dev", ("update", pool)), agent="optimizer")
    assert decision.status is Status.REJECTED
    assert any("max-replicas" in r for r in decision.reasons)
    [policy] = [c for c in decision.checks if c.name == "policy"]
    assert not policy.passed


def test_world_open_ingress_is_denied(app: App) -> None:
    edge = doc("NetworkPolicy/edge.yaml", ingress=[{"cidr": "0.0.0.0/0", "ports": [443]}])
    decision = app.orchestrator.submit(intent("dev", ("update", edge)), agent="security")
    assert decision.status is Status.REJECTED
    assert any("no-world-ingress" in r for r in decision.reasons)


def test_a_network_allowlist_change_waits_for_a_human_even_in_dev(app: App) -> None:
    edge = doc("NetworkPolicy/edge.yaml", ingress=[{"cidr": "10.0.0.0/8", "ports": [443]}])
    dev_before = app.repo.head("dev")
    decision = app.orchestrator.submit(intent("dev", ("update", edge)), agent="security")
    assert decision.status is Status.PR_OPEN
    assert decision.pr is not None and decision.pr.base == "dev"
    assert any("network-change-needs-approval" in r for r in decision.reasons)
    assert app.repo.head("dev") == dev_before


def test_a_quota_raise_over_twice_is_denied_and_within_twice_passes(app: App, clock: FrozenClock) -> None:
    product = doc("Product/payments-api.yaml")
    plans = product["spec"]["plans"]
    too_much = copy.deepcopy(product)
    too_much["spec"]["plans"] = [dict(p, quota=p["quota"] * 3) if p["name"] == "pro" else p for p in plans]
    denied = app.orchestrator.submit(intent("dev", ("update", too_much)), agent="optimizer")
    assert denied.status is Status.REJECTED and any("max-quota-factor" in r for r in denied.reasons)
    fine = copy.deepcopy(product)
    fine["spec"]["plans"] = [dict(p, quota=p["quota"] * 2) if p["name"] == "pro" else p for p in plans]
    assert (
        app.orchestrator.submit(intent("dev", ("update", fine)), agent="optimizer").status is Status.APPLIED
    )


def test_sixty_one_route_intents_do_not_get_around_the_route_limit(home: Path, clock: FrozenClock) -> None:
    rules = load_settings(home).admission.model_copy(
        update={
            "rate_limit": load_settings(home).admission.rate_limit.model_copy(update={"deploys": 1000}),
            "breaker": load_settings(home).admission.breaker.model_copy(update={"max_deploys": 1000}),
        }
    )
    app = make_app(home, clock, admission=rules)
    decisions = []
    for n in range(51):
        decisions.append(app.orchestrator.submit(intent("dev", ("create", new_route(n))), agent="builder"))
        clock.advance(timedelta(seconds=30))
    assert [d.status for d in decisions[:50]] == [Status.APPLIED] * 50
    last = decisions[50]
    assert last.status is Status.REJECTED
    assert any("max-routes-per-hour" in r for r in last.reasons)
    assert last.blast_radius is not None
    assert set(last.blast_radius["cumulative"]["intents"]) == {d.intent_id for d in decisions[:50]}
    clock.advance(timedelta(hours=1))
    assert app.orchestrator.submit(intent("dev", ("create", new_route(99))), agent="builder").status is (
        Status.APPLIED
    )


def test_a_secret_in_a_change_is_rejected_without_echoing_it(app: App) -> None:
    secret = "AKIA" + "Q3EGZ7TXLJ5M2WUH"
    product = doc("Product/payments-api.yaml", residency=secret)
    decision = app.orchestrator.submit(intent("dev", ("update", product)), agent="builder")
    assert decision.status is Status.REJECTED
    assert any(c.name == "secrets" and not c.passed for c in decision.checks)
    dumped = decision.model_dump_json()
    assert secret not in dumped and secret[4:14] not in dumped
    assert "Product/payments-api" in dumped
    stored = app.store.get(decision.intent_id)
    assert (
        stored is not None and stored.decision is not None and secret not in stored.decision.model_dump_json()
    )
    assert secret not in json.dumps(stored.record.document)  # the intent log keeps it redacted
    assert stored.record.document["spec"]["changes"][0]["resource"]["spec"]["residency"] == "<redacted>"
    assert secret not in (app.settings.home / "logs" / "apx.jsonl").read_text()


def test_an_agent_undoing_another_agents_change_is_flagged_and_opens_the_breaker(
    app: App, clock: FrozenClock
) -> None:
    assert app.orchestrator.submit(
        intent("dev", ("update", doc(POOL, replicas=8))), agent="optimizer"
    ).status is (Status.APPLIED)
    clock.advance(timedelta(minutes=1))
    back = app.orchestrator.submit(intent("dev", ("update", doc(POOL, replicas=4))), agent="builder")
    assert back.status is Status.APPLIED
    assert any("optimizer and builder are fighting" in w for w in back.warnings)
    assert any("oscillation" in r and "optimizer and builder" in r for r in back.reasons)
    [breaker] = app.orchestrator.breakers()
    assert breaker.open and breaker.tripped_by == back.intent_id
    clock.advance(timedelta(minutes=1))
    again = app.orchestrator.submit(intent("dev", ("update", doc(POOL, replicas=9))), agent="security")
    assert again.status is Status.CIRCUIT_OPEN


def _bundle_copy(tmp_path: Path, *, data: dict[str, Any] | None = None, version: str | None = None) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(SHIPPED, target)
    if data is not None:
        current = json.loads((target / "data.json").read_text())
        current["apx"].update(data)
        (target / "data.json").write_text(json.dumps(current))
    if version is not None:
        manifest = json.loads((target / ".manifest").read_text())
        manifest["metadata"]["version"] = version
        (target / ".manifest").write_text(json.dumps(manifest))
    return target


def test_a_rule_in_warn_mode_shows_its_finding_without_blocking(
    home: Path, clock: FrozenClock, tmp_path: Path
) -> None:
    bundle = _bundle_copy(tmp_path, data={"enforcement": {"max-replicas": "warn"}}, version="1.1.0")
    app = make_app(home, clock, policy=load_settings(home).policy.model_copy(update={"bundle": bundle}))
    pool = doc(POOL, replicas=150, maxReplicas=200)
    decision = app.orchestrator.submit(intent("dev", ("update", pool)), agent="optimizer")
    assert decision.status is Status.APPLIED
    assert any("max-replicas" in w for w in decision.warnings)
    assert decision.policy_version is not None and decision.policy_version.startswith("apx-default@1.1.0+")
    history = app.store.policy_history()
    assert [h.version for h in history] == ["1.0.0", "1.1.0"] or [h.version for h in history] == ["1.1.0"]


def test_a_waiver_lets_a_rule_pass_until_it_expires_and_is_recorded(
    home: Path, clock: FrozenClock, tmp_path: Path
) -> None:
    waiver = {
        "rule": "max-replicas",
        "tenant": "acme",
        "reason": "launch day",
        "ticket": "OPS-42",
        "expires": (clock.now() + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
    }
    bundle = _bundle_copy(tmp_path, data={"waivers": [waiver]})
    app = make_app(home, clock, policy=load_settings(home).policy.model_copy(update={"bundle": bundle}))
    pool = doc(POOL, replicas=150, maxReplicas=200)
    decision = app.orchestrator.submit(intent("dev", ("update", pool)), agent="optimizer")
    assert decision.status is Status.APPLIED
    assert decision.waivers and decision.waivers[0]["ticket"] == "OPS-42"
    clock.advance(timedelta(hours=2))
    later = app.orchestrator.submit(
        intent("dev", ("update", doc(POOL, replicas=160, maxReplicas=200))), agent="planner"
    )
    assert later.status is Status.REJECTED and not later.waivers


def test_a_bundle_that_does_not_compile_is_refused_and_the_one_in_force_stays(
    home: Path, clock: FrozenClock, tmp_path: Path
) -> None:
    first = make_app(home, clock)  # brings the shipped bundle into force
    in_force = first.policy.bundle.label
    first.store.close()
    broken = _bundle_copy(tmp_path)
    (broken / "apx" / "rules" / "replicas.rego").write_text("package apx.rules.replicas\n\nviolation[v] {\n")
    app = make_app(home, clock, policy=load_settings(home).policy.model_copy(update={"bundle": broken}))
    assert app.policy.bundle.label == in_force
    assert app.notices and "replicas.rego" in app.notices[0]
    pool = doc(POOL, replicas=10_000, maxReplicas=20_000)
    assert (
        app.orchestrator.submit(intent("dev", ("update", pool)), agent="optimizer").status is Status.REJECTED
    )


def test_replay_under_a_new_policy_shows_what_would_differ(
    home: Path, clock: FrozenClock, tmp_path: Path
) -> None:
    app = make_app(home, clock)
    pool = doc(POOL, replicas=150, maxReplicas=200)
    recorded = app.orchestrator.submit(intent("dev", ("update", pool)), agent="optimizer")
    assert recorded.status is Status.REJECTED
    head = app.repo.head("dev")
    relaxed = _bundle_copy(
        tmp_path,
        data={
            "limits": {
                "max_routes_per_intent": 50,
                "max_routes_per_window": 50,
                "max_quota_factor": 2,
                "max_rate_limit_factor": 2,
                "max_replicas": 500,
            }
        },
    )
    replayer = build(home, clock=clock, policy_bundle=relaxed)
    was, now = replayer.orchestrator.replay(recorded.intent_id)
    assert was.status is Status.REJECTED and now.status is Status.APPLIED
    assert now.commit is None and app.repo.head("dev") == head  # nothing applied


def test_an_old_api_version_intent_is_migrated_warned_about_and_dedupes_with_the_current_one(
    app: App,
) -> None:
    old = {
        "apiVersion": "apx/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": "checkout", "tenant": "acme"},
        "spec": {"instances": 6, "autoscale": {"min": 2, "max": 20}, "gpu": False, "spot": False},
    }
    applied = app.orchestrator.submit(intent("dev", ("update", old)), agent="optimizer")
    assert applied.status is Status.APPLIED
    assert any("v1alpha1" in w and "deprecated" in w for w in applied.warnings)
    written = yaml.safe_load(app.repo.read(app.repo.head("dev") or "").files[POOL])
    assert written["apiVersion"] == "apx/v1" and written["spec"]["replicas"] == 6
    same = app.orchestrator.submit(intent("dev", ("update", doc(POOL, replicas=6))), agent="builder")
    assert same.status is Status.DUPLICATE and same.duplicate_of == applied.intent_id
