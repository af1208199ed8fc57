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
"""

from __future__ import annotations

import csv
import json
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from orchestrator.errors import ApxError, BadInput, Forbidden, NotFound, Unauthenticated

if TYPE_CHECKING:
    from agents.graph import AgentRun
    from audit.checkpoint import PublicKey
    from orchestrator.bootstrap import App
    from orchestrator.decision import Decision
    from orchestrator.records import BreakerState, IntentView
    from orchestrator.remote import Remote

app = typer.Typer(
    name="apx",
    help="APX: agents propose configuration changes; apx decides, applies and records them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
intents_app = typer.Typer(help="Query the intent log.", no_args_is_help=True)
breakers_app = typer.Typer(help="See and reset circuit breakers.", no_args_is_help=True)
policy_app = typer.Typer(help="Lint, test and version policy bundles.", no_args_is_help=True)
schema_app = typer.Typer(help="The resource kinds' schemas.", no_args_is_help=True)
app.add_typer(intents_app, name="intents")
app.add_typer(breakers_app, name="breakers")
app.add_typer(policy_app, name="policy")
audit_app = typer.Typer(help="Verify, prove and export the tamper-evident audit log.", no_args_is_help=True)
app.add_typer(schema_app, name="schema")
app.add_typer(audit_app, name="audit")
notify_app = typer.Typer(help="Webhook notifications: deliver what is due.", no_args_is_help=True)
app.add_typer(notify_app, name="notify")
canary_app = typer.Typer(
    help="Watch changes for error-rate regressions; roll them back.", no_args_is_help=True
)
app.add_typer(canary_app, name="canary")
prs_app = typer.Typer(
    help="Review prod PRs: list, show, approve (merges when approvals are met), reject.", no_args_is_help=True
)
app.add_typer(prs_app, name="prs")

HomeOption = Annotated[
    Path | None,
    typer.Option("--home", envvar="APX_HOME", help="The APX home (default ./.apx).", show_default=False),
]
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


@app.callback()
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


class Output(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


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


# -- init / submit / drain ---------------------------------------------------------


@app.command()
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


@app.command()
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


@app.command()
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
        return
    _follow(application, environments, limit)


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


# -- intents -------------------------------------------------------------------------


if TYPE_CHECKING:
    from orchestrator.blame import BlameLine, FieldPath, Landed
    from orchestrator.intent import ResourceKey


def parse_since(text: str, *, now: datetime, option: str = "--since") -> datetime:
    from orchestrator.presenters import parse_since as parse

    return parse(text, now=now, option=option)


def encode_cursor(seq: int) -> str:
    from orchestrator.presenters import encode_cursor as encode

    return encode(seq)


def decode_cursor(text: str) -> int:
    from orchestrator.presenters import decode_cursor as decode

    return decode(text, option="--cursor")


def _resource_key(text: str, what: str) -> ResourceKey:
    from orchestrator.intent import ResourceKey

    try:
        return ResourceKey.parse(text)
    except ValueError as exc:
        raise BadInput(f"{what}: {exc}") from None


@intents_app.command("list")
def intents_list(
    agent: Annotated[str | None, typer.Option(help="Submitted by this agent.")] = None,
    status: Annotated[str | None, typer.Option(help="With this status.")] = None,
    env: Annotated[str | None, typer.Option("--env", help="In this environment.")] = None,
    tenant: Annotated[str | None, typer.Option(help="For this tenant.")] = None,
    target: Annotated[str | None, typer.Option(help="Changing this resource (KIND/NAME).")] = None,
    trace: Annotated[str | None, typer.Option(help="With this trace id.")] = None,
    caused_by: Annotated[
        str | None, typer.Option("--caused-by", help="Caused by this intent (its children).")
    ] = None,
    reason: Annotated[
        str | None, typer.Option(help="With a reason containing this text (case-insensitive).")
    ] = None,
    since: Annotated[str | None, typer.Option(help="Received since (10m, 2h, or a timestamp).")] = None,
    until: Annotated[
        str | None, typer.Option(help="Received before (10m ago, 2h ago, or a timestamp).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="At most this many, newest first.")] = 100,
    cursor: Annotated[
        str | None, typer.Option(help="Continue after the last page (printed as 'apx: more: --cursor …').")
    ] = None,
    output: Annotated[Output, typer.Option("-o", "--output", help="table, json or csv.")] = Output.table,
    server: ServerOption = None,
    home: HomeOption = None,
) -> None:
    """List intents, newest first, a page at a time."""
    from orchestrator.decision import Status
    from orchestrator.records import IntentQuery

    try:
        wanted = Status(status) if status else None
    except ValueError:
        raise BadInput(f"--status {status!r}: use one of {', '.join(s.value for s in Status)}") from None
    now = datetime.now(UTC)
    query = IntentQuery(
        agent=agent,
        status=wanted,
        environment=env,
        tenant=tenant,
        target=str(_resource_key(target, "--target")) if target else None,
        trace_id=trace,
        caused_by=caused_by,
        reason=reason,
        since=parse_since(since, now=now) if since else None,
        until=parse_since(until, now=now, option="--until") if until else None,
        before_seq=decode_cursor(cursor) if cursor is not None else None,
        # One more than shown: whether there is a next page, without counting.
        limit=limit + 1,
    )
    remote = _remote(server)
    if remote is not None:
        # The options were checked above; the server reads durations against its own clock.
        params = {
            "agent": agent,
            "status": status,
            "env": env,
            "tenant": tenant,
            "target": query.target,
            "trace": trace,
            "caused_by": caused_by,
            "reason": reason,
            "since": since,
            "until": until,
            "limit": limit,
            "cursor": cursor,
        }
        with remote:
            page = remote.get("/v1/intents", params)
        rows = list(page["items"])
        more = f"apx: more: --cursor {page['next_cursor']}" if page.get("next_cursor") else None
    else:
        application = _app(home)
        views = application.store.query(query)
        more = f"apx: more: --cursor {encode_cursor(views[limit - 1].seq)}" if len(views) > limit else None
        rows = [_row(v) for v in views[:limit]]
    if output is Output.json:
        _out(json.dumps(rows, indent=2))
    elif output is Output.csv:
        from orchestrator.presenters import ROW_FIELDS

        writer = csv.DictWriter(sys.stdout, fieldnames=list(ROW_FIELDS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        _table(rows)
        if more:
            _out(more)
        return
    if more:
        # stdout stays exactly the JSON array or CSV that scripts parse.
        typer.echo(more, err=True)


def _row(view: IntentView) -> dict[str, Any]:
    from orchestrator.presenters import intent_row

    return intent_row(view)


def _table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    from orchestrator.presenters import ROW_FIELDS as _ROW_FIELDS

    table = Table(show_lines=False)
    for name in _ROW_FIELDS:
        table.add_column(name, overflow="fold", max_width=60 if name == "reason" else None)
    for row in rows:
        table.add_row(*(str(row[k]) for k in _ROW_FIELDS))
    Console(width=200).print(table)
    if not rows:
        _out("no intents match")


@intents_app.command("show")
def intents_show(
    intent_id: Annotated[str, typer.Argument(metavar="ID", help="The intent id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    server: ServerOption = None,
    home: HomeOption = None,
) -> None:
    """Show one intent: the intent, its timeline, checks, blast radius, commit or PR, causes and effects."""
    remote = _remote(server)
    if remote is not None:
        from orchestrator.remote import path_segment

        with remote:
            detail = remote.get(f"/v1/intents/{path_segment(intent_id)}")
    else:
        from orchestrator.presenters import view_json

        application = _app(home)
        view = application.store.get(intent_id)
        if view is None:
            raise NotFound(f"no intent {intent_id!r}")
        detail = view_json(application.store, view)
    if as_json:
        _out(json.dumps(detail, indent=2))
        return
    _print_intent(detail)


def _print_intent(detail: dict[str, Any]) -> None:
    """``apx intents show`` as text, from its JSON (``presenters.view_json`` or the API's)."""
    import yaml

    from orchestrator.decision import Decision
    from orchestrator.presenters import MAX_CHILDREN

    intent_id = detail["id"]
    parents, children = detail.get("parents") or [], detail.get("children") or []
    _out(f"intent {intent_id}  ({detail['status']})")
    _out(f"  agent: {detail['agent']}   tenant: {detail['tenant']}   environment: {detail['environment']}")
    _out(f"  trace: {detail['trace_id']}   base revision: {detail['base_revision'][:12]}")
    if parents:
        _out("caused by (nearest first):")
        for parent in parents:
            _out(f"  {_brief_text(parent)}")
    if children:
        _out("caused (oldest first):")
        for child in children:
            _out(f"  {_brief_text(child)}")
        if len(children) >= MAX_CHILDREN:
            _out(f"  … and more: apx intents list --caused-by {intent_id}")
    if detail.get("claimed_by"):
        _out(f"worker: {detail['claimed_by']}")
    _out("timeline:")
    for event in detail.get("timeline") or []:
        tail = f"  {event['reasons'][0]}" if event.get("reasons") else ""
        at = datetime.fromisoformat(event["at"]).isoformat(timespec="milliseconds")
        _out(f"  {at}  {event['status']}{tail}")
    radius = detail.get("blast_radius")
    if radius:
        _out("blast radius:")
        for line in _blast_lines(radius):
            _out(f"  {line}")
    if detail.get("decision"):
        decision = Decision.model_validate(detail["decision"])
        _print_decision(decision)
        _print_diffs(decision)
    if detail.get("pruned_at"):
        pruned_at = datetime.fromisoformat(detail["pruned_at"]).isoformat(timespec="seconds")
        _out(
            f"intent: payload pruned by retention at {pruned_at}; "
            f"its digest {detail.get('payload_digest')} is in the audit log (apx audit export)"
        )
        return
    _out("intent:")
    _out(yaml.safe_dump(detail["intent"], sort_keys=False).rstrip("\n"))


def _brief_text(brief: dict[str, Any]) -> str:
    if brief["status"] is None:
        return f"{brief['id']}  (not in the intent log)"
    return f"{brief['id']}  {brief['agent']}  {brief['status']}  {brief['received_at']}"


def _blast_lines(radius: dict[str, Any]) -> list[str]:
    """The decision's blast radius, one line per fact, whatever keys this version of apx recorded."""
    lines = []
    for key, value in radius.items():
        if isinstance(value, dict):
            lines.append(f"{key}: " + ", ".join(f"{k}={_compact(v)}" for k, v in value.items()))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"{key}:")
            lines += ["  " + ", ".join(f"{k}={_compact(v)}" for k, v in item.items()) for item in value]
        else:
            lines.append(f"{key}: {_compact(value)}")
    return lines


