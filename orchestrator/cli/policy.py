"""``apx policy`` (lint, test, version), ``apx schema export`` and ``apx migrate``.

``migrate`` carries no decorator: :mod:`orchestrator.cli` registers it, in the
order ``apx --help`` lists the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.common import HomeOption, _app, _out
from orchestrator.errors import BadInput

policy_app = typer.Typer(help="Lint, test and version policy bundles.", no_args_is_help=True)


schema_app = typer.Typer(help="The resource kinds' schemas.", no_args_is_help=True)


BundleArg = Annotated[
    Path | None, typer.Argument(metavar="[DIR]", help="A bundle directory (default: the bundle in force).")
]


def _bundle_dir(directory: Path | None, home: Path | None) -> Path | None:
    if directory is not None:
        return directory
    from orchestrator.settings import load_settings

    return load_settings(home or Path(".apx")).policy.bundle


@policy_app.command("lint")
def policy_lint(directory: BundleArg = None, home: HomeOption = None) -> None:
    """Compile the bundle and check it for what regopy gets wrong; print file:line problems."""
    from constraints.bundle import lint

    problems = lint(_bundle_dir(directory, home))
    for problem in problems:
        _out(problem)
    if problems:
        raise typer.Exit(1)
    _out("ok: no problems")


@policy_app.command("test")
def policy_test(directory: BundleArg = None, home: HomeOption = None) -> None:
    """Run the bundle's *_test.rego unit tests."""
    from constraints.bundle import run_tests

    report = run_tests(_bundle_dir(directory, home))
    for result in report.results:
        mark = "PASS" if result.passed else result.outcome.upper()
        _out(f"{mark} {result.file}: {result.name}" + (f" — {result.message}" if result.message else ""))
    _out(report.summary())
    if not report.passed:
        raise typer.Exit(1)


@policy_app.command("version")
def policy_version(
    directory: BundleArg = None,
    history: Annotated[
        bool, typer.Option("--history", help="Also list every bundle that was in force.")
    ] = False,
    home: HomeOption = None,
) -> None:
    """Name, semver and sha256 of a bundle; with --history, who brought each bundle into force and when."""
    from constraints.bundle import load_bundle

    info = load_bundle(_bundle_dir(directory, home)).info
    _out(f"{info.label}  ({info.path})")
    _out(f"sha256 {info.sha256}")
    if history:
        application = _app(home)
        for change in application.store.policy_history():
            at = change.at.isoformat(timespec="seconds")
            _out(
                f"{at}  {change.name}@{change.version}+{change.sha256[:12]}"
                f"  by {change.by}  from {change.source}"
            )


@schema_app.command("export")
def schema_export(
    directory: Annotated[Path, typer.Argument(help="Where to write the *.schema.json files.")] = Path(
        "schemas"
    ),
) -> None:
    """Write the JSON Schema of every kind and apiVersion (from the pydantic models)."""
    from orchestrator.schema_tools import export_json_schemas

    for path in export_json_schemas(directory):
        _out(str(path))


def migrate(
    env: Annotated[str, typer.Option("--env", help="The environment whose branch to rewrite.")],
    home: HomeOption = None,
) -> None:
    """Rewrite every resource on an environment's branch still at an old apiVersion, as one signed commit."""
    from orchestrator.ids import new_trace_id
    from orchestrator.schema_tools import migrate_environment

    application = _app(home)
    if env not in application.settings.environments:
        raise BadInput(f"environment {env!r} is not configured")
    branch = application.settings.branch_of(env)
    with application.orchestrator.holding(env):
        commit = migrate_environment(
            application.repo,
            branch=branch,
            message_trailers={"Trace-Id": new_trace_id(), "Agent": "apx-migrate"},
        )
    _out(
        f"{branch}: migrated in signed commit {commit}" if commit else f"{branch}: every resource is current"
    )
