"""The review page: server-rendered HTML for the humans who approve prod changes.

A browser calls it. ``/login`` takes an API token from ``principals.yaml`` and
keeps it in the ``apx_token`` cookie (HttpOnly, SameSite=Strict): that cookie
is the session. Every other page reads the principal from it and shows and does
only what :func:`orchestrator.authz.authorize` allows, the same rules as the
JSON API, through the same parts of the :class:`~orchestrator.bootstrap.App`
(the intent store, the review flow, the orchestrator's breakers).

Why HTML from the server and no JavaScript: there is no front-end build to keep
working, and the Content-Security-Policy can forbid scripts altogether. So
agent-written text (a rationale, a resource name) cannot run in a reviewer's
browser even if escaping were ever missed. Jinja2 autoescapes everything too.

Cross-site request forgery is stopped twice. SameSite=Strict keeps other sites
from sending the cookie at all. Every form also carries a token, the HMAC of
the session token under a key kept in the home (:func:`_page_key`), and each
POST checks it. A POST without it is refused with an audited 403.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlencode

import jinja2
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from orchestrator import approvals
from orchestrator.api.deps import COOKIE, apx_app, principals, record_refusal
from orchestrator.api.intents import _visible
from orchestrator.authz import Action, authorize
from orchestrator.decision import Decision, Status
from orchestrator.errors import BadInput, Forbidden, NotFound
from orchestrator.intent import MAX_RATIONALE, ResourceKey
from orchestrator.presenters import (
    MAX_CHAIN,
    approvals_of,
    decode_cursor,
    encode_cursor,
    intent_row,
    parse_since,
)
from orchestrator.principals import Principal
from orchestrator.records import BreakerState, IntentQuery, IntentView, PullRequestView
from orchestrator.workers import PIPELINE_LOCK

if TYPE_CHECKING:
    from orchestrator.bootstrap import App

#: Not in /openapi.json: these are pages for people, and the spec is the JSON API's contract.
router = APIRouter(include_in_schema=False)

_HERE = Path(__file__).parent
STATIC = _HERE / "static"
_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

#: A token is ``apx_`` + 43 characters; anything much longer is not one (and is not hashed).
MAX_TOKEN = 200
#: A review comment is recorded with the review and shown to the agent: as long as a rationale
#: may be, the same limit as the JSON API's.
MAX_COMMENT = MAX_RATIONALE
#: Open PRs read for the front page; more than this waiting for review is a problem of its own.
MAX_PRS = 500
#: Intents per page of the intent log, unless ``?limit=`` says otherwise (up to ``MAX_PAGE``).
PAGE_SIZE = 50
MAX_PAGE = 500
#: The key that signs the forms' CSRF tokens, in the home's keys directory (0600).
PAGE_KEY_FILE = "review-page.key"

#: Pages run no scripts, load nothing from elsewhere, and may not be framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Session:
    """Who is logged in, and the CSRF token their forms must carry."""

    principal: Principal
    csrf: str


@dataclass(frozen=True)
class Banner:
    """What the last action led to, shown at the top of the page."""

    #: ``merged``, ``waiting``, ``rejected``, ``expired``, ``conflict``, ``refused``, ``reset`` or ``error``.
    kind: str
    message: str


# -- login, logout, static ---------------------------------------------------------------


@router.get("/login")
def login_form(request: Request) -> Response:
    session = _session(request)
    return _render(request, "login.html", session, error=None)


@router.post("/login")
def login(request: Request, token: Annotated[str, Form()] = "") -> Response:
    """Check the token; on success keep it in the session cookie and go to the pending PRs."""
    token = token.strip()
    principal = principals(request).authenticate(token) if 0 < len(token) <= MAX_TOKEN else None
    if principal is None:
        reason = "that token is not valid (unknown or revoked); ask an admin for one (apx principals add)"
        record_refusal(request, None, "login with an unknown or revoked token")
        return _render(request, "login.html", None, status=401, error=reason)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        path="/",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    session = _session(request)
    if session is not None and not _csrf_ok(session, csrf):
        return _refused(request, session, _CSRF_REASON, 403)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/ui/static/style.css")
def stylesheet() -> FileResponse:
    return FileResponse(STATIC / "style.css", media_type="text/css", headers={"Cache-Control": "max-age=300"})


# -- pull requests -----------------------------------------------------------------------


@router.get("/")
def pending_prs(request: Request, env: str | None = None) -> Response:
    """Every open PR of the principal's tenants, each with everything needed to decide it."""
    session = _session(request)
    if session is None:
        return _to_login(request)
    refused = _authorized(request, session, Action.READ_PRS)
    if refused is not None:
        return refused
    app = apx_app(request)
    found = app.store.pull_requests(status="open", environment=env or None, limit=MAX_PRS)
    visible = [pr for pr in found if session.principal.may_see(pr.intent.record.tenant)]
    prs = [_pr_view(app, session.principal, pr) for pr in visible]
    return _render(request, "prs.html", session, prs=prs, env=env or "", truncated=len(found) >= MAX_PRS)


