"""What the command modules share: ``--home``, opening the home, printing a decision.

:func:`_report` and :func:`_finish` end a command with the decision's exit code;
:func:`orchestrator.cli.main` maps errors to theirs.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from orchestrator.cli.remote_mode import _refuse_global_server

if TYPE_CHECKING:
    from orchestrator.bootstrap import App
    from orchestrator.decision import Decision


HomeOption = Annotated[
    Path | None,
    typer.Option("--home", envvar="APX_HOME", help="The APX home (default ./.apx).", show_default=False),
]


def _app(home: Path | None, *, policy_bundle: Path | None = None) -> App:
    from orchestrator.bootstrap import build

    _refuse_global_server()
    return build(
        home or Path(".apx"),
        policy_bundle=policy_bundle,
        notify=lambda notice: typer.echo(f"apx: warning: {notice}", err=True),
    )


def _out(text: str = "") -> None:
    typer.echo(text)


def parse_since(text: str, *, now: datetime, option: str = "--since") -> datetime:
    from orchestrator.presenters import parse_since as parse

    return parse(text, now=now, option=option)


def _finish(application: App, decision: Decision, as_json: bool) -> NoReturn:
    """Sign an audit checkpoint if one is due, print the decision, exit with its code."""
    application.audit.checkpoint()
    _report(decision, as_json)


def _report(decision: Decision, as_json: bool) -> NoReturn:
    """Print the decision (one JSON object with ``--json``) and exit with its code."""
    if as_json:
        _out(decision.model_dump_json())
    else:
        _print_decision(decision)
    raise typer.Exit(decision.exit_code)


def _print_diffs(decision: Decision) -> None:
    for path, diff in decision.diff.items():
        _out(f"diff {path}:")
        _out(diff.rstrip("\n"))


def _print_decision(decision: Decision) -> None:
    _out(decision.summary())
    for reason in decision.reasons[1:]:
        _out(f"  reason: {reason}")
    for warning in decision.warnings:
        _out(f"  warning: {warning}")
    for waiver in decision.waivers:
        _out(f"  waiver used: {waiver.get('rule')} by {waiver.get('ticket')} until {waiver.get('expires')}")
    for check in decision.checks:
        mark = "pass" if check.passed else "FAIL"
        _out(f"  check {check.name}: {mark}")
        for message in check.messages:
            _out(f"    - {message}")
    if decision.commit:
        _out(f"  commit: {decision.commit}")
    if decision.pr:
        _out(f"  pr: {decision.pr.id} ({decision.pr.branch} → {decision.pr.base})")
    if decision.rollback:
        _out(f"  rollback: {decision.rollback.git}")
    if decision.policy_version:
        _out(f"  policy: {decision.policy_version}")
    _out(f"  trace: {decision.trace_id}")
