"""``apx demo``: the control plane end to end on the embedded default, in seconds.

It makes a fresh home (SQLite, a local git repo), starts the reference data
plane on a simulated clock, and plays a story through the real pipeline:
- an applied dev change, a duplicate, a rate-limited retry;
- rejections by schema, by reference and by Rego policy (0.0.0.0/0);
- two concurrent proposals sequenced into one apply and one conflict;
- the Builder agent turning a request into a Route;
- a prod PR;
- the Optimizer agent reacting to the others' changes (``causedBy``) with a
  fourth agent deploy in 15 minutes, which trips the circuit breaker;
- a human approving the PR, which merges with a signed merge commit;
- a prod change that raises the error rate, rolled back by the canary through
  a rollback PR a second human approves.

Then it checks the commit signatures and verifies the audit log, and prints a
summary table. Still to come (issue 6): the Security agent's scan in the story,
and an A→B→A loop between two agents' planners.
"""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from agents.runner import run_agent
from orchestrator.bootstrap import build
from orchestrator.dataplane.runner import DataPlane
from orchestrator.decision import Decision, Status
from orchestrator.home import init_home
from orchestrator.intent import Intent
from orchestrator.seed import seed_files
from orchestrator.settings import load_settings
from orchestrator.testing import FrozenClock


def _intent(environment: str, rationale: str, *changes: tuple[str, dict[str, Any]]) -> Intent:
    return Intent.of(*changes, tenant="acme", environment=environment, rationale=rationale)


#: Simulated seconds between two data-plane ticks.
TICK = 10