@router.get("/ui/prs/{ref}")
def show_pr(request: Request, ref: str) -> Response:
    """One PR, open or closed (where a reviewer lands after approving)."""
    session = _session(request)
    if session is None:
        return _to_login(request)
    app = apx_app(request)
    pr, refused = _readable_pr(request, session, app, ref)
    if refused is not None:
        return refused
    assert pr is not None
    return _render(request, "pr.html", session, pr=_pr_view(app, session.principal, pr), banner=None)


@router.post("/ui/prs/{ref}/approve")
def approve_pr(
    request: Request, ref: str, csrf: Annotated[str, Form()] = "", comment: Annotated[str, Form()] = ""
) -> Response:
    return _review(request, ref, "approve", csrf=csrf, comment=comment)


@router.post("/ui/prs/{ref}/reject")
def reject_pr(
    request: Request, ref: str, csrf: Annotated[str, Form()] = "", comment: Annotated[str, Form()] = ""
) -> Response:
    return _review(request, ref, "reject", csrf=csrf, comment=comment)


def _review(request: Request, ref: str, verdict: str, *, csrf: str, comment: str) -> Response:
    """Approve or reject as the logged-in human, then show the PR with what happened.

    The approval rules that concern the person (an agent's name, the submitter)
    are checked here first, so such a refusal is an audited 403 like every
    other; what concerns the PR (already merged, branch moved) comes back from
    the review flow as a 409.
    """
    session = _session(request)
    if session is None:
        return _unauthenticated(request)
    if not _csrf_ok(session, csrf):
        return _refused(request, session, _CSRF_REASON, 403)
    refused = _authorized(request, session, Action.REVIEW)
    if refused is not None:
        return refused
    app = apx_app(request)
    pr = app.store.pull_request(ref)
    if pr is None:
        return _not_found(request, session, f"there is no PR {ref!r}")
    tenant = pr.intent.record.tenant
    refused = _authorized(request, session, Action.REVIEW, tenant=tenant)
    if refused is not None:
        return refused
    name = session.principal.name
    why = approvals.refusal(name, submitter=pr.intent.record.agent, agents=app.store.agents())
    if why is not None:
        return _refused(request, session, why, 403, tenant=tenant)
    comment = comment.strip()
    if len(comment) > MAX_COMMENT:
        banner = Banner("refused", f"the comment is {len(comment)} characters long; at most {MAX_COMMENT}")
        return _render(
            request, "pr.html", session, status=422, pr=_pr_view(app, session.principal, pr), banner=banner
        )
    act = app.reviews.approve if verdict == "approve" else app.reviews.reject
    try:
        with PIPELINE_LOCK:  # as the JSON API's review actions: one resume of a review at a time
            outcome = act(pr.id, by=name, comment=comment)
    except (BadInput, NotFound) as exc:
        after = app.store.pull_request(pr.id) or pr
        return _render(
            request,
            "pr.html",
            session,
            status=409,
            pr=_pr_view(app, session.principal, after),
            banner=Banner("refused", exc.message),
        )
    app.audit.checkpoint()
    banner = Banner(outcome.result, outcome.message)
    return _render(
        request, "pr.html", session, pr=_pr_view(app, session.principal, outcome.pr), banner=banner
    )


# -- the intent log ----------------------------------------------------------------------


