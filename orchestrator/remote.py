"""The HTTP API seen from a client: ``apx --server URL`` and the agents' ``HttpClient``.

The CLI in remote mode must behave like the CLI in-process: the same output and
the same exit codes. So this module turns every HTTP answer back into what the
in-process code would have produced: a :class:`~orchestrator.decision.Decision`,
plain JSON, or one of the exceptions of :mod:`orchestrator.errors`, which
:func:`orchestrator.cli.main` maps to exit codes as usual. It is the one place
that maps HTTP statuses to errors on the client side (the server's is
:mod:`orchestrator.api.errors`):

    401 → Unauthenticated, 403 → Forbidden   "refused: <the server's reason>" (exit 2)
    404 → NotFound                           (exit 2)
    other 4xx (413, 415, 422, …) → BadInput  the server's reason and bad fields (exit 2)
    5xx → InternalError                      (exit 4)
    no answer at all → InternalError         naming the URL (exit 4)

httpx is imported here and nowhere in the CLI's module scope, so ``apx --help``
does not pay for it.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx

from orchestrator.decision import PENDING, Decision, Status
from orchestrator.errors import (
    ApxError,
    BadInput,
    Forbidden,
    InternalError,
    NotFound,
    Unauthenticated,
)

#: Where the token comes from: never a command-line option, which ``ps`` would show.
TOKEN_ENV = "APX_TOKEN"
SERVER_ENV = "APX_SERVER"
#: Per request: connecting, and waiting for an answer. A submit's ``?wait=`` is added on top.
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
#: The server answers ``?wait=`` for at most this long (``orchestrator.api.intents.MAX_WAIT``).
SERVER_MAX_WAIT = 60.0
#: How long ``apx submit --server`` waits for a decision in all, and how often it asks again
#: once the server's own wait ran out (a drain behind a change window can take long).
DECISION_TIMEOUT = 600.0
POLL_EVERY = 1.0


class Remote:
    """One APX server and one token. Use as a context manager, or :meth:`close` it."""

    def __init__(
        self,
        server: str,
        token: str,
        *,
        transport: httpx.BaseTransport | None = None,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self.server = check_server_url(server)
        if not token:
            raise BadInput(
                f"talking to {self.server} needs a token: "
                f"set {TOKEN_ENV} to a token from `apx principals add`"
            )
        self._read_timeout = read_timeout
        self._http = httpx.Client(
            base_url=self.server,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=httpx.Timeout(read_timeout, connect=CONNECT_TIMEOUT),
            transport=transport,
            # A redirect would carry the token to wherever it points.
            follow_redirects=False,
        )

    @classmethod
    def from_environment(cls, server: str) -> Remote:
        """For ``--server URL``: the token from ``APX_TOKEN``."""
        return cls(server, os.environ.get(TOKEN_ENV, "").strip())

    def __enter__(self) -> Remote:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plain requests -----------------------------------------------------------------

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET ``path`` and return its JSON, or raise what the answer means."""
        return self._json(self.request("GET", path, params=params))

    def post(self, path: str, body: Any = None, params: Mapping[str, Any] | None = None) -> httpx.Response:
        """POST ``body`` as JSON; the response when it is a success, else the error it means."""
        return self.request("POST", path, params=params, json=body)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        extra: dict[str, Any] = {}
        if timeout is not None:
            extra["timeout"] = httpx.Timeout(timeout, connect=CONNECT_TIMEOUT)
        try:
            response = self._http.request(method, path, params=query, json=json, **extra)
        except httpx.TimeoutException as exc:
            raise InternalError(f"the APX server at {self.server} did not answer in time ({exc})") from exc
        except httpx.TransportError as exc:
            raise InternalError(f"cannot reach the APX server at {self.server}: {exc}") from exc
        if response.is_success:
            return response
        raise error_for(response, server=self.server)

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise InternalError(
                f"the APX server at {self.server} answered {response.request.url.path} with something "
                f"that is not JSON ({response.headers.get('content-type', 'no content type')})"
            ) from exc

    # -- submitting ---------------------------------------------------------------------

    def submit(
        self, document: Mapping[str, Any], *, wait: bool, timeout: float = DECISION_TIMEOUT
    ) -> Decision:
        """Submit an intent document as the token's agent.

        ``wait``: return the decision, asking the server to wait for it and then
        polling the intent until it is decided or ``timeout`` seconds have passed
        (then the queued decision is returned, as ``--no-wait`` would print it).
        Without ``wait``: the decision as admission left it (queued, or held).
        """
        deadline = time.monotonic() + timeout
        first_wait = min(SERVER_MAX_WAIT, timeout) if wait else None
        response = self.request(
            "POST",
            "/v1/intents",
            params={"wait": _seconds(first_wait) if first_wait else None},
            json=dict(document),
            timeout=self._read_timeout + (first_wait or 0.0),
        )
        body = self._json(response)
        if response.status_code == 200:
            return _decision(body, server=self.server)
        intent_id = body.get("intent_id") if isinstance(body, dict) else None
        if not isinstance(intent_id, str):
            raise InternalError(f"the APX server at {self.server} accepted the intent but sent no intent_id")
        if not wait:
            # What admission said (queued, or held), as in-process --no-wait prints it, even
            # if the server's worker has decided the intent since.
            detail = self.get(f"/v1/intents/{path_segment(intent_id)}")
            return _admitted(
                detail, status=body["status"], reasons=body.get("reasons") or [], server=self.server
            )
        decision = self.decision(intent_id)
        while decision.status in PENDING and time.monotonic() < deadline:
            time.sleep(min(POLL_EVERY, max(0.0, deadline - time.monotonic())))
            decision = self.decision(intent_id)
        return decision

    def decision(self, intent_id: str) -> Decision:
        """The intent's decision as recorded now (one still waiting to be decided has its status only)."""
        detail = self.get(f"/v1/intents/{path_segment(intent_id)}")
        if isinstance(detail, dict) and detail.get("decision") is not None:
            return _decision(detail["decision"], server=self.server)
        return _admitted(detail, status=detail.get("status"), reasons=[], server=self.server)


