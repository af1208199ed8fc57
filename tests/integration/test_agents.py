"""The agents against real parts: a home made by ``init_home``, the real pipeline, the data plane.

Time is a :class:`FrozenClock` that the test advances between data-plane ticks,
so a "five-minute" observation window is a minute of frozen time and nothing
really waits. Every agent acts through :func:`agents.runner.run_agent`, as the
scheduler and ``apx agents run`` do.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from apscheduler.schedulers.background import BackgroundScheduler

from agents.base import Observation, Proposal
from agents.client import InProcessClient
from agents.runner import add_agent_jobs, run_agent, scheduled_run
from agents.settings import AgentsSettings, OptimizerSettings
from orchestrator.bootstrap import App, build
from orchestrator.dataplane.runner import DataPlane
from orchestrator.decision import Status
from orchestrator.errors import BadInput
from orchestrator.home import init_home
from orchestrator.intent import Intent
from orchestrator.records import IntentQuery
from orchestrator.settings import load_settings
from orchestrator.testing import FrozenClock

REQUEST = "expose /v2/refunds on payments-api with auth, 5% canary"
#: A one-minute window at a 10 s tick: the Optimizer needs 6 samples. Its band is set so
#: the seeded pool (about 0.39 utilisation at midday) is "busy": the Optimizer has work.
AGENTS = AgentsSettings(
    optimizer=OptimizerSettings(
        window="60s", sample_interval="10s", scale_up_above=0.35, scale_down_below=0.1
    )
)


@pytest.fixture
def app(tmp_path: Path, clock: FrozenClock) -> Iterator[App]:
    home = tmp_path / "home"
    init_home(home)
    application = build(home, settings=load_settings(home), clock=clock)
    yield application
    application.close()


def tick(app: App, clock: FrozenClock, ticks: int) -> None:
    """The data plane follows dev and publishes a tick every 10 s."""
    plane = DataPlane(repo=app.repo, metrics=app.metrics, clock=clock, environments={"dev": "dev"})
    for _ in range(ticks):
        plane.tick()
        clock.advance(10)


def dev_file(app: App, path: str, revision: str | None = None) -> dict[str, Any]:
    snapshot = app.repo.read(revision or app.repo.head("dev") or "")
    return dict(yaml.safe_load(snapshot.files[path]))


def git(app: App, *args: str) -> str:
    repo = app.settings.repo_path
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def test_the_optimizer_waits_for_a_full_window_of_samples_then_its_resize_is_applied(
    app: App, clock: FrozenClock
) -> None:
    tick(app, clock, 5)
    early = run_agent(app, "optimizer", environment="dev", settings=AGENTS)
    assert early.status == "nothing_to_propose" and early.exit_code == 0
    assert "only 5 of the 6 samples a 1m window needs" in (early.reason or "")
    assert app.store.query(IntentQuery()) == []  # nothing was submitted

    tick(app, clock, 2)
    done = run_agent(app, "optimizer", environment="dev", settings=AGENTS)

    assert done.decision is not None and done.decision.status is Status.APPLIED, done.decision
    assert dev_file(app, "WorkerPool/checkout.yaml")["spec"]["replicas"] == 5
    view = app.store.get(done.decision.intent_id)
    assert view is not None and view.record.agent == "optimizer"
    assert view.record.base_revision == done.revision  # proposed against what it observed
    assert view.record.document["spec"]["rationale"].startswith("WorkerPool/checkout replicas 4 → 5")


def test_the_builders_route_is_applied_and_served(app: App, clock: FrozenClock) -> None:
    done = run_agent(app, "builder", environment="dev", request=REQUEST)

    assert done.decision is not None and done.decision.status is Status.APPLIED, done.decision
    route = dev_file(app, "Route/payments-v2-refunds.yaml")
    assert route["spec"] == {
        "host": "api.acme.example",
        "path": "/v2/refunds",
        "product": "payments-api",
        "auth": "required",
        "canary": {"weight": 5},
    }
    plane = DataPlane(repo=app.repo, metrics=app.metrics, clock=clock, environments={"dev": "dev"})
    plane.tick()
    served = plane.runtimes["dev"].serve("api.acme.example", "/v2/refunds")
    assert served is not None and served.name == "payments-v2-refunds" and served.canary_weight == 5


def test_a_request_the_builder_cannot_read_submits_nothing(app: App) -> None:
    done = run_agent(app, "builder", environment="dev", request="make refunds better")
    assert done.status == "nothing_to_propose" and "cannot read the request" in (done.reason or "")
    assert app.store.query(IntentQuery()) == []


def test_an_optimizer_reacting_to_a_builder_change_carries_its_intent_as_cause(
    app: App, clock: FrozenClock
) -> None:
    tick(app, clock, 7)  # a full window at the seed...
    built = run_agent(app, "builder", environment="dev", request=REQUEST)
    assert built.decision is not None and built.decision.status is Status.APPLIED

    tick(app, clock, 3)
    waiting = run_agent(app, "optimizer", environment="dev", settings=AGENTS)
    # ...does not count: the window must be of the configuration it would change.
    assert waiting.status == "nothing_to_propose" and "only 3 of the 6" in (waiting.reason or "")

    tick(app, clock, 4)
    reacted = run_agent(app, "optimizer", environment="dev", settings=AGENTS)

    assert reacted.decision is not None and reacted.decision.status is Status.APPLIED, reacted.decision
    assert reacted.caused_by == built.decision.intent_id
    [child] = app.store.query(IntentQuery(caused_by=built.decision.intent_id))
    assert child.record.id == reacted.decision.intent_id
    assert child.record.document["metadata"]["causedBy"] == built.decision.intent_id


def test_the_security_agents_batched_fix_with_a_network_change_waits_for_a_human(app: App) -> None:
    # A human edited dev by hand (outside apx): world-open ingress, a route without
    # auth, telemetry that keeps PII. Nothing in apx's pipeline would have let these in.
    head = app.repo.head("dev") or ""
    edge = dev_file(app, "NetworkPolicy/edge.yaml")
    edge["spec"]["ingress"].append({"cidr": "0.0.0.0/0", "ports": [443]})
    route = dev_file(app, "Route/payments-v1-refunds.yaml")
    route["spec"]["auth"] = "none"
    bundle = dev_file(app, "PolicyBundle/default.yaml")
    bundle["spec"]["observability"]["piiSafe"] = False
    edited = {
        "NetworkPolicy/edge.yaml": edge,
        "Route/payments-v1-refunds.yaml": route,
        "PolicyBundle/default.yaml": bundle,
    }
    by_hand = app.repo.commit(
        branch="dev",
        parent=head,
        files={path: yaml.safe_dump(doc, sort_keys=False) for path, doc in edited.items()},
        message="hand edit\n",
    )

    done = run_agent(app, "security", environment="dev")

    decision = done.decision
    assert decision is not None
    # One intent for all three findings; the network part needs approval even in dev.
    view = app.store.get(decision.intent_id)
    assert view is not None
    assert sorted(view.record.targets) == [
        "NetworkPolicy/edge",
        "PolicyBundle/default",
        "Route/payments-v1-refunds",
    ]
    assert decision.status is Status.PR_OPEN, decision
    assert any("network allowlist changes need human approval" in r for r in decision.reasons)
    assert done.exit_code == 0
    assert app.repo.head("dev") == by_hand  # dev waits for the review
    assert decision.pr is not None
    fixed_edge = dev_file(app, "NetworkPolicy/edge.yaml", decision.pr.head)
    assert {"cidr": "0.0.0.0/0", "ports": [443]} not in fixed_edge["spec"]["ingress"]
    assert dev_file(app, "Route/payments-v1-refunds.yaml", decision.pr.head)["spec"]["auth"] == "required"
    pii = dev_file(app, "PolicyBundle/default.yaml", decision.pr.head)["spec"]["observability"]
    assert pii["piiSafe"] is True


def test_agents_never_write_the_repo_themselves(app: App, clock: FrozenClock) -> None:
    before = set(git(app, "rev-list", "--all").split())

    run_agent(app, "builder", environment="dev", request=REQUEST)
    tick(app, clock, 7)
    run_agent(app, "optimizer", environment="dev", settings=AGENTS)
    run_agent(app, "security", environment="dev")

    new = set(git(app, "rev-list", "--all").split()) - before
    assert new, "the agents' intents should have landed"
    for commit in new:
        trailers = git(app, "log", "-1", "--format=%(trailers:key=Intent-Id,valueonly)", commit).strip()
        assert trailers, f"commit {commit} has no Intent-Id trailer"
        view = app.store.get(trailers)
        assert view is not None and view.record.agent in ("builder", "optimizer", "security")


class _ForeignPlanner:
    """A planner that answers with another tenant's resource (as a confused or hostile LLM might)."""

    name = "foreign"

    def plan(self, observation: Observation) -> Proposal | None:
        route = dict(observation.resources["Route/payments-v1-refunds"])
        route["metadata"] = {"name": "payments-v1-refunds", "tenant": "globex"}
        return Proposal(summary="take over", changes=[{"action": "update", "resource": route}])


