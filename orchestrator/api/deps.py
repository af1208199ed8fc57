"""What every endpoint needs: the wired App, and who is calling.

A caller proves who it is with ``Authorization: Bearer <token>`` (agents,
scripts) or the ``apx_token`` cookie (the review page sets it at login:
HttpOnly, SameSite=Strict, so page scripts cannot read it and other sites
cannot send it). Every refusal, 401 or 403, is written to the audit log with
the principal's name (or ``anonymous``) and never the token; refusals of callers
without a valid token are coalesced per client (:class:`AnonymousRefusals`).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Annotated, NoReturn

from fastapi import Depends, HTTPException, Request

from audit.entry import AuditEvent
from orchestrator import logs
from orchestrator.errors import BadInput, InternalError
from orchestrator.intent import NAME_MAX, NAME_RE
from orchestrator.principals import Principal, Principals

if TYPE_CHECKING:
    from orchestrator.bootstrap import App

COOKIE = "apx_token"
REFUSED_ACTION = "api.refused"
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")

log = logs.get_logger("apx.api")


def apx_app(request: Request) -> App:
    app: App = request.app.state.apx
    return app


def principals(request: Request) -> Principals:
    found: Principals = request.app.state.principals
    return found


#: Methods that change nothing: the only ones the JSON API accepts with the cookie alone.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def bearer_token(request: Request) -> str | None:
    """The token from ``Authorization: Bearer …``, else from the ``apx_token`` cookie.

    The cookie is the review page's session. Writes to the JSON API under ``/v1/``
    need the header: a cookie alone is what a forged cross-site request would carry,
    and those endpoints have no CSRF token (the page's forms do, and check it).
    """
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    if request.url.path.startswith("/v1/") and request.method not in SAFE_METHODS:
        return None
    return request.cookies.get(COOKIE) or None


def current_principal(request: Request) -> Principal:
    """The caller, or an audited 401. Also kept on ``request.state.principal`` for refusals."""
    token = bearer_token(request)
    if token is None:
        refuse(request, None, "a bearer token is required (Authorization: Bearer <token>)", 401)
    try:
        principal = principals(request).authenticate(token)
    except BadInput as exc:
        # A hand-edited principals.yaml the server cannot read: nobody gets in, and the
        # caller is not shown the server's path or file contents.
        log.error("api.principals_unreadable", error=exc.message)
        raise InternalError("the server's principals file cannot be read; ask its operator") from exc
    if principal is None:
        refuse(request, None, "the token is not valid (unknown or revoked)", 401)
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def refuse(
    request: Request,
    principal: Principal | None,
    reason: str,
    status: int,
    *,
    tenant: str | None = None,
    code: str | None = None,
) -> NoReturn:
    """Record the refusal in the audit log, then raise the HTTP error with a JSON reason."""
    record_refusal(request, principal, reason, tenant=tenant)
    code = code or ("unauthenticated" if status == 401 else "forbidden")
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    raise HTTPException(status, detail={"code": code, "reason": reason}, headers=headers)


class AnonymousRefusals:
    """Which refusals of callers without a valid token get an audit entry of their own.

    Every refusal of a known principal is audited: it is someone accountable trying
    something. A caller with no valid token is anyone; a flood of them would grow the
    audit chain without bound. So per client address the first such refusal in each
    ``window`` is audited and the rest are counted, and the next audited entry says
    how many there were. The log still gets a line for each. Behind a proxy every
    client is the proxy's address: that only makes the counting coarser.
    """

    def __init__(self, *, window: float = 60.0, clients: int = 10_000) -> None:
        self._window = window
        self._clients = clients
        self._lock = threading.Lock()
        #: client address -> (time of its last audited refusal, refusals not audited since)
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def audit(self, client: str, *, now: float) -> int | None:
        """None: count this refusal, do not audit it. Else audit it, noting that many skipped."""
        with self._lock:
            last = self._seen.get(client)
            if last is not None and now - last[0] < self._window:
                self._seen[client] = (last[0], last[1] + 1)
                return None
            self._seen[client] = (now, 0)
            self._seen.move_to_end(client)
            while len(self._seen) > self._clients:
                self._seen.popitem(last=False)
            return 0 if last is None else last[1]


def record_refusal(
    request: Request, principal: Principal | None, reason: str, *, tenant: str | None = None
) -> None:
    """One ``api.refused`` audit entry: who, which request (method and path), which tenant.

    The path is the only caller-chosen text in the entry; it is cut to printable
    ASCII and 200 characters so it fits the audit entry's one-line rule. The
    reason goes to the log line, not the chain (it is ours, not a fact).
    """
    app = apx_app(request)
    actor = principal.name if principal else "anonymous"
    subject = _UNPRINTABLE.sub("?", f"http:{request.method} {request.url.path}")[:200]
    known_tenant = tenant if tenant and len(tenant) <= NAME_MAX and NAME_RE.match(tenant) else None
    if principal is None:
        client = request.client.host if request.client else "unknown"
        throttle: AnonymousRefusals = request.app.state.anonymous_refusals
        skipped = throttle.audit(client, now=app.clock.now().timestamp())
        if skipped is None:
            log.warning("api.refused", actor=actor, subject=subject, reason=reason, audited=False)
            return
        if skipped:
            subject = f"{subject[:150]} (+{skipped} more from this client, not audited one by one)"
    try:
        app.audit.record(
            [
                AuditEvent(
                    action=REFUSED_ACTION,
                    actor=actor,
                    at=app.clock.now(),
                    tenant=known_tenant,
                    subject=subject,
                )
            ]
        )
    except Exception as exc:  # the request is refused either way; an audit outage must not hide that
        log.error("api.refusal_not_audited", actor=actor, subject=subject, error=str(exc))
    log.warning("api.refused", actor=actor, subject=subject, reason=reason)
