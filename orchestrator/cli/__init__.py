"""The ``apx`` command line.

Commands import the orchestrator lazily, so ``apx --help`` stays fast.
:func:`main` is the one place that turns errors and decisions into exit
codes: 0 accepted, 1 rejected, 2 bad input or usage, 3 held by admission,
4 internal failure.

Remote mode: with ``--server URL`` (or ``APX_SERVER``) and a token in
``APX_TOKEN``, submit, intents list/show, prs, breakers, audit verify and
agents run talk to ``apx serve`` over HTTP (:mod:`orchestrator.remote`)
instead of opening the home; output and exit codes stay the same. A refusal
by the server (401, 403) exits 2 with ``refused: <reason>``; a server that
cannot be reached exits 4 naming the URL.

One module per command group. This one builds the typer ``app`` from them, in
the order ``apx --help`` lists the commands, and holds :func:`main`:

- :mod:`~orchestrator.cli.common`: ``--home``, opening the home, printing a decision
- :mod:`~orchestrator.cli.remote_mode`: ``--server`` and which commands accept it
- :mod:`~orchestrator.cli.submit`: ``init``, ``submit``, ``drain``
- :mod:`~orchestrator.cli.intents`: ``intents list|show|replay|blame|prune``
- :mod:`~orchestrator.cli.policy`: ``policy lint|test|version``, ``schema export``, ``migrate``
- :mod:`~orchestrator.cli.breakers`: ``breakers list|reset``
- :mod:`~orchestrator.cli.prs`: ``prs list|show|approve|reject``, ``rollback``
- :mod:`~orchestrator.cli.audit`: ``audit verify|prove|check-proof|export|checkpoint``
- :mod:`~orchestrator.cli.jobs`: ``worker``, ``notify deliver``, ``canary check|list``
- :mod:`~orchestrator.cli.serve`: ``serve``, ``principals add|list|revoke``
- :mod:`~orchestrator.cli.dataplane`: ``dataplane run|metrics``
- :mod:`~orchestrator.cli.agents`: ``agents run``
- :mod:`~orchestrator.cli.demo`: ``demo``

Every module imports only typer and the standard library at the top; each command
imports what it needs when it runs.
"""

from __future__ import annotations

import sys

import typer

from orchestrator.cli import (
    agents,
    audit,
    breakers,
    dataplane,
    demo,
    intents,
    jobs,
    policy,
    prs,
    serve,
    submit,
)
from orchestrator.cli.remote_mode import _global_options
from orchestrator.errors import ApxError, BadInput, Forbidden, NotFound, Unauthenticated

__all__ = ["app", "exit_code_for", "main"]

app = typer.Typer(
    name="apx",
    help="APX: agents propose configuration changes; apx decides, applies and records them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.callback()(_global_options)

# `apx --help` lists the commands in the order they are registered here, then the groups in theirs.
app.command()(submit.init)
app.command()(submit.submit)
app.command()(submit.drain)
app.command()(policy.migrate)
app.command()(prs.rollback)
app.command()(jobs.worker)
app.command()(serve.serve)
app.command()(demo.demo)
app.add_typer(intents.intents_app, name="intents")
app.add_typer(breakers.breakers_app, name="breakers")
app.add_typer(policy.policy_app, name="policy")
app.add_typer(policy.schema_app, name="schema")
app.add_typer(audit.audit_app, name="audit")
app.add_typer(jobs.notify_app, name="notify")
app.add_typer(jobs.canary_app, name="canary")
app.add_typer(prs.prs_app, name="prs")
app.add_typer(serve.principals_app, name="principals")
app.add_typer(dataplane.dataplane_app, name="dataplane")
app.add_typer(agents.agents_app, name="agents")


def exit_code_for(error: ApxError) -> int:
    """2 for what the caller can fix (bad input, unknown id, a token or role the server
    refused); 4 for everything else."""
    return 2 if isinstance(error, BadInput | NotFound | Unauthenticated | Forbidden) else 4


def main() -> None:
    command = typer.main.get_command(app)
    try:
        # Standalone mode: click itself turns usage errors into exit 2 and
        # typer.Exit into its code; what reaches us is ours to classify.
        command.main(prog_name="apx", standalone_mode=True)
    except ApxError as exc:
        typer.echo(f"apx: {exc.message}", err=True)
        sys.exit(exit_code_for(exc))
    except Exception as exc:  # the last line of defence: one sentence, exit 4, no traceback
        typer.echo(f"apx: internal error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(4)
