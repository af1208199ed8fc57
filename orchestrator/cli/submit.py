"""``apx init``, ``apx submit`` and ``apx drain``: make a home, put intents in, decide them.

The three commands carry no decorator: :mod:`orchestrator.cli` registers them,
in the order ``apx --help`` lists them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli.common import HomeOption, _app, _finish, _out, _report
from orchestrator.cli.remote_mode import ServerOption, _remote
from orchestrator.errors import ApxError, BadInput

if TYPE_CHECKING:
    from orchestrator.bootstrap import App


def init(
    home: HomeOption = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing installation.")] = False,
) -> None:
    """Create an APX home: settings, intent log, seeded config repo, signing key."""
    from orchestrator.home import init_home

    target = home or Path(".apx")
    made = init_home(target, force=force)
    _out(f"Initialised APX home {target.resolve()}")
    for item in made:
        _out(f"  {item.what:<58} {item.path}")
    _out(f"Next: apx submit examples/optimizer-scale-checkout.yaml --agent optimizer --home {target}")


def submit(
    file: Annotated[str, typer.Argument(help="Intent file (YAML or JSON), or - for stdin.")],
    agent: Annotated[
        str | None,
        typer.Option(
            "--agent",
            help="The submitting agent (required in-process; with --server the token's agent, "
            "and a different one is refused).",
        ),
    ] = None,
    env: Annotated[str | None, typer.Option("--env", help="Override spec.environment.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as one JSON object.")] = False,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Return once admitted (status queued).")] = False,
    server: ServerOption = None,
    home: HomeOption = None,
) -> None:
    """Submit an intent and print the decision."""
    from orchestrator.parsing import parse_intent

    source = "<stdin>" if file == "-" else file
    try:
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        raise BadInput(f"{file}: cannot read: {exc.strerror}") from exc
    remote = _remote(server)
    if remote is not None:
        # Checked here first, so a bad file gets the same line-numbered error as in-process.
        parse_intent(data, source=source)
        with remote:
            decision = remote.submit(_remote_document(data, agent=agent, env=env), wait=not no_wait)
        _report(decision, as_json)
    if agent is None:
        raise BadInput("--agent is required (with --server, the token says which agent submits)")
    application = _app(home)
    limit = application.settings.admission.max_intent_bytes
    intent = parse_intent(data, source=source, max_bytes=limit)
    if env is not None:
        intent = intent.model_copy(update={"spec": intent.spec.model_copy(update={"environment": env})})
    _finish(application, application.orchestrator.submit(intent, agent=agent, wait=not no_wait), as_json)


def _remote_document(data: bytes, *, agent: str | None, env: str | None) -> dict[str, Any]:
    """The intent as the server should get it: as written, with ``--env`` applied, and
    ``metadata.agent`` naming ``--agent`` so the server refuses it if the token is another agent's."""
    import yaml

    document = json.loads(json.dumps(yaml.safe_load(data), default=str))
    if env is not None:
        document["spec"]["environment"] = env
    if agent is not None:
        document["metadata"]["agent"] = agent
    return dict(document)


def drain(
    env: Annotated[list[str] | None, typer.Option("--env", help="Only this environment.")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep deciding what arrives, until SIGTERM or Ctrl-C.")
    ] = False,
    run_for: Annotated[str | None, typer.Option("--for", help="With --follow: stop after this long.")] = None,
    home: HomeOption = None,
) -> None:
    """Decide every queued intent now; with --follow, run as a pipeline worker.

    Several `apx drain` processes share the work, on this host or others sharing the
    database (PostgreSQL) and the config remote: each claims the head of one environment's
    queue at a time, so environments are decided in parallel and each in arrival order.
    `apx serve --workers N` starts N `apx drain --follow`. SIGTERM lets the decision in
    progress finish, then exits 0.
    """
    from orchestrator.durations import parse_duration
    from orchestrator.workers import worker_name

    if run_for is not None and not follow:
        raise BadInput("--for goes with --follow (a plain drain stops when nothing is left)")
    try:
        limit = parse_duration(run_for).total_seconds() if run_for else None
    except ValueError as exc:
        raise BadInput(f"--for: {exc}") from exc
    application = _app(home)
    environments = _environments(application, env)
    if not follow:
        for decision in application.orchestrator.work(worker_name("drain"), environments=environments):
            _out(decision.summary())
        application.audit.checkpoint()
        _say_what_is_left(application, environments)
        return
    _follow(application, environments, limit)


def _say_what_is_left(application: App, environments: list[str]) -> None:
    """Intents a drain left queued: another worker's claim holds them (a live worker is
    deciding, or a dead one's claim has not lapsed yet), or a change window is closed."""
    for environment in environments:
        left = application.store.pending(environment=environment)
        if not left:
            continue
        head = left[0]
        why = (
            f"its head {head.record.id} is claimed by worker {head.claimed_by} (taken over once "
            f"the claim lapses, within workers.lease = "
            f"{application.settings.workers.lease.total_seconds():g}s)"
            if head.claimed_by
            else "its change window is closed"
            if not application.orchestrator.change_window(environment).open
            else "another process is deciding it"
        )
        typer.echo(f"apx drain: {len(left)} intents left queued in {environment}: {why}", err=True)


def _follow(application: App, environments: list[str], limit: float | None) -> None:
    """``apx drain --follow``: claim and decide until a signal (or ``limit`` seconds)."""
    import signal
    import threading
    import time

    from orchestrator.workers import worker_name

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    name = worker_name("worker")
    poll = application.settings.workers.poll.total_seconds()
    _out(f"apx drain: worker {name} deciding {', '.join(environments)} (polls every {poll:g}s)")
    started = time.monotonic()
    decided = 0
    failures = 0
    try:
        while not stop.is_set() and (limit is None or time.monotonic() - started < limit):
            try:
                made = application.orchestrator.work(name, environments=environments, stop=stop.is_set)
                if made:
                    application.audit.checkpoint()
            except ApxError as exc:
                # The database restarting, a lock held too long, the config remote away: say
                # so and retry with back-off; a worker outlives what its operators fix.
                failures += 1
                wait = min(30.0, poll * 2**failures)
                typer.echo(f"apx drain: {exc.message}; retrying in {wait:g}s", err=True)
                stop.wait(wait)
                continue
            failures = 0
            for decision in made:
                _out(decision.summary())
            decided += len(made)
            if not made:
                stop.wait(poll)
    finally:
        application.close()
    _out(f"apx drain: worker {name} stopped after {decided} decisions")


def _environments(application: App, env: list[str] | None) -> list[str]:
    """The environments ``--env`` names (all when none), each checked to exist."""
    known = list(application.settings.environments)
    for name in env or ():
        if name not in known:
            raise BadInput(f"--env {name}: no such environment (configured: {', '.join(known)})")
    return env or known
