"""``apx prs`` (list, show, approve, reject) and ``apx rollback``: what people do to a change.

Approving and rejecting work in-process or over ``--server``; rollback is in-process only.
``rollback`` carries no decorator: :mod:`orchestrator.cli` registers it, in the
order ``apx --help`` lists the commands.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from orchestrator.cli.common import HomeOption, _app, _finish, _out, _print_decision, _print_diffs
from orchestrator.cli.remote_mode import ServerOption, _remote
from orchestrator.errors import BadInput, NotFound

if TYPE_CHECKING:
    from orchestrator.bootstrap import App
    from orchestrator.remote import Remote


prs_app = typer.Typer(
    help="Review prod PRs: list, show, approve (merges when approvals are met), reject.", no_args_is_help=True
)


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
