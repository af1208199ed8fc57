"""The one place that turns errors into HTTP responses.

Every error body has the same shape, ``{"code", "reason"}`` (plus ``errors``,
one per bad field, for a 422), so a client reads one sentence and a machine
reads one code. The mapping follows :mod:`orchestrator.errors`: bad input 422,
not found 404, unauthenticated 401, forbidden 403 (both audited), internal
errors 500 with a reason and never a stack trace. A malformed request never
reaches a 500: FastAPI's own validation errors and Starlette's HTTP errors are
rendered here too.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator import logs
from orchestrator.api.deps import record_refusal
from orchestrator.errors import ApxError, BadInput, Forbidden, InternalError, NotFound, Unauthenticated

log = logs.get_logger("apx.api")


class FieldError(BaseModel):
    """One field that failed validation: where (``body.spec.changes.0``) and why."""

    loc: str
    msg: str


class ErrorBody(BaseModel):
    code: str
    reason: str
    errors: list[FieldError] | None = None


#: For ``responses=`` on routers, so /openapi.json documents the error shape.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No token, or an unknown or revoked one."},
    403: {"model": ErrorBody, "description": "The principal's role or tenants do not allow it."},
    404: {"model": ErrorBody, "description": "No such object."},
    422: {"model": ErrorBody, "description": "Bad input; `errors` names each bad field."},
}


def status_of(exc: ApxError) -> int:
    if isinstance(exc, BadInput):
        return 422
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Unauthenticated):
        return 401
    if isinstance(exc, Forbidden):
        return 403
    return 500


def body(code: str, reason: str, errors: list[FieldError] | None = None) -> dict[str, Any]:
    return ErrorBody(code=code, reason=reason, errors=errors).model_dump(exclude_none=True)


def install(api: FastAPI) -> None:
    """Register the handlers on ``api``."""

    @api.exception_handler(ApxError)
    async def _apx_error(request: Request, exc: ApxError) -> JSONResponse:
        status = status_of(exc)
        headers = None
        if isinstance(exc, Forbidden | Unauthenticated):
            principal = getattr(request.state, "principal", None)
            await run_in_threadpool(record_refusal, request, principal, exc.message)
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if isinstance(exc, InternalError) or status == 500:
            log.error("api.internal_error", code=exc.code, reason=exc.message, path=request.url.path)
        payload = body(exc.code, exc.message)
        if exc.intent_id:
            payload["intent_id"] = exc.intent_id
        if exc.retryable:
            payload["retryable"] = True
        return JSONResponse(payload, status_code=status, headers=headers)

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail: Any = exc.detail
        if isinstance(detail, dict):
            payload = body(str(detail.get("code", f"http_{exc.status_code}")), str(detail.get("reason", "")))
        else:
            payload = body(f"http_{exc.status_code}", str(detail))
        return JSONResponse(payload, status_code=exc.status_code, headers=exc.headers)

    @api.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            FieldError(loc=".".join(str(part) for part in e.get("loc", ())), msg=str(e.get("msg", "")))
            for e in exc.errors()
        ]
        reason = "; ".join(f"{e.loc}: {e.msg}" for e in errors[:5]) or "the request is not valid"
        return JSONResponse(body("bad_input", reason, errors), status_code=422)

    @api.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("api.unexpected_error", path=request.url.path, error=repr(exc), exc_info=exc)
        return JSONResponse(
            body("internal", "internal error; the server log has the details"), status_code=500
        )


class RefuseNul:
    """Refuse a request whose path or query holds a NUL character, with a JSON 422.

    No apx name, id or filter value contains one, and PostgreSQL refuses NUL in any
    text parameter, so a lookup with one would otherwise be a storage error (500)
    there while SQLite quietly found nothing. Found by the API fuzz on PostgreSQL.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b"").lower()
        ):
            reason = "the request's path or query holds a NUL character (%00); no apx name or id has one"
            response = JSONResponse(body("bad_input", reason), status_code=422)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with a JSON 413, before they are read.

    A declared ``Content-Length`` over the limit is answered at once; a chunked
    body is counted as it is read and refused at the first byte over. (Starlette's
    own body limit answers in plain text, which a JSON client cannot read.)
    """

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise StarletteHTTPException(413, detail=self._detail())  # type: ignore[arg-type]
            return message

        await self.app(scope, counted, send)

    def _detail(self) -> dict[str, str]:
        return {
            "code": "too_large",
            "reason": f"the request body is over the limit of {self.limit:,} bytes "
            "(admission.max_intent_bytes)",
        }

    async def _refuse(self, send: Send) -> None:
        detail = self._detail()
        response = JSONResponse(body(detail["code"], detail["reason"]), status_code=413)
        await response({"type": "http"}, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}
