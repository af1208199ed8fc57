"""``apx demo``: the control plane end to end on the embedded default, in seconds.

It makes a fresh home (SQLite, a local git repo), starts the reference data
plane on a simulated clock, and plays a story through the real pipeline, the
real agents and a real review, in four acts:

1. **Admission and validation.** An applied dev change, a duplicate, a
   rate-limited retry; rejections by schema, by reference and by Rego policy
   (0.0.0.0/0); two concurrent proposals sequenced into one apply and one conflict.
2. **A Builder↔Optimizer loop.** The Builder exposes a route; the Optimizer,
   watching the data plane, resizes the pool that serves it (``causedBy`` the
   route); a human asks the Builder to size the pool back for a launch (``causedBy``
   the Optimizer: A→B→A on ``spec.replicas``, which trips the breaker); the
   Optimizer's next proposal is held as ``circuit_open``.
3. **The Security agent and a prod review.** Someone hot-fixes prod by hand,
   outside apx (a route without auth, full trace sampling, SSH open to the
   world). The Security agent's scan batches every fix into one intent, a prod PR
   waits for review, and a human approves it: re-validated, merged, signed.
4. **A canary rollback.** A prod change that raises the error rate is merged; the
   canary sees it and rolls it back through a rollback PR a second human approves.

Then it checks the commit signatures and verifies the audit log, and prints a
summary table. Time is simulated (a clock apx is handed, moved by the story):
the data plane's ticks, the Optimizer's windows and the canary's minute take no
wall-clock time.
"""

from __future__ import annotations

import copy
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from agents.graph import AgentRun
    from orchestrator.bootstrap import App

#: Simulated seconds between two data-plane ticks.
TICK = 10
#: What a human asks the Builder for in act 2 (the issue's example request).
REQUEST = "expose /v2/refunds on payments-api with auth, 5% canary"
#: Steps in the story (the progress bar's total).
STEPS = 16


def _intent(environment: str, rationale: str, *changes: tuple[str, dict[str, Any]]) -> Intent:
    return Intent.of(*changes, tenant="acme", environment=environment, rationale=rationale)


@dataclass(frozen=True)
class Step:
    """One line of the story: what was tried, by whom, what the story expects and what apx decided."""

    title: str
    actor: str
    expected: Status
    decision: Decision

    @property
    def good(self) -> bool:
        return self.decision.status is self.expected


class _Story:
    """Records steps and shows each as it ends: a line, and the progress bar moving on."""

    def __init__(self, app: App, console: Console, progress: Progress, task: TaskID) -> None:
        self.app = app
        self.console = console
        self.progress = progress
        self.task = task
        self.steps: list[Step] = []

    def act(self, title: str) -> None:
        self.console.print(f"\n[bold]{title}[/]")
        self.progress.update(self.task, description=title)

    def record(
        self, title: str, actor: str, expected: Status, decision: Decision, caused_by: str | None = None
    ) -> Decision:
        step = Step(title, actor, expected, decision)
        self.steps.append(step)
        self.progress.advance(self.task)
        mark = "[green]✓[/]" if step.good else "[red]✗[/]"
        self.console.print(f"{mark} {title}", highlight=False)
        reason = f" — {decision.reasons[0]}" if decision.reasons else ""
        self.console.print(f"    {actor}: {decision.status.value}{reason}", highlight=False, markup=False)
        if caused_by:
            self.console.print(f"    causedBy {caused_by}", highlight=False)
        if decision.commit and decision.status is Status.APPLIED:
            branch = self.app.settings.branch_of(decision.environment)
            self.console.print(f"    signed commit {decision.commit[:12]} on {branch}", highlight=False)
        if decision.pr and decision.status is Status.PR_OPEN:
            self.console.print(
                f"    PR {decision.pr.id}: branch {decision.pr.branch}; prod untouched", highlight=False
            )
        return decision

    def now(self, intent_id: str, title: str, actor: str, expected: Status) -> Decision:
        """Record the decision an intent has now (after a drain, a merge or a rollback)."""
        view = self.app.store.get(intent_id)
        assert view is not None and view.decision is not None, intent_id
        return self.record(title, actor, expected, view.decision, view.record.caused_by)

    def agent(self, title: str, expected: Status, run: AgentRun) -> Decision | None:
        if run.decision is None:
            self.console.print(f"[red]✗[/] {title}: the {run.agent} proposed nothing: {run.reason}")
            return None
        if run.proposal:
            self.console.print(f"[dim]    plan: {run.proposal}[/]", highlight=False)
        return self.now(run.decision.intent_id, title, run.agent, expected)


