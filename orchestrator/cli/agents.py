"""``apx agents run``: run the Builder, Optimizer or Security agent once, in-process or over ``--server``."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli.common import HomeOption, _app, _out, _print_decision
from orchestrator.cli.remote_mode import ServerOption, _server_url

if TYPE_CHECKING:
    from agents.graph import AgentRun


agents_app = typer.Typer(
    help="Run the Builder, Optimizer and Security agents on demand (they submit like anyone else).",
    no_args_is_help=True,
)


class AgentName(StrEnum):
    builder = "builder"
    optimizer = "optimizer"
    security = "security"


@agents_app.command("run")
def agents_run(
    name: Annotated[AgentName, typer.Argument(help="builder, optimizer or security.")],
    env: Annotated[
        str | None, typer.Option("--env", help="Environment (default: agents.<name>.environment, dev).")
    ] = None,
    request: Annotated[
        str | None,
        typer.Option(
            "--request", help="What the Builder should build: 'expose /v2/refunds on payments-api with auth'."
        ),
    ] = None,
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant the agent acts for.")] = "acme",
    as_json: Annotated[bool, typer.Option("--json", help="Print the run as one JSON object.")] = False,
    server: ServerOption = None,
    home: HomeOption = None,
) -> None:
    """Run one agent once: observe, plan, propose, submit; print what it did and the decision.

    Exit code follows the decision (0 accepted, 1 rejected, 3 held); 0 when there is nothing
    to propose; 1 when the proposal was not a valid intent (refused before submission).
    With --server the agent observes and submits over HTTP with the agent token in APX_TOKEN;
    its settings (agents:, llm:) come from the home's apx.yaml if there is one, else defaults.
    """
    url = _server_url(server)
    if url is not None:
        done = _run_agent_remote(url, name.value, env=env, tenant=tenant, request=request, home=home)
    else:
        from agents.runner import run_agent

        application = _app(home)
        done = run_agent(application, name.value, environment=env, tenant=tenant, request=request)
        application.audit.checkpoint()
    if as_json:
        _out(done.model_dump_json())
    else:
        _out(f"{done.agent} ({done.planner}) observed {done.observed}")
        if done.decision is None:
            _out(done.summary())
        else:
            _out(f"proposed: {done.proposal}")
            if done.caused_by:
                _out(f"  caused by: {done.caused_by}")
            _print_decision(done.decision)
    raise typer.Exit(done.exit_code)


def _run_agent_remote(
    url: str, name: str, *, env: str | None, tenant: str, request: str | None, home: Path | None
) -> AgentRun:
    import os

    from agents.http_client import HttpClient
    from agents.runner import run_with
    from orchestrator import logs
    from orchestrator.remote import TOKEN_ENV
    from orchestrator.settings import load_settings

    settings = load_settings(home)
    # No home to log into: warnings go to stderr, so stdout stays the run (or its JSON);
    # the run's own record is what it prints and the server's log.
    logs.configure(level="warning", fmt=settings.log.format)
    with HttpClient(url, os.environ.get(TOKEN_ENV, "").strip(), tenant) as client:
        return run_with(
            client,
            name,
            settings=settings.agents,
            llm=settings.llm,
            at=datetime.now(UTC),
            environment=env,
            request=request,
        )
