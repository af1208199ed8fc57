"""``apx worker``, ``apx notify`` and ``apx canary``: the periodic jobs.

``apx worker`` runs them all on their schedule; ``apx notify deliver`` and
``apx canary check`` run one of them now; ``apx canary list`` shows the watches.
``worker`` carries no decorator: :mod:`orchestrator.cli` registers it, in the
order ``apx --help`` lists the commands.
"""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrator.cli.common import HomeOption, _app, _out
from orchestrator.errors import BadInput


def worker(
    run_for: Annotated[
        str | None, typer.Option("--for", help="Stop after this long (default: until interrupted).")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Run the periodic jobs in the foreground: drain queued intents (change windows), judge
    canaries, expire reviews, deliver notifications, prune payloads, sign audit checkpoints.

    `apx serve` runs the same jobs beside the API; this is for installations without it.
    """
    import time

    from orchestrator.durations import parse_duration
    from orchestrator.scheduler import build_scheduler

    try:
        limit = parse_duration(run_for).total_seconds() if run_for else None
    except ValueError as exc:
        raise BadInput(f"--for: {exc}") from exc
    application = _app(home)
    scheduler = build_scheduler(application)
    scheduler.start()
    jobs = ", ".join(job.id for job in scheduler.get_jobs())
    _out(f"apx worker: running {jobs}" + (f" for {run_for}" if run_for else " (Ctrl-C stops)"))
    started = time.monotonic()
    try:
        while limit is None or time.monotonic() - started < limit:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        scheduler.shutdown(wait=True)
        application.close()


notify_app = typer.Typer(help="Webhook notifications: deliver what is due.", no_args_is_help=True)


@notify_app.command("deliver")
def notify_deliver(home: HomeOption = None) -> None:
    """Post the webhook notifications that are due now (retries follow their backoff)."""
    application = _app(home)
    delivered = application.deliver_notifications()
    _out(f"delivered {delivered} notifications; {application.outbox.pending_count()} still pending")


canary_app = typer.Typer(
    help="Watch changes for error-rate regressions; roll them back.", no_args_is_help=True
)


@canary_app.command("check")
def canary_check(home: HomeOption = None) -> None:
    """Judge open canary watches now; roll back a change whose error rate rose past the margin."""
    application = _app(home)
    settled = application.canary.check()
    application.audit.checkpoint()
    if not settled:
        _out("no canary watch is due")
    for watch, judgement in settled:
        _out(f"{watch.intent_id} ({watch.environment}): {judgement.verdict}: {judgement.reason}")


@canary_app.command("list")
def canary_list(
    status: Annotated[str | None, typer.Option(help="watching, passed, rolled_back, no_data.")] = None,
    home: HomeOption = None,
) -> None:
    """Canary watches, oldest first."""
    application = _app(home)
    watches = application.store.canaries(status=status)
    if not watches:
        _out("no canary watches")
    for w in watches:
        tail = f": {w.reason}" if w.reason else ""
        _out(
            f"{w.intent_id}  {w.environment}  {w.status}  until {w.until.isoformat(timespec='seconds')}{tail}"
        )