def _admitted(detail: Any, *, status: Any, reasons: list[str], server: str) -> Decision:
    """A decision that says only what admission said: the intent, its status and reasons."""
    try:
        return Decision(
            intent_id=detail["id"],
            trace_id=detail["trace_id"],
            status=Status(status),
            tenant=detail["tenant"],
            environment=detail["environment"],
            agent=detail["agent"],
            reasons=list(reasons),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InternalError(f"the APX server at {server} sent an intent this apx cannot read: {exc}") from exc


def check_server_url(server: str) -> str:
    """``http(s)://host[:port]`` without a trailing slash, or a BadInput naming the option."""
    text = server.strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
        raise BadInput(f"--server {server!r}: give the server's URL, such as http://127.0.0.1:8700")
    try:
        parts.port  # noqa: B018  (validates the port)
    except ValueError:
        raise BadInput(f"--server {server!r}: the port is not a number from 0 to 65535") from None
    return text


def plain_http_warning(server: str) -> str | None:
    """A warning when ``server`` would get the token in the clear over the network.

    Plain HTTP is fine on a loopback address; elsewhere it is allowed (a private
    network, a TLS-terminating sidecar) but the caller should say so.
    """
    parts = urlsplit(server)
    if parts.scheme == "http" and parts.hostname and not _loopback(parts.hostname):
        return (
            f"{server} is plain HTTP: the token travels unencrypted (use https:// outside trusted networks)"
        )
    return None


def error_for(response: httpx.Response, *, server: str) -> ApxError:
    """The exception an error answer means; its message is the server's reason."""
    status = response.status_code
    reason = reason_of(response)
    if status == 401:
        return Unauthenticated(f"refused: {reason}")
    if status == 403:
        return Forbidden(f"refused: {reason}")
    if status == 404:
        return NotFound(reason)
    if 400 <= status < 500:
        return BadInput(reason)
    return InternalError(f"the APX server at {server} failed ({status}): {reason}")


def reason_of(response: httpx.Response) -> str:
    """The error body's ``reason`` (``orchestrator.api.errors``), with each bad field of a 422."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        reason = body.get("reason")
        if reason is None and isinstance(body.get("detail"), str):
            reason = body["detail"]  # a proxy or a plain Starlette error in front of apx
        fields = body.get("errors")
        if isinstance(fields, list) and len(fields) > 1:
            named = "; ".join(f"{f.get('loc')}: {f.get('msg')}" for f in fields if isinstance(f, dict))
            if named and named not in str(reason):
                reason = f"{reason} ({named})" if reason else named
        if reason:
            return str(reason)
    text = response.text.strip().replace("\n", " ")
    return text[:300] if text else f"HTTP {response.status_code} {response.reason_phrase}"


def _decision(body: Any, *, server: str) -> Decision:
    try:
        return Decision.model_validate(body)
    except ValueError as exc:
        raise InternalError(
            f"the APX server at {server} sent a decision this apx cannot read: {exc}"
        ) from exc


def _seconds(value: float) -> str:
    return f"{value:g}"


def path_segment(text: str) -> str:
    """An id as one path segment: a ``/`` or ``..`` in it must not reach another endpoint."""
    from urllib.parse import quote

    if text.strip(".") == "":
        raise BadInput(f"{text!r} is not an id")
    return quote(text, safe="")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
