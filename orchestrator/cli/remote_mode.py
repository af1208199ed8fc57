"""Remote mode: ``--server URL`` (or ``APX_SERVER``) and a token in ``APX_TOKEN``.

The commands in :data:`REMOTE_COMMANDS` ask ``apx serve`` over HTTP
(:mod:`orchestrator.remote`) instead of opening the home; every other command
refuses a ``--server`` typed on the command line (:func:`_refuse_global_server`,
called by :func:`orchestrator.cli.common._app`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.errors import BadInput

if TYPE_CHECKING:
    from orchestrator.remote import Remote

ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="APX_SERVER",
        help="Ask this APX server (URL; token from APX_TOKEN) instead of opening the home.",
        show_default=False,
    ),
]


#: What ``--server`` works with; every other command runs in-process only.
REMOTE_COMMANDS = (
    "submit, intents list|show, prs list|show|approve|reject, breakers list|reset, audit verify, agents run"
)


#: The global ``apx --server URL`` of this invocation, and whether it was typed on the
#: command line (rather than taken from ``APX_SERVER``). Set by the callback on every run.
_global_server: dict[str, Any] = {"url": None, "typed": False}


def _global_options(ctx: typer.Context, server: ServerOption = None) -> None:
    # The global --server; each remote-capable command also takes its own.
    source = ctx.get_parameter_source("server")
    _global_server.update(url=server, typed=source is not None and source.name == "COMMANDLINE")


def _server_url(server: str | None) -> str | None:
    """The server to ask (this command's --server, else the global one), or None: in-process."""
    server = server or _global_server["url"]
    if not server:
        return None
    from orchestrator.remote import check_server_url, plain_http_warning

    url = check_server_url(server)
    warning = plain_http_warning(url)
    if warning:
        typer.echo(f"apx: warning: {warning}", err=True)
    return url


def _remote(server: str | None) -> Remote | None:
    url = _server_url(server)
    if url is None:
        return None
    from orchestrator.remote import Remote

    return Remote.from_environment(url)


def _refuse_global_server() -> None:
    """A command without a remote mode, given ``apx --server URL …`` on the command line.

    ``APX_SERVER`` in the environment is not refused: it stays set in a shell
    where ``apx init`` or ``apx policy lint`` must still work locally.
    """
    if _global_server["url"] and _global_server["typed"]:
        raise BadInput(f"this command runs in-process only; --server works with: {REMOTE_COMMANDS}")