def run_demo(home: Path, *, console: Console | None = None) -> int:
    """Run the story; return 0 when every step ended as the story expects."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

    if console is None:
        console = Console(highlight=False, soft_wrap=True)
        if not console.is_terminal:  # a log or a pipe: wide enough for the summary table
            console.width = 130
    init_home(home, force=True)
    settings = load_settings(home)
    settings = settings.model_copy(
        update={"canary": settings.canary.model_copy(update={"window": timedelta(seconds=60)})}
    )
    clock = FrozenClock(datetime.now(UTC))
    app = build(home, settings=settings, clock=clock)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        story = _Story(app, console, progress, progress.add_task("starting", total=STEPS))
        _play(story, app, clock)
    return _ending(story, app, console, home)


def _play(story: _Story, app: App, clock: FrozenClock) -> None:
    settings = app.settings
    plane = DataPlane(
        repo=app.repo, metrics=app.metrics, clock=clock, environments={"dev": "dev", "prod": "prod"}
    )

    def elapse(seconds: int) -> None:
        for _ in range(seconds // TICK):
            plane.tick()
            clock.advance(TICK)

    elapse(60)  # the data plane serves both environments: a baseline for canaries
    # The Optimizer samples what the data plane publishes each tick and judges a minute of it.
    agents = settings.agents.model_copy(
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
    orphan = copy.deepcopy(seed["Route/payments-v1-refunds.yaml"])
    orphan["metadata"]["name"] = "refunds-beta"
    orphan["spec"].update(path="/beta/refunds", product="refunds-api")
    world = copy.deepcopy(seed["NetworkPolicy/edge.yaml"])
    world["spec"]["ingress"] = [*world["spec"]["ingress"], {"cidr": "0.0.0.0/0", "ports": [22]}]
    orchestrator = app.orchestrator

    def submit(title: str, agent: str, expected: Status, intent: Intent) -> Decision:
        return story.record(title, agent, expected, orchestrator.submit(intent, agent=agent))

    story.act("Act 1: admission and validation (dev)")
    scale_up = _intent("dev", "p95 over SLO for 5m on checkout", ("update", edited(pool, replicas=6)))
    submit("optimizer scales checkout 4→6 in dev", "optimizer", Status.APPLIED, scale_up)
    submit("optimizer sends the same proposal again", "optimizer", Status.DUPLICATE, scale_up)
    submit(
        "optimizer wants 8 replicas right after",
        "optimizer",
        Status.RATE_LIMITED,
        _intent("dev", "still over SLO", ("update", edited(pool, replicas=8))),
    )
    submit(
        "builder emits replicas above maxReplicas (schema)",
        "builder",
        Status.REJECTED,
        _intent("dev", "scale for launch", ("update", edited(pool, replicas=500))),
    )
    submit(
        "builder opens SSH on edge to 0.0.0.0/0 (Rego policy)",
        "builder",
        Status.REJECTED,
        _intent("dev", "debug access", ("update", world)),
    )
    submit(
        "builder routes to a product that does not exist (dry run)",
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
    story.now(first.intent_id, "autoscaler sets 10 replicas (queued first)", "autoscaler", Status.APPLIED)
    story.now(second.intent_id, "cost agent sets 3 replicas at the same moment", "cost", Status.REJECTED)

    story.act("Act 2: a Builder↔Optimizer loop trips the breaker (dev)")
    elapse(16 * 60)  # past the breaker's 15-minute count of act 1's deploys
    story.agent(
        f'Builder: "{REQUEST}"',
        Status.APPLIED,
        run_agent(app, "builder", environment="dev", request=REQUEST),
    )
    elapse(310)  # the Optimizer watches a minute of the new revision; its rate limit has passed
    story.agent(
        "Optimizer reacts to the Builder's route: resizes checkout",
        Status.APPLIED,
        run_agent(app, "optimizer", environment="dev", settings=agents),
    )
    story.agent(
        'Builder, asked "size checkout at 10 replicas" for a launch: sets it back (A→B→A)',
        Status.APPLIED,
        run_agent(app, "builder", environment="dev", request="size checkout at 10 replicas"),
    )
    elapse(310)
    story.agent(
        "Optimizer reacts again: held, the breaker is open",
        Status.CIRCUIT_OPEN,
        run_agent(app, "optimizer", environment="dev", settings=agents),
    )

    story.act("Act 3: the Security agent and a prod review")
    _hand_made_hotfix(
        app,
        branch=settings.branch_of("prod"),
        files={
            "Route/payments-v1-refunds.yaml": edited("Route/payments-v1-refunds.yaml", auth="none"),
            "PolicyBundle/default.yaml": _observability(seed["PolicyBundle/default.yaml"], sampleRate=1.0),
            "NetworkPolicy/edge.yaml": world,
        },
    )
    scanned = story.agent(
        "Security scans prod after a hand-made hotfix: one batched fix, a PR",
        Status.PR_OPEN,
        run_agent(app, "security", environment="prod"),
    )
    if scanned is not None:
        app.reviews.approve(scanned.intent_id, by="alice", comment="matches the network plan")
        story.now(scanned.intent_id, "alice approves the Security agent's PR", "alice", Status.MERGED)

    story.act("Act 4: a prod change that hurts, rolled back by the canary")
    elapse(310)
    hurt = orchestrator.submit(
        _intent("prod", "cut checkout cost overnight", ("update", edited(pool, replicas=1, minReplicas=1))),
        agent="optimizer",
    )
    if hurt.pr is not None:
        app.reviews.approve(hurt.pr.id, by="alice", comment="overnight only")
    story.now(hurt.intent_id, "alice approves the optimizer's prod PR: 1 replica", "alice", Status.MERGED)
    elapse(60)
    settled = app.canary.check()
    for watch, judgement in settled:
        if watch.intent_id == hurt.intent_id:
            story.console.print(f"    canary: {judgement.reason}", highlight=False, markup=False)
    rollback_pr = app.store.pull_requests(status="open", environment="prod")
    if rollback_pr:
        app.reviews.approve(rollback_pr[0].id, by="bob", comment="canary says so")
    story.now(
        hurt.intent_id, "the canary rolls it back; bob approves the rollback PR", "bob", Status.ROLLED_BACK
    )


def _observability(document: dict[str, Any], **observability: Any) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    changed["spec"]["observability"].update(observability)
    return changed


def _hand_made_hotfix(app: App, *, branch: str, files: dict[str, dict[str, Any]]) -> None:
    """Commit ``files`` to ``branch`` the way a person would, outside apx (unsigned, no trailers).

    This is drift the Security agent's scan exists to catch: nothing of it passed the pipeline.
    """
    repo = str(app.settings.repo_path)
    with tempfile.TemporaryDirectory(prefix="apx-hotfix-") as scratch:
        tree = Path(scratch) / "tree"
        subprocess.run(["git", "-C", repo, "worktree", "add", "-q", str(tree), branch], check=True)
        try:
            for path, document in files.items():
                (tree / path).write_text(yaml.safe_dump(document, sort_keys=False))
            subprocess.run(
                [
                    "git", "-C", str(tree), "-c", "user.name=dana (on call)", "-c",
                    "user.email=dana@acme.example", "-c", "commit.gpgsign=false",
                    "commit", "-q", "-am", "hotfix: debug partner 401s on refunds",
                ],
                check=True,
            )  # fmt: skip
        finally:
            subprocess.run(["git", "-C", repo, "worktree", "remove", "--force", str(tree)], check=True)


def _ending(story: _Story, app: App, console: Console, home: Path) -> int:
    ok = len(story.steps) == STEPS and all(step.good for step in story.steps)
    console.print("\n[bold]Checks[/]")
    verified = subprocess.run(
        ["git", "-C", str(app.settings.repo_path), "verify-commit", "dev"], capture_output=True, text=True
    )
    signed = verified.returncode == 0
    console.print(
        f"{'[green]✓[/]' if signed else '[red]✗[/]'} git verify-commit dev: "
        + ("good signature" if signed else verified.stderr.strip()),
        markup=True,
        highlight=False,
    )
    app.audit.checkpoint(force=True)
    report = app.audit.verify()
    console.print(
        f"{'[green]✓[/]' if report.ok else '[red]✗[/]'} apx audit verify: "
        + (
            f"{report.size} entries, {report.checkpoints} signed checkpoints, root {report.root.hex()[:16]}…"
            if report.finding is None
            else report.finding.message
        ),
        highlight=False,
    )
    _summary(story.steps, console)
    console.print(
        f"\nHome: {home}  ·  try: apx intents list --home {home}  ·  apx audit verify --home {home}",
        highlight=False,
    )
    return 0 if ok and signed and report.ok else 1


def _summary(steps: list[Step], console: Console) -> None:
    """The closing table: every step, who acted, what apx decided, and whether that was the plan."""
    from rich.table import Table

    table = Table(title="apx demo: what happened", show_lines=False)
    for column in ("", "step", "actor", "expected", "decided"):
        table.add_column(column)
    for step in steps:
        table.add_row(
            "[green]✓[/]" if step.good else "[red]✗[/]",
            step.title,
            step.actor,
            step.expected.value,
            step.decision.status.value,
        )
    console.print(table)