@router.get("/ui/intents")
def intent_log(
    request: Request,
    agent: str = "",
    status: str = "",
    env: str = "",
    target: str = "",
    since: str = "",
    tenant: str = "",
    limit: str = "",
    cursor: Annotated[str, Query()] = "",
) -> Response:
    """The intent log of the principal's tenants, newest first, filtered, a page at a time.

    Filters arrive as free text from a form, so each is checked here and a bad
    one is named on the page (422) rather than answered with JSON.
    """
    session = _session(request)
    if session is None:
        return _to_login(request)
    given = {"agent": agent, "status": status, "env": env, "target": target, "since": since}
    filters = {k: v.strip() for k, v in {**given, "tenant": tenant, "limit": limit}.items()}
    refused = _authorized(request, session, Action.READ_INTENTS, tenant=filters["tenant"] or None)
    if refused is not None:
        return refused
    page: dict[str, Any] = {"filters": filters, "statuses": [s.value for s in Status], "max_page": MAX_PAGE}
    try:
        query = _intent_query(filters, cursor.strip())
    except BadInput as exc:
        return _render(
            request, "intents.html", session, status=422, rows=[], error=exc.message, next_url=None, **page
        )
    size = query.limit - 1
    views = _visible(apx_app(request).store, query, session.principal)
    next_url = None
    if len(views) > size:
        kept = {k: v for k, v in filters.items() if v}
        next_url = "/ui/intents?" + urlencode({**kept, "cursor": encode_cursor(views[size - 1].seq)})
    rows = [_intent_row(v) for v in views[:size]]
    return _render(request, "intents.html", session, rows=rows, error=None, next_url=next_url, **page)


def _intent_query(filters: dict[str, str], cursor: str) -> IntentQuery:
    """The store query for the page's filters; BadInput naming the first filter that is not valid."""
    try:
        status = Status(filters["status"]) if filters["status"] else None
    except ValueError:
        known = ", ".join(s.value for s in Status)
        raise BadInput(f"status {filters['status']!r}: use one of {known}") from None
    target = None
    if filters["target"]:
        try:
            target = str(ResourceKey.parse(filters["target"]))
        except ValueError as exc:
            raise BadInput(f"target: {exc}") from None
    size = PAGE_SIZE
    if filters["limit"]:
        if not filters["limit"].isdigit() or not 1 <= int(filters["limit"]) <= MAX_PAGE:
            raise BadInput(f"limit {filters['limit']!r}: give a number of intents from 1 to {MAX_PAGE}")
        size = int(filters["limit"])
    since = filters["since"]
    return IntentQuery(
        agent=filters["agent"] or None,
        status=status,
        environment=filters["env"] or None,
        tenant=filters["tenant"] or None,
        target=target,
        since=parse_since(since, now=datetime.now(UTC), option="since") if since else None,
        before_seq=decode_cursor(cursor) if cursor else None,
        # One more than shown: whether there is a next page, without counting.
        limit=size + 1,
    )


def _intent_row(view: IntentView) -> dict[str, Any]:
    """``apx intents list``'s row, with the targets as a list and the commit and PR apart (links)."""
    d = view.decision
    return {
        **intent_row(view),
        "targets": view.record.targets,
        "commit": (d.commit or "")[:12] if d and d.commit and not d.pr else "",
        "pr": d.pr.id if d and d.pr else "",
    }


# -- breakers ---------------------------------------------------------------------------


@router.get("/ui/breakers")
def breakers(request: Request) -> Response:
    """Open breakers of the principal's tenants, with a reset button for engineers and admins."""
    session = _session(request)
    if session is None:
        return _to_login(request)
    refused = _authorized(request, session, Action.READ_BREAKERS)
    if refused is not None:
        return refused
    return _breakers_page(request, session, banner=None)


@router.post("/ui/breakers/{tenant}/{environment}/reset")
def reset_breaker(
    request: Request, tenant: str, environment: str, csrf: Annotated[str, Form()] = ""
) -> Response:
    session = _session(request)
    if session is None:
        return _unauthenticated(request)
    if not _csrf_ok(session, csrf):
        return _refused(request, session, _CSRF_REASON, 403)
    refused = _authorized(request, session, Action.RESET_BREAKER, tenant=tenant)
    if refused is not None:
        return refused
    app = apx_app(request)
    known = environment in app.settings.environments
    state = app.store.breaker(tenant=tenant, environment=environment) if known else None
    if state is None:
        return _not_found(request, session, f"there is no breaker for {tenant}/{environment}")
    if not state.open:
        return _breakers_page(
            request, session, banner=Banner("refused", f"{tenant}/{environment} is not open"), status=409
        )
    app.orchestrator.reset_breaker(tenant=tenant, environment=environment, by=session.principal.name)
    app.audit.checkpoint()
    message = f"{tenant}/{environment} closed by {session.principal.name}; its deploy count restarts now"
    return _breakers_page(request, session, banner=Banner("reset", message))


def _breakers_page(
    request: Request, session: Session, *, banner: Banner | None, status: int = 200
) -> Response:
    mine = [s for s in apx_app(request).store.breakers() if session.principal.may_see(s.tenant)]
    rows = [_breaker_row(session.principal, s) for s in mine]
    return _render(
        request,
        "breakers.html",
        session,
        status=status,
        open=[r for r in rows if r["open"]],
        closed=[r for r in rows if not r["open"]],
        banner=banner,
    )


