"""``apx breakers``: see the circuit breakers and reset one (a human decision)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli.common import HomeOption, _app, _out
from orchestrator.cli.remote_mode import ServerOption, _remote

if TYPE_CHECKING:
    from orchestrator.records import BreakerState


breakers_app = typer.Typer(help="See and reset circuit breakers.", no_args_is_help=True)


@breakers_app.command("list")
def breakers_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    server: ServerOption = None,
    home: HomeOption = None,
) -> None:
    """Every breaker that has tripped, open or closed."""
    from dataclasses import asdict

    remote = _remote(server)
    if remote is not None:
        with remote:
            states = [_breaker_state(item) for item in remote.get("/v1/breakers")]
    else:
        states = _app(home).orchestrator.breakers()
    if as_json:
        _out(json.dumps([asdict(s) for s in states], default=str, indent=2))
        return
    if not states:
        _out("no breakers have tripped")
    for s in states:
        state = "OPEN" if s.open else "closed"
        _out(f"{s.tenant}/{s.environment}: {state}")
        if s.open:
            _out(f"  since {s.opened_at}, until {s.closes_at} unless reset: {s.reason}")
        elif s.reset_by:
            _out(f"  reset by {s.reset_by} at {s.reset_at}")


@breakers_app.command("reset")
def breakers_reset(
    tenant: Annotated[str, typer.Option(help="The tenant.")],
    env: Annotated[str, typer.Option("--env", help="The environment.")],
    by: Annotated[
        str,
        typer.Option(
            help="Who resets it (recorded). With --server the token's principal is recorded instead.",
            envvar="USER",
        ),
    ] = "operator",
    server: ServerOption = None,
    home: HomeOption = None,
) -> None:
    """Close a breaker (a human decision); its deploy count restarts now."""
    remote = _remote(server)
    if remote is not None:
        from orchestrator.remote import path_segment

        with remote:
            response = remote.post(f"/v1/breakers/{path_segment(tenant)}/{path_segment(env)}/reset")
        state = _breaker_state(response.json())
        by = state.reset_by or by
    else:
        application = _app(home)
        state = application.orchestrator.reset_breaker(tenant=tenant, environment=env, by=by)
        application.audit.checkpoint()
    _out(f"{state.tenant}/{state.environment}: closed by {by}")


def _breaker_state(item: dict[str, Any]) -> BreakerState:
    """A breaker from the API's JSON, so remote output is printed by the same code."""
    from dataclasses import fields

    from orchestrator.records import BreakerState

    values: dict[str, Any] = {f.name: item.get(f.name) for f in fields(BreakerState)}
    for name, value in values.items():
        if name.endswith("_at") or name == "count_from":
            values[name] = datetime.fromisoformat(value) if isinstance(value, str) else value
    return BreakerState(**values)