def test_a_proposal_that_is_not_a_valid_intent_is_refused_before_submission(app: App) -> None:
    done = run_agent(app, "security", environment="dev", planner=_ForeignPlanner())

    assert done.status == "invalid_proposal" and done.exit_code == 1
    assert "tenant 'globex'" in (done.reason or "")
    assert app.store.query(IntentQuery()) == []


def test_the_client_is_scoped_to_its_tenant(app: App) -> None:
    globex = InProcessClient(app, tenant="globex")
    _revision, resources = globex.environment("dev")
    assert resources == {}  # acme's resources are not globex's to see
    acme_change = Intent.of(
        ("update", dev_file(app, "WorkerPool/checkout.yaml")), tenant="acme", environment="dev"
    )
    with pytest.raises(BadInput, match="acts for tenant 'globex'"):
        globex.submit(acme_change, agent="optimizer")


def test_the_scheduler_runs_the_optimizer_and_security_agents_but_not_the_builder(app: App) -> None:
    scheduler = BackgroundScheduler()
    assert add_agent_jobs(scheduler, app) == ["agent-optimizer", "agent-security"]
    intervals = {job.id: job.trigger.interval.total_seconds() for job in scheduler.get_jobs()}
    assert intervals == {"agent-optimizer": 300.0, "agent-security": 3600.0}

    [run] = scheduled_run(app, "security")  # what the job does, for each configured tenant
    assert run.tenant == "acme" and run.status == "nothing_to_propose"