def _breaker_row(principal: Principal, state: BreakerState) -> dict[str, Any]:
    return {
        "tenant": state.tenant,
        "environment": state.environment,
        "open": state.open,
        "opened_at": _when(state.opened_at),
        "closes_at": _when(state.closes_at),
        "reason": state.reason,
        "tripped_by": state.tripped_by or "",
        "reset_at": _when(state.reset_at),
        "reset_by": state.reset_by or "",
        "can_reset": state.open and _allows(principal, Action.RESET_BREAKER, tenant=state.tenant),
    }


# -- what a PR looks like on the page ------------------------------------------------------


def _pr_view(app: App, principal: Principal, pr: PullRequestView) -> dict[str, Any]:
    """Everything the PR template shows, as plain values (the template does no lookups)."""
    record, decision = pr.intent.record, pr.intent.decision
    environment = app.settings.environments.get(record.environment)
    return {
        "id": pr.id,
        "status": pr.status,
        "intent_id": record.id,
        "intent_status": pr.intent.status.value,
        "agent": record.agent,
        "tenant": record.tenant,
        "environment": record.environment,
        "trace_id": record.trace_id,
        "branch": pr.branch,
        "base": pr.base,
        "head": pr.head[:12],
        "created_at": _when(pr.created_at),
        "expires_at": _when(pr.expires_at) if pr.status == "open" else "",
        "targets": record.targets,
        "rationale": str((record.document.get("spec") or {}).get("rationale") or ""),
        "chain": _chain(app, principal, record.caused_by),
        "approvals": approvals_of(pr),
        "required": max(1, environment.approvals) if environment else 1,
        "reviews": [
            {
                "at": _when(r.at),
                "reviewer": r.reviewer,
                "verdict": r.verdict,
                "head": r.head[:12],
                "comment": r.comment,
                "stale": r.head != pr.head,
            }
            for r in pr.reviews
        ],
        "merge_commit": pr.merge_commit or "",
        "closed_reason": pr.closed_reason or "",
        "review_url": (pr.publication or {}).get("url") or "",
        "decision": _decision_view(decision),
        "can_review": pr.status == "open" and _allows(principal, Action.REVIEW, tenant=record.tenant),
    }


def _decision_view(decision: Decision | None) -> dict[str, Any] | None:
    if decision is None:
        return None
    return {
        "reasons": decision.reasons,
        "warnings": decision.warnings,
        "checks": [{"name": c.name, "passed": c.passed, "messages": c.messages} for c in decision.checks],
        "blast": blast_lines(decision.blast_radius or {}),
        "policy_version": decision.policy_version or "",
        "diffs": [{"path": path, "lines": diff_lines(text)} for path, text in decision.diff.items()],
        "rollback": decision.rollback.git if decision.rollback else "",
    }


