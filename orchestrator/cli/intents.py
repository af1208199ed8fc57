"""``apx intents``: list, show, replay, blame and prune the intent log."""

from __future__ import annotations

import csv
import json
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli.common import HomeOption, _app, _out, _print_decision, _print_diffs, parse_since
from orchestrator.cli.remote_mode import ServerOption, _remote
from orchestrator.errors import BadInput, NotFound

if TYPE_CHECKING:
    from orchestrator.blame import BlameLine, FieldPath, Landed
    from orchestrator.bootstrap import App
    from orchestrator.decision import Decision
    from orchestrator.intent import ResourceKey
    from orchestrator.records import IntentView


intents_app = typer.Typer(help="Query the intent log.", no_args_is_help=True)


class Output(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


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