def run_demo(home: Path, *, echo: Callable[[str], None]) -> int:
    """Run the story; return 0 when every step ended as the story expects.

    Time is simulated (a clock apx is handed, moved by the story): the canary's
    minute of watching and the data plane's ticks take no wall-clock time.
    """
    init_home(home, force=True)
    settings = load_settings(home)
    settings = settings.model_copy(
        update={"canary": settings.canary.model_copy(update={"window": timedelta(seconds=60)})}
    )
    clock = FrozenClock(datetime.now(UTC))
    app = build(home, settings=settings, clock=clock)
    plane = DataPlane(
        repo=app.repo, metrics=app.metrics, clock=clock, environments={"dev": "dev", "prod": "prod"}
    )

    def elapse(seconds: int) -> None:
        for _ in range(seconds // TICK):
            plane.tick()
            clock.advance(TICK)

    elapse(60)  # the data plane serves both environments: a baseline for canaries
    # The Optimizer samples what the data plane publishes each tick and judges a minute of it.
    demo_agents = settings.agents.model_copy(
        update={
            "optimizer": settings.agents.optimizer.model_copy(
                update={"window": timedelta(seconds=60), "sample_interval": timedelta(seconds=TICK)}
            )
        }
    )
    seed: dict[str, dict[str, Any]] = {path: yaml.safe_load(text) for path, text in seed_files().items()}

    def edited(path: str, **spec: Any) -> dict[str, Any]:
        doc: dict[str, Any] = copy.deepcopy(seed[path])
        doc["spec"].update(spec)
        return doc

    pool = "WorkerPool/checkout.yaml"
    refunds_route = copy.deepcopy(seed["Route/payments-v1-refunds.yaml"])
    refunds_route["metadata"]["name"] = "payments-v2-refunds"
    refunds_route["spec"].update(path="/v2/refunds", canary={"weight": 5})
    orphan = copy.deepcopy(refunds_route)
    orphan["metadata"]["name"] = "refunds-beta"
    orphan["spec"].update(path="/beta/refunds", product="refunds-api")
    edge = copy.deepcopy(seed["NetworkPolicy/edge.yaml"])
    edge["spec"]["ingress"] = edge["spec"]["ingress"][:1]
    world = copy.deepcopy(seed["NetworkPolicy/edge.yaml"])
    world["spec"]["ingress"] = [*world["spec"]["ingress"], {"cidr": "0.0.0.0/0", "ports": [22]}]

    scale_up = _intent("dev", "p95 over SLO for 5m on checkout", ("update", edited(pool, replicas=6)))
    orchestrator = app.orchestrator
    results: list[tuple[str, str, Status, Decision]] = []

    def step(title: str, agent: str, expected: Status, intent: Intent) -> None:
        results.append((title, agent, expected, orchestrator.submit(intent, agent=agent)))

    step("optimizer scales checkout 4→6 in dev", "optimizer", Status.APPLIED, scale_up)
    step("optimizer sends the same proposal again", "optimizer", Status.DUPLICATE, scale_up)
    step(
        "optimizer wants 8 replicas right after",
        "optimizer",
        Status.RATE_LIMITED,
        _intent("dev", "still over SLO", ("update", edited(pool, replicas=8))),
    )
    step(
        "builder emits replicas above maxReplicas",
        "builder",
        Status.REJECTED,
        _intent("dev", "scale for launch", ("update", edited(pool, replicas=500))),
    )
    step(
        "security opens edge to 0.0.0.0/0 (denied by policy)",
        "security",
        Status.REJECTED,
        _intent("dev", "debug access", ("update", world)),
    )
    step(
        "builder routes to a product that does not exist",
        "builder",
        Status.REJECTED,
        _intent("dev", "beta refunds", ("create", orphan)),
    )

    # Two agents propose at once from the same head: both are queued, then
    # decided in arrival order; the second no longer fits and is a conflict.
    first = orchestrator.submit(
        _intent("dev", "queue depth rising", ("update", edited(pool, replicas=10))),
        agent="autoscaler",
        wait=False,
    )
    second = orchestrator.submit(
        _intent("dev", "night hours", ("update", edited(pool, replicas=3))), agent="cost", wait=False
    )
    orchestrator.drain("dev")
    for title, agent, expected, queued in (
        ("autoscaler sets 10 replicas (queued first)", "autoscaler", Status.APPLIED, first),
        ("cost agent sets 3 replicas at the same moment", "cost", Status.REJECTED, second),
    ):
        view = app.store.get(queued.intent_id)
        assert view is not None and view.decision is not None
        results.append((title, agent, expected, view.decision))

    built = run_agent(
        app, "builder", environment="dev", request="expose /v2/refunds on payments-api with auth, 5% canary"
    )
    if built.decision is not None:
        view = app.store.get(built.decision.intent_id)
        assert view is not None and view.decision is not None
        results.append(
            ('Builder agent: "expose /v2/refunds … 5% canary"', "builder", Status.APPLIED, view.decision)
        )
    else:
        echo(f"✗ Builder agent proposed nothing: {built.reason}")
    step(
        "security drops 192.168.0.0/16 from edge in prod",
        "security",
        Status.PR_OPEN,
        _intent("prod", "unused private range", ("update", edge)),
    )
    # The Optimizer watches a minute of metrics at the new revision and reacts to what the
    # other agents did (causedBy): five minutes on (its rate limit has passed) it is still a
    # fourth agent deploy within 15 minutes, so the breaker trips.
    elapse(310)
    reacted = run_agent(app, "optimizer", environment="dev", settings=demo_agents)
    if reacted.decision is None:
        echo(f"✗ the Optimizer agent proposed nothing: {reacted.reason}")
        return 1
    results.append(
        (
            "Optimizer agent reacts (causedBy): a 4th agent deploy in 15m",
            "optimizer",
            Status.CIRCUIT_OPEN,
            reacted.decision,
        )
    )

    # A human reviews the prod PR: approved, re-validated, merged with a signed merge commit.
    app.reviews.approve(results[-2][3].intent_id, by="alice", comment="matches the network plan")
    merged_view = app.store.get(results[-2][3].intent_id)
    assert merged_view is not None and merged_view.decision is not None
    results.append(("alice approves security's prod PR", "alice", Status.MERGED, merged_view.decision))

    # A prod change that hurts: approved, merged, then the canary sees errors and rolls it back.
    elapse(310)  # five simulated minutes: the rate limit passes, the data plane keeps serving
    hurt = orchestrator.submit(
        _intent(
            "prod",
            "cut checkout cost overnight",
            ("update", edited(pool, replicas=1, minReplicas=1)),
        ),
        agent="optimizer",
    )
    if hurt.pr is not None:
        app.reviews.approve(hurt.pr.id, by="alice", comment="overnight only")
    elapse(60)
    settled = app.canary.check()
    rollback_pr = app.store.pull_requests(status="open", environment="prod")
    if rollback_pr:
        app.reviews.approve(rollback_pr[0].id, by="bob", comment="canary says so")
    after = app.store.get(hurt.intent_id)
    assert after is not None and after.decision is not None
    results.append(
        (
            "optimizer's prod change merged, then auto-rolled back by the canary",
            "apx-canary",
            Status.ROLLED_BACK,
            after.decision,
        )
    )
    canary = [judgement.reason for watch, judgement in settled if watch.intent_id == hurt.intent_id]

    ok = True
    for title, agent, expected, decision in results:
        good = decision.status is expected
        ok &= good
        echo(f"{'✓' if good else '✗'} {title}")
        echo(
            f"    {agent}: {decision.status.value}"
            + (f" — {decision.reasons[0]}" if decision.reasons else "")
        )
        if decision.commit and decision.status is Status.APPLIED:
            echo(
                f"    signed commit {decision.commit[:12]} on {app.settings.branch_of(decision.environment)}"
            )
        if decision.pr and decision.status is Status.PR_OPEN:
            echo(f"    PR {decision.pr.id}: branch {decision.pr.branch}; prod untouched")

    if canary:
        echo(f"    canary on the optimizer's prod change: {canary[0]}")
    verified = subprocess.run(
        ["git", "-C", str(app.settings.repo_path), "verify-commit", "dev"], capture_output=True, text=True
    )
    echo(
        f"{'✓' if verified.returncode == 0 else '✗'} git verify-commit dev: "
        f"{'good signature' if verified.returncode == 0 else verified.stderr.strip()}"
    )
    ok &= verified.returncode == 0
    app.audit.checkpoint(force=True)
    report = app.audit.verify()
    echo(
        f"{'✓' if report.ok else '✗'} apx audit verify: "
        + (
            f"{report.size} entries, {report.checkpoints} signed checkpoints, root {report.root.hex()[:16]}…"
            if report.finding is None
            else report.finding.message
        )
    )
    ok &= report.ok
    _summary(results)
    echo("")
    echo(f"Home: {home}  ·  try: apx intents list --home {home}  ·  apx audit verify --home {home}")
    return 0 if ok else 1


def _summary(results: list[tuple[str, str, Status, Decision]]) -> None:
    """The closing table: every step, who acted, what apx decided, and whether that was the plan."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="apx demo: what happened", show_lines=False)
    for column in ("", "step", "actor", "expected", "decided"):
        table.add_column(column)
    for title, actor, expected, decision in results:
        good = decision.status is expected
        table.add_row(
            "[green]✓[/]" if good else "[red]✗[/]", title, actor, expected.value, decision.status.value
        )
    Console(width=140).print(table)