def diff_lines(diff: str) -> list[tuple[str, str]]:
    """(css class, text) per line of a unified diff: ``add``, ``del``, ``hunk``, ``file`` or ``ctx``."""
    lines = []
    for line in diff.rstrip("\n").split("\n"):
        if line.startswith(("+++", "---")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        lines.append((kind, line))
    return lines


def blast_lines(radius: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, value) per fact of a blast radius, whatever keys this version of apx recorded."""
    lines = []
    for key, value in radius.items():
        if isinstance(value, dict):
            lines.append((key, ", ".join(f"{k}={_compact(v)}" for k, v in value.items())))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            items = (", ".join(f"{k}={_compact(v)}" for k, v in item.items()) for item in value)
            lines.append((key, "; ".join(items)))
        else:
            lines.append((key, _compact(value)))
    return lines


def _compact(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_compact(v) for v in value) or "-"
    if value is None:
        return "-"
    return str(value)


def _chain(app: App, principal: Principal, caused_by: str | None) -> list[dict[str, str]]:
    """The ``causedBy`` ancestors, nearest first, with each one's agent, status and rationale.

    An ancestor of a tenant the principal cannot see is named by id only, and ends the chain.
    """
    chain: list[dict[str, str]] = []
    seen: set[str] = set()
    while caused_by and caused_by not in seen and len(chain) < MAX_CHAIN:
        seen.add(caused_by)
        parent = app.store.get(caused_by)
        if parent is None or not principal.may_see(parent.record.tenant):
            note = "not in the intent log" if parent is None else "another tenant's intent"
            chain.append({"id": caused_by, "agent": "", "status": "", "rationale": "", "note": note})
            break
        spec = parent.record.document.get("spec") or {}
        chain.append(
            {
                "id": parent.record.id,
                "agent": parent.record.agent,
                "status": parent.status.value,
                "rationale": str(spec.get("rationale") or ""),
                "note": "",
            }
        )
        caused_by = parent.record.caused_by
    return chain


def _when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if at else ""


# -- sessions, CSRF, refusals -----------------------------------------------------------

_CSRF_REASON = (
    "the form did not carry this session's CSRF token (a stale page, or a request from another site); "
    "reload the page and try again"
)


def _session(request: Request) -> Session | None:
    token = request.cookies.get(COOKIE)
    if not token or len(token) > MAX_TOKEN:
        return None
    principal = principals(request).authenticate(token)
    if principal is None:
        return None
    request.state.principal = principal
    digest = hmac.new(_page_key(request), token.encode(), hashlib.sha256).hexdigest()
    return Session(principal=principal, csrf=digest)


def _csrf_ok(session: Session, given: str) -> bool:
    return hmac.compare_digest(session.csrf.encode(), given.strip().encode())


def _page_key(request: Request) -> bytes:
    """The CSRF key, read once per server from the home, made on first use.

    Kept in a file rather than in memory so several server processes, and a
    server restarted while a reviewer has the page open, accept each other's forms.
    """
    key: bytes | None = getattr(request.app.state, "page_key", None)
    if key is None:
        key = _load_or_make_key(apx_app(request).settings.keys_dir / PAGE_KEY_FILE)
        request.app.state.page_key = key
    return key


def _load_or_make_key(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return bytes.fromhex(path.read_text().strip())
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "w") as out:
        out.write(key.hex() + "\n")
    return key


def _allows(principal: Principal, action: Action, *, tenant: str | None = None) -> bool:
    try:
        authorize(principal, action, tenant=tenant)
    except Forbidden:
        return False
    return True


def _authorized(
    request: Request, session: Session, action: Action, *, tenant: str | None = None
) -> Response | None:
    """None if the principal may; otherwise the audited 403 page saying which rule refused it."""
    try:
        authorize(session.principal, action, tenant=tenant)
    except Forbidden as exc:
        return _refused(request, session, exc.message, 403, tenant=tenant)
    return None


def _refused(
    request: Request, session: Session | None, reason: str, status: int, *, tenant: str | None = None
) -> Response:
    record_refusal(request, session.principal if session else None, reason, tenant=tenant)
    return _render(request, "error.html", session, status=status, title="Refused", reason=reason)


def _unauthenticated(request: Request) -> Response:
    return _refused(request, None, "log in first: this session has no valid token (unknown or revoked)", 401)


def _not_found(request: Request, session: Session, reason: str) -> Response:
    return _render(request, "error.html", session, status=404, title="Not found", reason=reason)


def _to_login(request: Request) -> Response:
    """A page asked for without a valid session: off to the login form.

    A cookie that no longer authenticates (revoked token) is a refusal, and is audited.
    """
    if request.cookies.get(COOKIE):
        record_refusal(request, None, "the session cookie's token is unknown or revoked")
    return RedirectResponse("/login", status_code=303)


def _readable_pr(
    request: Request, session: Session, app: App, ref: str
) -> tuple[PullRequestView | None, Response | None]:
    refused = _authorized(request, session, Action.READ_PRS)
    if refused is not None:
        return None, refused
    pr = app.store.pull_request(ref)
    if pr is None:
        return None, _not_found(
            request, session, f"there is no PR {ref!r} (give the PR id or its intent's id)"
        )
    refused = _authorized(request, session, Action.READ_PRS, tenant=pr.intent.record.tenant)
    return (None, refused) if refused is not None else (pr, None)


def _render(
    request: Request, name: str, session: Session | None, *, status: int = 200, **context: Any
) -> Response:
    principal = session.principal if session else None
    html = _templates.get_template(name).render(
        principal=principal,
        role=principal.role_text if principal else "",
        tenants=", ".join(sorted(principal.tenants)) if principal else "",
        csrf=session.csrf if session else "",
        can=_capabilities(principal),
        path=request.url.path,
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _capabilities(principal: Principal | None) -> dict[str, bool]:
    """Which navigation links to show (each page still checks on its own)."""
    pages = {"prs": Action.READ_PRS, "intents": Action.READ_INTENTS, "breakers": Action.READ_BREAKERS}
    return {name: principal is not None and _allows(principal, action) for name, action in pages.items()}
