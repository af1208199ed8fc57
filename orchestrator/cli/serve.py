"""``apx serve`` and ``apx principals``: the control plane as a service, and who may call it.

``apx serve`` runs the HTTP API, the pipeline workers and the scheduler in one
service; ``apx principals`` manages the API tokens it accepts. ``serve`` carries no
decorator: :mod:`orchestrator.cli` registers it, in the order ``apx --help`` lists the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator.cli.common import HomeOption, _app, _out


def serve(
    host: Annotated[
        str, typer.Option(help="Listen on this address (loopback by default; 0.0.0.0 for every interface).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Listen on this port (0 picks a free one and prints it).")] = 8700,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=0,
            max=64,
            help="Pipeline worker processes to start (default: workers.count; 0 decides in-process).",
        ),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Run the control plane as one service: the HTTP API, the pipeline worker(s) and the scheduler.

    Runs until SIGTERM or Ctrl-C, then stops in order within a bounded time.
    """
    from orchestrator.serve import run

    application = _app(home)
    count = application.settings.workers.count if workers is None else workers
    raise typer.Exit(run(application, host=host, port=port, echo=_out, workers=count))


principals_app = typer.Typer(
    help="API tokens: who may call `apx serve`, with which role, for which tenants.", no_args_is_help=True
)


@principals_app.command("add")
def principals_add(
    name: Annotated[str, typer.Argument(help="Who this is: an agent's name, a person, a script.")],
    role: Annotated[
        str, typer.Option("--role", help="agent:<name> (e.g. agent:builder), reviewer, engineer or admin.")
    ],
    tenant: Annotated[
        list[str],
        typer.Option("--tenant", help="A tenant it may act for (repeatable; '*' for every tenant)."),
    ],
    home: HomeOption = None,
) -> None:
    """Add a principal and print its token on stdout, once: only its hash is kept."""
    principals = _principals(home)
    token = principals.add(name, role, tenant)
    added = next(p for p in principals.list() if p.name == name)
    _out(token)
    typer.echo(
        f"apx: added {name} ({added.role_text}, tenants {', '.join(sorted(added.tenants))}) to "
        f"{principals.path}. The token above is shown only now and cannot be shown again: "
        "store it (e.g. as APX_TOKEN) before closing this terminal.",
        err=True,
    )


@principals_app.command("list")
def principals_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    home: HomeOption = None,
) -> None:
    """The principals: name, role and tenants (never tokens or their hashes)."""
    found = _principals(home).list()
    rows = [{"name": p.name, "role": p.role_text, "tenants": sorted(p.tenants)} for p in found]
    if as_json:
        _out(json.dumps(rows, indent=2))
        return
    if not rows:
        _out("no principals; add one with: apx principals add NAME --role ROLE --tenant TENANT")
    width = max((len(r["name"]) for r in rows), default=0)
    for r in rows:
        _out(f"{r['name']:<{width}}  {r['role']:<16} {', '.join(r['tenants'])}")


@principals_app.command("revoke")
def principals_revoke(
    name: Annotated[str, typer.Argument(help="The principal to remove.")],
    home: HomeOption = None,
) -> None:
    """Remove a principal: its token stops working at the server's next request (no restart)."""
    principals = _principals(home)
    principals.revoke(name)
    _out(f"revoked {name}: its token no longer works")


def _principals(home: Path | None) -> Any:
    from orchestrator.principals import Principals

    return Principals.load(_app(home).settings.home)
