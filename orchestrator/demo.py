"""``apx demo``: the pipeline end to end on the embedded default, in seconds.

It makes a fresh home (SQLite, a local git repo), then plays a short story
of agent intents against the seeded tenant and prints what happened to each:
an applied dev change, a duplicate, a rate-limited retry, a rejection by
schema, by reference and by Rego policy, a prod PR, two concurrent proposals sequenced into
one apply and one conflict, and the circuit breaker tripping; then it checks
the commit signatures and verifies the audit log. Every intent is
a real submission through :class:`~orchestrator.pipeline.Orchestrator`.
"""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from orchestrator.bootstrap import build
from orchestrator.decision import Decision, Status
from orchestrator.home import init_home
from orchestrator.intent import Intent
from orchestrator.seed import seed_files


def _intent(environment: str, rationale: str, *changes: tuple[str, dict[str, Any]]) -> Intent:
    return Intent.of(*changes, tenant="acme", environment=environment, rationale=rationale)


def run_demo(home: Path, *, echo: Callable[[str], None]) -> int:
    """Run the story; return 0 when every step ended as the story expects."""
    init_home(home, force=True)
    app = build(home)
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

    step(
        "builder exposes /v2/refunds with a 5% canary",
        "builder",
        Status.APPLIED,
        _intent("dev", "expose v2 refunds", ("create", refunds_route)),
    )
    step(
        "security drops 192.168.0.0/16 from edge in prod",
        "security",
        Status.PR_OPEN,
        _intent("prod", "unused private range", ("update", edge)),
    )
    step(
        "a fourth agent deploy to acme/dev within 15m",
        "security",
        Status.CIRCUIT_OPEN,
        _intent(
            "dev",
            "healthz leaks build info",
            ("update", edited("Route/payments-healthz.yaml", auth="required")),
        ),
    )

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
        if decision.pr:
            echo(f"    PR {decision.pr.id}: branch {decision.pr.branch}; prod untouched")

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
    echo("")
    echo(f"Home: {home}  ·  try: apx intents list --home {home}  ·  apx audit verify --home {home}")
    return 0 if ok else 1
