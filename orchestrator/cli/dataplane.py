"""``apx dataplane``: run the reference data plane and read the metrics it publishes."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli.common import HomeOption, _app, _out, parse_since
from orchestrator.errors import BadInput

if TYPE_CHECKING:
    from datetime import timedelta

    from orchestrator.bootstrap import App
    from orchestrator.dataplane.metrics import PoolSummary
    from orchestrator.dataplane.runner import TickReport


dataplane_app = typer.Typer(
    help="Run the reference data plane and read the metrics it publishes.", no_args_is_help=True
)


class MetricsOutput(StrEnum):
    table = "table"
    json = "json"


def _dataplane_environments(application: App, wanted: list[str] | None) -> dict[str, str]:
    """environment → branch for ``--env`` (repeatable; default every configured environment)."""
    from orchestrator.errors import UnknownEnvironment

    configured = application.settings.environments
    for env in wanted or []:
        if env not in configured:
            raise UnknownEnvironment(
                f"--env {env!r}: not an environment in apx.yaml (configured: {', '.join(configured)})"
            )
    names = list(dict.fromkeys(wanted)) if wanted else list(configured)
    return {env: application.settings.branch_of(env) for env in names}


def _positive_duration(text: str, option: str) -> timedelta:
    from datetime import timedelta

    from orchestrator.durations import parse_duration

    try:
        value = parse_duration(text)
    except ValueError:
        raise BadInput(f"{option} {text!r}: use a duration such as 500ms, 1s or 5m") from None
    if value <= timedelta(0):
        raise BadInput(f"{option} {text!r}: must be longer than zero")
    return value


def _print_tick(reports: list[TickReport]) -> None:
    for r in reports:
        commit = r.commit[:12] if r.commit else "-"
        if r.reconciled is not None:
            what = _changes_text(r.reconciled.as_fields()) or "no change to what is served"
            _out(f"{r.environment}: now running {commit} ({what})")
        if r.problem:
            _out(f"{r.environment}: {r.problem}")
        errors = "-" if r.error_rate is None else f"{r.error_rate:.2f}%"
        at = r.at.strftime("%H:%M:%SZ")
        _out(f"{at} {r.environment} @{commit}: {r.samples} samples, error rate {errors}")


def _changes_text(fields: dict[str, Any]) -> str:
    """``routes removed: payments-healthz; pools scaled: checkout 4→1`` (long lists are counted)."""
    parts = []
    for key, value in fields.items():
        items = [f"{n} {v}" for n, v in value.items()] if isinstance(value, dict) else list(value)
        shown = ", ".join(items) if len(items) <= 5 else f"{len(items)} ({', '.join(items[:3])}, …)"
        parts.append(f"{key.replace('_', ' ')}: {shown}")
    return "; ".join(parts)


@dataplane_app.command("run")
def dataplane_run(
    env: Annotated[
        list[str] | None,
        typer.Option("--env", help="Follow this environment (repeatable; default: all in apx.yaml)."),
    ] = None,
    interval: Annotated[str, typer.Option(help="Time between ticks: 500ms, 1s, 1m.")] = "1s",
    ticks: Annotated[int | None, typer.Option(min=1, help="Stop after this many ticks.")] = None,
    for_: Annotated[str | None, typer.Option("--for", help="Stop after this long: 30s, 5m.")] = None,
    home: HomeOption = None,
) -> None:
    """Follow the environment branches, run what they say (simulated), publish metrics every tick.

    Never writes to the config repo. Runs until Ctrl-C unless --ticks or --for is given.
    """
    from orchestrator.dataplane.runner import DataPlane

    every = _positive_duration(interval, "--interval")
    duration = None if for_ is None else _positive_duration(for_, "--for")
    application = _app(home)
    environments = _dataplane_environments(application, env)
    done: list[list[TickReport]] = []

    def report(reports: list[TickReport]) -> None:
        done.append(reports)
        _print_tick(reports)

    plane = DataPlane(
        repo=application.repo, metrics=application.metrics, clock=application.clock, environments=environments
    )
    try:
        plane.run(interval=every, ticks=ticks, duration=duration, report=report)
    except KeyboardInterrupt:
        _out("interrupted")
    _out(f"data plane stopped after {len(done)} ticks ({', '.join(environments)})")


@dataplane_app.command("metrics")
def dataplane_metrics(
    env: Annotated[str | None, typer.Option("--env", help="Only this environment.")] = None,
    since: Annotated[str, typer.Option(help="Over this window: 5m, 1h, or since a timestamp.")] = "5m",
    output: Annotated[
        MetricsOutput, typer.Option("-o", "--output", help="table or json.")
    ] = MetricsOutput.table,
    home: HomeOption = None,
) -> None:
    """Recent metrics per worker pool, aggregated over the window (what the canary and Optimizer read)."""
    from orchestrator.dataplane.metrics import POOL, summarise

    application = _app(home)
    now = application.clock.now()
    start = parse_since(since, now=now)
    environments = _dataplane_environments(application, [env] if env else None)
    metrics = application.metrics
    pools = summarise(
        s for e in environments for s in metrics.read(environment=e, since=start, until=now, scope=POOL)
    )
    if output is MetricsOutput.json:
        _out(json.dumps([_pool_row(p) for p in pools], indent=2))
        return
    _pool_table(pools, since=since)


def _pool_row(p: PoolSummary) -> dict[str, Any]:
    def num(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return {
        "environment": p.environment,
        "pool": p.pool,
        "commit": p.commit,
        "ticks": p.ticks,
        "from": p.first.isoformat(),
        "to": p.last.isoformat(),
        "rps": num(p.rps),
        "p95_ms": num(p.p95_ms),
        "error_rate": num(p.error_rate),
        "throttled_rate": num(p.throttled_rate),
        "utilisation": num(p.utilisation),
        "replicas": p.replicas,
    }


def _pool_table(pools: list[PoolSummary], *, since: str) -> None:
    from rich.console import Console
    from rich.table import Table

    if not pools:
        _out(f"no data-plane metrics since {since}; is `apx dataplane run` running?")
        return
    table = Table()
    columns = ("env", "pool", "commit", "ticks", "rps", "p95 ms", "errors %", "429 %", "util", "replicas")
    for column in columns:
        table.add_column(column, justify="left" if column in ("env", "pool", "commit") else "right")

    def fmt(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    for p in pools:
        table.add_row(
            p.environment,
            p.pool,
            p.commit[:12],
            str(p.ticks),
            fmt(p.rps, 1),
            fmt(p.p95_ms, 0),
            fmt(p.error_rate, 2),
            fmt(p.throttled_rate, 2),
            fmt(p.utilisation, 2),
            "-" if p.replicas is None else str(p.replicas),
        )
    Console(width=200).print(table)