def _compact(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(_compact(v) if isinstance(v, float) else str(v) for v in value) or "-"
    return json.dumps(value, ensure_ascii=False, default=str)


@intents_app.command("replay")
def intents_replay(
    intent_id: Annotated[str, typer.Argument(metavar="ID", help="The intent id.")],
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Replay under this bundle instead of the one in force.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print both decisions as JSON.")] = False,
    home: HomeOption = None,
) -> None:
    """Re-run validation and policy on a recorded intent, against the revision it was
    decided on; apply nothing; show what would differ. Exit 0 if nothing differs, 1 if it does."""
    application = _app(home, policy_bundle=policy)
    recorded, replayed = application.orchestrator.replay(intent_id)
    differences = _differences(recorded, replayed)
    if as_json:
        _out(
            json.dumps(
                {
                    "recorded": recorded.model_dump(mode="json"),
                    "replayed": replayed.model_dump(mode="json"),
                    "differences": differences,
                },
                indent=2,
            )
        )
    else:
        _out(f"recorded: {recorded.status.value} under {recorded.policy_version}")
        _out(f"replayed: {replayed.status.value} under {replayed.policy_version} (nothing applied)")
        for line in differences or ["no difference"]:
            _out(f"  {line}")
    raise typer.Exit(1 if differences else 0)


def _differences(recorded: Decision, replayed: Decision) -> list[str]:
    out = []
    if recorded.status is not replayed.status:
        out.append(f"status: {recorded.status.value} → {replayed.status.value}")
    before = {c.name: c for c in recorded.checks}
    after = {c.name: c for c in replayed.checks}
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old is None or new is None or old.passed != new.passed or old.messages != new.messages:
            out.append(f"check {name}: {_check_text(old)} → {_check_text(new)}")
    gone = [r for r in recorded.reasons if r not in replayed.reasons]
    came = [r for r in replayed.reasons if r not in recorded.reasons]
    out += [f"reason no longer given: {r}" for r in gone] + [f"new reason: {r}" for r in came]
    return out


def _check_text(check: Any) -> str:
    if check is None:
        return "(not run)"
    state = "pass" if check.passed else "FAIL"
    return f"{state} {'; '.join(check.messages)}" if check.messages else state


class BlameOutput(StrEnum):
    table = "table"
    json = "json"


@intents_app.command("blame")
def intents_blame(
    resource: Annotated[
        str, typer.Argument(metavar="KIND/NAME", help="The resource, e.g. WorkerPool/checkout.")
    ],
    field: Annotated[
        str | None,
        typer.Option(help="Only this field, e.g. spec.replicas or spec.plans[0].rateLimit.rps."),
    ] = None,
    env: Annotated[str | None, typer.Option("--env", help="Only in this environment.")] = None,
    output: Annotated[BlameOutput, typer.Option("-o", "--output", help="table or json.")] = BlameOutput.table,
    home: HomeOption = None,
) -> None:
    """Which intents changed a resource (or one field of it) over time, oldest first,
    and where agents fought over a value (A→B→A)."""
    from orchestrator.blame import blame, parse_field_path

    key = _resource_key(resource, "KIND/NAME")
    path: FieldPath | None = None
    if field is not None:
        try:
            path = parse_field_path(field)
        except ValueError as exc:
            raise BadInput(f"--field: {exc}") from None
    application = _app(home)
    if env is not None and env not in application.settings.environments:
        known = ", ".join(application.settings.environments)
        raise BadInput(f"--env {env!r}: not an environment in apx.yaml ({known})")
    lines = blame(_landed(application, key, env), path=path)
    if output is BlameOutput.json:
        _out(json.dumps([_blame_row(line, field=field is not None) for line in lines], indent=2))
        return
    if not lines:
        what = f"{field} of {key}" if field else str(key)
        _out(f"no landed intent changed {what}" + (f" in {env}" if env else ""))
        return
    _blame_table(lines, key=key, field=field)


def _landed(application: App, key: ResourceKey, env: str | None) -> list[Landed]:
    """Every intent whose commit is on an environment branch and targets ``key``, with the
    resource's text at its commit and at the commit's parent (what it changed)."""
    from orchestrator.blame import LANDED, Landed
    from orchestrator.errors import RepoError
    from orchestrator.records import IntentQuery

    views: list[IntentView] = []
    for status in sorted(LANDED):
        before_seq: int | None = None
        while True:
            page = application.store.query(
                IntentQuery(target=str(key), environment=env, status=status, before_seq=before_seq, limit=500)
            )
            views += page
            if len(page) < 500:
                break
            before_seq = page[-1].seq
    repo = application.repo
    out: list[Landed] = []
    for view in sorted(views, key=lambda v: v.seq):
        decision = view.decision
        if decision is None or decision.commit is None:
            continue
        try:
            parent = repo.parent(decision.commit)
            before = repo.read(parent).files.get(key.path) if parent else None
            after = repo.read(decision.commit).files.get(key.path)
            missing = False
        except RepoError:  # e.g. a commit lost to a force-push: show the gap, not an error
            before = after = None
            missing = True
        out.append(
            Landed(
                intent_id=view.record.id,
                agent=view.record.agent,
                status=view.status,
                environment=view.record.environment,
                at=decision.decided_at or view.record.received_at,
                commit=decision.commit,
                before=before,
                after=after,
                missing=missing,
            )
        )
    return out


def _value_text(value: Any, width: int = 40) -> str:
    from orchestrator.blame import ABSENT

    if value is ABSENT:
        return "(absent)"
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def _json_value(value: Any) -> Any:
    from orchestrator.blame import ABSENT

    return None if value is ABSENT else value


def _blame_row(line: BlameLine, *, field: bool) -> dict[str, Any]:
    landed = line.landed
    row: dict[str, Any] = {
        "at": landed.at.isoformat(),
        "intent_id": landed.intent_id,
        "agent": landed.agent,
        "status": landed.status.value,
        "environment": landed.environment,
        "commit": landed.commit,
        "missing": landed.missing,
        "changes": [
            {"field": c.field, "before": _json_value(c.before), "after": _json_value(c.after)}
            for c in line.changes
        ],
        "fights": [
            {"field": f.field, "value": _json_value(f.value), "undoes": f.undoes, "agent": f.agent}
            for f in line.fights
        ],
    }
    if field:
        change = line.changes[0] if line.changes else None
        row["before"] = _json_value(change.before) if change else None
        row["after"] = _json_value(change.after) if change else None
        row["fight"] = row["fights"][0] if row["fights"] else None
    return row


def _blame_table(lines: list[BlameLine], *, key: ResourceKey, field: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{key}" + (f"  {field}" if field else ""), title_justify="left")
    for name in ("time", "intent", "agent", "status", "env", "commit", "old → new" if field else "changes"):
        table.add_column(name, overflow="fold")
    table.add_column("fight", overflow="fold", max_width=60)
    fights = 0
    for line in lines:
        landed = line.landed
        if landed.missing:
            change = "(commit not in the config repo)"
        else:
            shown = [
                f"{'' if field else c.field + ' '}{_value_text(c.before)} → {_value_text(c.after)}"
                for c in line.changes[:5]
            ]
            extra = len(line.changes) - len(shown)
            change = "\n".join(shown + ([f"(+{extra} more)"] if extra > 0 else []))
        fight = "\n".join(
            f"FIGHT: {landed.agent} sets {f.field} back to {_value_text(f.value)}, "
            f"undoing {f.agent} ({f.undoes})"
            for f in line.fights
        )
        fights += bool(line.fights)
        table.add_row(
            landed.at.isoformat(timespec="seconds"),
            landed.intent_id,
            landed.agent,
            landed.status.value,
            landed.environment,
            landed.commit[:12],
            change,
            fight,
        )
    Console(width=200).print(table)
    if fights:
        _out(f"{fights} change(s) set a value back that another agent had changed: agents are fighting")


# -- policy and schema ---------------------------------------------------------------

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


@app.command()
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


# -- breakers ------------------------------------------------------------------------


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


# -- rollback ------------------------------------------------------------------------


@app.command()
def rollback(
    intent_id: Annotated[str, typer.Argument(metavar="ID", help="The applied or merged intent to undo.")],
    by: Annotated[str, typer.Option("--by", envvar="USER", help="Who asks for it (recorded).")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the rollback's rationale).")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as one JSON object.")] = False,
    home: HomeOption = None,
) -> None:
    """Undo an applied or merged intent as a new signed commit (a PR in a pr environment).

    Refused, with the reason, when later changes to the same fields make the revert unsafe.
    """
    application = _app(home)
    _finish(application, application.orchestrator.rollback(intent_id, by=by, reason=reason), as_json)


# -- worker --------------------------------------------------------------------------


@app.command()
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


@app.command()
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


# -- principals ----------------------------------------------------------------------

principals_app = typer.Typer(
    help="API tokens: who may call `apx serve`, with which role, for which tenants.", no_args_is_help=True
)
app.add_typer(principals_app, name="principals")


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


@notify_app.command("deliver")
def notify_deliver(home: HomeOption = None) -> None:
    """Post the webhook notifications that are due now (retries follow their backoff)."""
    application = _app(home)
    delivered = application.deliver_notifications()
    _out(f"delivered {delivered} notifications; {application.outbox.pending_count()} still pending")


# -- canary --------------------------------------------------------------------------


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


# -- prs -----------------------------------------------------------------------------

ByOption = Annotated[
    str | None,
    typer.Option(
        "--by",
        envvar="USER",
        help="The human reviewer (recorded). With --server the token's principal is recorded instead.",
        show_default=False,
    ),
]
PrRef = Annotated[str, typer.Argument(metavar="REF", help="The PR id or its intent's id.")]


@prs_app.command("list")
def prs_list(
    status: Annotated[str, typer.Option(help="open, merged, rejected, expired or all.")] = "open",
    env: Annotated[str | None, typer.Option("--env", help="In this environment.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    server: ServerOption = None,
    home: HomeOption = None,
) -> None:
    """PRs waiting for review (or with --status, the others), newest first."""
    if status not in ("open", "merged", "rejected", "expired", "all"):
        raise BadInput(f"--status {status!r}: use open, merged, rejected, expired or all")
    remote = _remote(server)
    if remote is not None:
        with remote:
            prs: list[dict[str, Any]] = remote.get("/v1/prs", {"status": status, "env": env})
    else:
        application = _app(home)
        application.reviews.expire_due()
        found = application.store.pull_requests(status=None if status == "all" else status, environment=env)
        prs = [_pr_json(application, pr) for pr in found]
    if as_json:
        _out(json.dumps(prs, indent=2))
        return
    if not prs:
        _out(f"no {'' if status == 'all' else status + ' '}PRs")
    for pr in prs:
        expires = pr.get("expires_at")
        due = (
            f", expires {datetime.fromisoformat(expires).isoformat(timespec='minutes')}"
            if pr["status"] == "open" and expires
            else ""
        )
        _out(
            f"{pr['id']}  {pr['status']:<8} {pr['environment']}/{pr['tenant']}  {pr['agent']}  "
            f"{' '.join(pr.get('targets') or [])}  approvals {len(pr['approvals'])}/{pr['required']}{due}"
        )


@prs_app.command("show")
def prs_show(
    ref: PrRef,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    server: ServerOption = None,
    home: HomeOption = None,
) -> None:
    """Everything a reviewer needs: diff, checks, blast radius, policy, rationale, causal chain, rollback."""
    remote = _remote(server)
    if remote is not None:
        with remote:
            pr = _remote_pr(remote, ref)
    else:
        application = _app(home)
        found = application.store.pull_request(ref)
        if found is None:
            raise NotFound(f"there is no PR {ref!r} (give the PR id or its intent's id)")
        pr = _pr_json(application, found)
    if as_json:
        _out(json.dumps(pr, indent=2))
        return
    _print_pr(pr)


def _print_pr(pr: dict[str, Any]) -> None:
    """``apx prs show`` as text, from its JSON (``presenters.pr_json`` or the API's)."""
    from orchestrator.decision import Decision

    decision = Decision.model_validate(pr["decision"]) if pr.get("decision") else None
    trace = decision.trace_id if decision else "-"
    _out(f"PR {pr['id']}  ({pr['status']})  {pr['branch']} → {pr['base']}  head {pr['head'][:12]}")
    _out(f"  intent {pr['intent_id']} by {pr['agent']} for {pr['tenant']}  trace {trace}")
    publication = pr.get("publication") or {}
    if publication.get("url"):
        _out(f"  review at: {publication['url']}")
    if pr.get("rationale"):
        _out(f"  rationale: {pr['rationale']}")
    if pr.get("caused_by"):
        _out("  caused by: " + " ← ".join(pr["caused_by"]))
    given = pr["approvals"]
    _out(f"  approvals: {len(given)}/{pr['required']}" + (f" ({', '.join(given)})" if given else ""))
    if pr["status"] == "open" and pr.get("expires_at"):
        expires = datetime.fromisoformat(pr["expires_at"]).isoformat(timespec="seconds")
        _out(f"  expires: {expires} (then it counts as rejected)")
    if pr.get("closed_reason"):
        _out(f"  closed: {pr['closed_reason']}")
    for review in pr.get("reviews") or []:
        note = f": {review['comment']}" if review.get("comment") else ""
        at = datetime.fromisoformat(review["at"]).isoformat(timespec="seconds")
        _out(f"  review {at} {review['reviewer']} {review['verdict']} @ {review['head'][:12]}{note}")
    if decision is not None:
        _out(f"  policy: {decision.policy_version}")
        if decision.blast_radius:
            _out("  blast radius: " + ", ".join(f"{k}={v}" for k, v in decision.blast_radius.items() if v))
        _print_decision(decision)
        _print_diffs(decision)


@prs_app.command("approve")
def prs_approve(
    ref: PrRef,
    by: ByOption = None,
    comment: Annotated[str, typer.Option(help="Why (recorded).")] = "",
    server: ServerOption = None,
    home: HomeOption = None,
) -> None:
    """Approve a PR; once it has the approvals its environment needs, re-validate and merge it now."""
    _review(ref, "approve", by=by, comment=comment, server=server, home=home)


@prs_app.command("reject")
def prs_reject(
    ref: PrRef,
    by: ByOption = None,
    comment: Annotated[str, typer.Option(help="Why (recorded, shown to the agent).")] = "",
    server: ServerOption = None,
    home: HomeOption = None,
) -> None:
    """Reject a PR: it is closed and its intent becomes pr_rejected."""
    _review(ref, "reject", by=by, comment=comment, server=server, home=home)


def _review(
    ref: str, verdict: str, *, by: str | None, comment: str, server: str | None, home: Path | None
) -> NoReturn:
    """Approve or reject, in-process or on the server; print what happened. Exit 1 on a merge conflict."""
    remote = _remote(server)
    if remote is not None:
        from orchestrator.remote import path_segment

        with remote:
            response = remote.post(f"/v1/prs/{path_segment(ref)}/{verdict}", {"comment": comment})
            result = response.headers.get("APX-Review-Result", "waiting")
            message = _review_message(_remote_pr(remote, ref), result)
    else:
        if not by:
            raise BadInput("--by is required: who reviews (it defaults to $USER, which is not set)")
        application = _app(home)
        act = application.reviews.approve if verdict == "approve" else application.reviews.reject
        outcome = act(ref, by=by, comment=comment)
        application.audit.checkpoint()
        result, message = outcome.result, outcome.message
    _out(message)
    raise typer.Exit(1 if result == "conflict" else 0)


def _remote_pr(remote: Remote, ref: str) -> dict[str, Any]:
    from orchestrator.remote import path_segment

    found: dict[str, Any] = remote.get(f"/v1/prs/{path_segment(ref)}")
    return found


def _review_message(pr: dict[str, Any], result: str) -> str:
    """What ``apx prs approve`` prints in-process (``review._message``), from the PR's JSON."""
    if result == "waiting":
        given = pr["approvals"]
        return (
            f"PR {pr['id']}: {len(given)} of {pr['required']} approvals ({', '.join(given)}); "
            "waiting for more"
        )
    if result == "merged":
        return f"PR {pr['id']} merged into {pr['base']} as signed commit {pr['merge_commit']}"
    return f"PR {pr['id']} {pr['status']}: {pr['closed_reason']}"


def _pr_json(application: App, pr: Any) -> dict[str, Any]:
    from orchestrator.presenters import pr_json

    required = max(1, application.settings.environments[pr.intent.record.environment].approvals)
    return pr_json(application.store, pr, required=required)


# -- audit ---------------------------------------------------------------------------

KeyOption = Annotated[
    Path | None,
    typer.Option("--key", help="The audit public key (PEM); default: the home's keys/audit_ed25519.pub."),
]


def _public_key(application: App | None, key: Path | None) -> PublicKey:
    from audit.checkpoint import PublicKey
    from audit.log import AuditKeyMissing

    if key is not None:
        try:
            return PublicKey.from_pem(key.read_bytes())
        except (OSError, ValueError) as exc:
            raise BadInput(f"--key {key}: {exc}") from exc
    assert application is not None
    try:
        return application.audit.public_key()
    except AuditKeyMissing as exc:
        raise BadInput(f"{exc}; pass --key") from exc


@audit_app.command("verify")
def audit_verify(
    key: KeyOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    server: ServerOption = None,
    home: HomeOption = None,
) -> None:
    """Recompute the chain and the Merkle tree and check every signed checkpoint.

    Exit 0 when the log is intact, 1 at the first entry or checkpoint that is not.
    With --server the server verifies its log with its own key.
    """
    remote = _remote(server)
    if remote is not None:
        if key is not None:
            raise BadInput("--key is for verifying in-process; with --server the server uses its own key")
        with remote:
            result: dict[str, Any] = remote.get("/v1/audit/verify")
    else:
        application = _app(home)
        report = application.audit.verify(_public_key(application, key))
        finding = report.finding
        result = {
            "ok": report.ok,
            "entries": report.size,
            "root": report.root.hex(),
            "checkpoints": report.checkpoints,
            "signed_up_to": max((cp.size for cp in application.audit.store.checkpoints()), default=0),
            "problem": None
            if finding is None
            else {"kind": finding.kind, "seq": finding.seq, "message": finding.message},
            "notes": report.notes,
        }
    if as_json:
        _out(json.dumps(result))
    elif result["problem"] is None:
        size, covered = result["entries"], result["signed_up_to"]
        _out(f"OK: {size} entries, root {result['root']}, {result['checkpoints']} checkpoints verified")
        if covered < size:
            _out(f"  entries {covered + 1}-{size} are chained but not yet under a signed checkpoint")
        for note in result["notes"]:
            _out(f"  note: {note}")
    else:
        _out(f"TAMPERED: {result['problem']['message']}")
    raise typer.Exit(0 if result["ok"] else 1)


@audit_app.command("prove")
def audit_prove(
    seq: Annotated[int, typer.Argument(metavar="SEQ", help="The entry (counting from 1).")],
    home: HomeOption = None,
) -> None:
    """Print an inclusion proof of entry SEQ against the newest signed checkpoint (JSON)."""
    from audit.proof import dumps

    application = _app(home)
    try:
        proof = application.audit.prove(seq)
    except LookupError as exc:
        raise NotFound(str(exc)) from exc
    _out(dumps(proof))


@audit_app.command("check-proof")
def audit_check_proof(
    file: Annotated[str, typer.Argument(help="A proof from `apx audit prove`, or - for stdin.")],
    key: KeyOption = None,
    home: HomeOption = None,
) -> None:
    """Check an inclusion proof with only the public key. Exit 0 if it holds, 1 if not."""
    from audit.proof import InclusionProof, ProofError, check

    public = _public_key(None if key else _app(home), key)
    try:
        data = json.loads(sys.stdin.read() if file == "-" else Path(file).read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"{file}: not a readable JSON proof ({exc})") from exc
    try:
        proof = InclusionProof.from_json(data)
        entry = check(proof, public)
    except ProofError as exc:
        _out(f"INVALID: {exc}")
        raise typer.Exit(1) from None
    what = " ".join(str(entry[k]) for k in ("action", "intent_id", "subject") if entry.get(k))
    _out(
        f"OK: entry {proof.seq} ({what}, by {entry.get('actor')} at {entry.get('at')}) is in the log "
        f"of {proof.checkpoint.size} entries signed at {proof.checkpoint.at.isoformat()} "
        f"by key {proof.checkpoint.key_id}"
    )


@audit_app.command("export")
def audit_export(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    start: Annotated[int, typer.Option("--from", min=1, help="First entry to export.")] = 1,
    home: HomeOption = None,
) -> None:
    """Write the audit log as JSON lines for a SIEM: header with the public key, entries, checkpoint."""
    application = _app(home)
    if output is None:
        count = application.audit.export(sys.stdout, start=start)
    else:
        with output.open("w", encoding="utf-8") as out:
            count = application.audit.export(out, start=start)
        _out(f"wrote {count} entries to {output}")


@intents_app.command("prune")
def intents_prune(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than", help="Prune payloads of intents decided longer ago (default: retention.payloads)."
        ),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Run retention now: prune old intents' payloads, keeping their rows, digests and audit entries."""
    from orchestrator.durations import format_duration, parse_duration
    from orchestrator.scheduler import prune_payloads

    application = _app(home)
    try:
        keep = parse_duration(older_than) if older_than else application.settings.retention.payloads
    except ValueError as exc:
        raise BadInput(f"--older-than: {exc}") from exc
    if keep is None:
        _out("retention.payloads is null: payloads are kept forever (use --older-than to prune anyway)")
        return
    pruned = prune_payloads(application, older_than=keep)
    _out(f"pruned the payloads of {pruned} intents decided more than {format_duration(keep)} ago")


@audit_app.command("checkpoint")
def audit_checkpoint(home: HomeOption = None) -> None:
    """Sign a checkpoint of the log now (normally made every N entries or T seconds)."""
    application = _app(home)
    made = application.audit.checkpoint(force=True)
    latest = application.audit.store.latest()
    if latest is None:
        _out("the audit log is empty: nothing to sign")
        return
    checkpoint = latest[0]
    verb = "signed" if made is not None else "already signed"
    _out(f"{verb}: {checkpoint.size} entries, root {checkpoint.root.hex()}, at {checkpoint.at.isoformat()}")


# -- dataplane -----------------------------------------------------------------------

dataplane_app = typer.Typer(
    help="Run the reference data plane and read the metrics it publishes.", no_args_is_help=True
)
app.add_typer(dataplane_app, name="dataplane")

if TYPE_CHECKING:
    from datetime import timedelta

    from orchestrator.dataplane.metrics import PoolSummary
    from orchestrator.dataplane.runner import TickReport


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


# -- agents --------------------------------------------------------------------------

agents_app = typer.Typer(
    help="Run the Builder, Optimizer and Security agents on demand (they submit like anyone else).",
    no_args_is_help=True,
)
app.add_typer(agents_app, name="agents")


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


# -- demo ----------------------------------------------------------------------------


@app.command()
def demo(
    home: Annotated[Path, typer.Option("--home", help="Where to make the demo's home.")] = Path(".apx-demo"),
) -> None:
    """Init a fresh home and run example intents through the pipeline, printing each decision."""
    from orchestrator.demo import run_demo

    raise typer.Exit(run_demo(home))


# -- entry point -----------------------------------------------------------------------


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
