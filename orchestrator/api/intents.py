"""``/v1/intents``: agents submit intents; everyone reads the intents of their tenants.

A submit answers 202 at once with the intent id, a status URL and the trace id
(async by default): the :class:`~orchestrator.workers.DrainWorker` decides it.
``?wait=SECONDS`` waits up to that long and answers 200 with the decision when
it is made in time. The submitting agent is the token's agent, never the
payload's: a body that claims another agent is refused (403), as is one for a
tenant the token does not hold.

The body is read by hand, not by a pydantic parameter, so the size limit holds
before more than ``admission.max_intent_bytes`` are read (413), the content
type is checked first (415), and the intent goes through the same
:func:`~orchestrator.parsing.parse_intent` as ``apx submit`` (422 naming the
field and line).
"""

from __future__ import annotations

import heapq
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from orchestrator.api.deps import CurrentPrincipal, apx_app, refuse
from orchestrator.api.errors import ERROR_RESPONSES, ErrorBody
from orchestrator.authz import Action, authorize
from orchestrator.decision import PENDING, Decision, Status
from orchestrator.errors import BadInput, IntentFormatError, NotFound
from orchestrator.intent import Intent, ResourceKey
from orchestrator.parsing import parse_intent
from orchestrator.presenters import decode_cursor, encode_cursor, intent_row, parse_since, view_json
from orchestrator.principals import Principal
from orchestrator.records import IntentQuery, IntentView
from orchestrator.workers import DrainWorker

router = APIRouter(prefix="/v1", tags=["intents"], responses=ERROR_RESPONSES)

#: Content types a submit accepts; anything else is a 415.
JSON_TYPES = frozenset({"application/json"})
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml"})
#: The longest ``?wait=`` (seconds): a request should not hold a connection longer.
MAX_WAIT = 60.0
MAX_PAGE = 1000


class Accepted(BaseModel):
    """What a submit answers at once: where to look for the decision."""

    intent_id: str
    status: Status
    status_url: str
    trace_id: str
    #: Why it is held or waiting (duplicate, rate limited, outside the change window), if it is.
    reasons: list[str] = []


class IntentRow(BaseModel):
    """One intent in a list: the columns of ``apx intents list``."""

    id: str
    received_at: str
    status: Status
    agent: str
    tenant: str
    environment: str
    targets: str
    reason: str
    ref: str


class IntentPage(BaseModel):
    items: list[IntentRow]
    #: Pass back as ``cursor`` for the next (older) page; null on the last page.
    next_cursor: str | None


class TimelineEvent(BaseModel):
    status: Status
    at: str
    reasons: list[str]


class IntentBrief(BaseModel):
    id: str
    agent: str | None
    status: Status | None
    received_at: str | None


class IntentDetail(BaseModel):
    """One intent as ``apx intents show --json`` prints it."""

    intent: dict[str, Any]
    id: str
    agent: str
    tenant: str
    environment: str
    trace_id: str
    status: Status
    base_revision: str
    timeline: list[TimelineEvent]
    decision: Decision | None
    blast_radius: dict[str, Any] | None
    parents: list[IntentBrief]
    children: list[IntentBrief]
    payload_digest: str | None
    pruned_at: str | None
    #: The pipeline worker (host:pid:role) that claimed it; None when decided without a claim.
    claimed_by: str | None = None


#: The Intent's JSON schema; its ``$defs`` go to the document's components (see :func:`openapi_schemas`).
_INTENT_SCHEMA = Intent.model_json_schema(ref_template="#/components/schemas/{model}")
_SUBMIT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The intent document (apx/v1 Intent), as JSON or YAML.",
        "content": {
            "application/json": {"schema": {k: v for k, v in _INTENT_SCHEMA.items() if k != "$defs"}},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


def openapi_schemas() -> dict[str, Any]:
    """Schemas the submit body refers to, for ``components.schemas`` of /openapi.json."""
    defs: dict[str, Any] = _INTENT_SCHEMA.get("$defs", {})
    return defs


@router.post(
    "/intents",
    status_code=202,
    response_model=Accepted,
    responses={
        200: {"model": Decision, "description": "With ?wait: the decision, made in time."},
        413: {"model": ErrorBody, "description": "The body is over admission.max_intent_bytes."},
        415: {"model": ErrorBody, "description": "The body is not application/json or application/yaml."},
    },
    openapi_extra=_SUBMIT_BODY,
)
async def submit_intent(
    request: Request,
    principal: CurrentPrincipal,
    wait: Annotated[
        float | None, Query(gt=0, le=MAX_WAIT, description="Wait up to this many seconds for the decision.")
    ] = None,
) -> JSONResponse:
    """Submit an intent as the token's agent (agent tokens only)."""
    authorize(principal, Action.SUBMIT)
    app = apx_app(request)
    limit = app.settings.admission.max_intent_bytes
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in JSON_TYPES | YAML_TYPES:
        raise _status(
            415,
            "unsupported_media_type",
            f"send the intent as application/json or application/yaml, not {media or 'no content type'}",
        )
    data = await _read_limited(request, limit)
    # Parsing a large intent, and auditing a refusal, must not hold up the event loop.
    intent = await run_in_threadpool(_parse, data, principal, media=media, limit=limit, request=request)
    authorize(principal, Action.SUBMIT, tenant=intent.tenant)
    assert principal.agent is not None  # SUBMIT is for agent principals only
    decision = await run_in_threadpool(app.orchestrator.submit, intent, agent=principal.agent, wait=False)
    worker = _worker(request)
    worker.wake()
    if wait is not None and decision.status in PENDING:
        decision = await run_in_threadpool(_await_decision, request, worker, decision, wait)
    if wait is not None and decision.status not in PENDING:
        return JSONResponse(decision.model_dump(mode="json"), status_code=200)
    url = str(request.url_for("get_intent", intent_id=decision.intent_id))
    accepted = Accepted(
        intent_id=decision.intent_id,
        status=decision.status,
        status_url=url,
        trace_id=decision.trace_id,
        reasons=decision.reasons,
    )
    return JSONResponse(accepted.model_dump(mode="json"), status_code=202, headers={"Location": url})


@router.get("/intents", response_model=IntentPage)
def list_intents(
    request: Request,
    principal: CurrentPrincipal,
    agent: str | None = None,
    status: Status | None = None,
    env: str | None = None,
    tenant: str | None = None,
    target: Annotated[str | None, Query(description="KIND/NAME of a changed resource.")] = None,
    since: Annotated[str | None, Query(description="A duration ago (10m) or an ISO timestamp.")] = None,
    until: Annotated[str | None, Query(description="A duration ago (10m) or an ISO timestamp.")] = None,
    trace: str | None = None,
    caused_by: str | None = None,
    reason: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: str | None = None,
) -> IntentPage:
    """Intents newest first, a page at a time; only the tenants the token holds."""
    authorize(principal, Action.READ_INTENTS, tenant=tenant)
    now = datetime.now(UTC)
    if target is not None:
        try:
            target = str(ResourceKey.parse(target))
        except ValueError as exc:
            raise BadInput(f"target: {exc}") from None
    query = IntentQuery(
        agent=agent,
        status=status,
        environment=env,
        tenant=tenant,
        target=target,
        trace_id=trace,
        caused_by=caused_by,
        reason=reason,
        since=parse_since(since, now=now, option="since") if since else None,
        until=parse_since(until, now=now, option="until") if until else None,
        before_seq=decode_cursor(cursor) if cursor is not None else None,
        limit=limit + 1,
    )
    views = _visible(apx_app(request).store, query, principal)
    more = encode_cursor(views[limit - 1].seq) if len(views) > limit else None
    return IntentPage(items=[IntentRow(**intent_row(v)) for v in views[:limit]], next_cursor=more)


@router.get("/intents/{intent_id}", response_model=IntentDetail)
def get_intent(request: Request, principal: CurrentPrincipal, intent_id: str) -> IntentDetail:
    """One intent: document, timeline, decision, causes and effects."""
    authorize(principal, Action.READ_INTENTS)
    store = apx_app(request).store
    view = store.get(intent_id)
    if view is None:
        raise NotFound(f"no intent {intent_id!r}")
    authorize(principal, Action.READ_INTENTS, tenant=view.record.tenant)
    return IntentDetail.model_validate(view_json(store, view))


# -- helpers ---------------------------------------------------------------------------


def _status(status: int, code: str, reason: str) -> Exception:
    from fastapi import HTTPException

    return HTTPException(status, detail={"code": code, "reason": reason})


async def _read_limited(request: Request, limit: int) -> bytes:
    """The body, refusing (413) as soon as it is known to be over ``limit`` bytes."""
    too_big = _status(
        413,
        "too_large",
        f"the intent is over the limit of {limit:,} bytes (admission.max_intent_bytes)",
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(data: bytes, principal: Principal, *, media: str, limit: int, request: Request) -> Intent:
    """The intent, or 422 naming the field; 403 if the body speaks for another agent.

    The intent format has no field for the submitter (``metadata`` forbids
    unknown keys), so a ``metadata.agent`` is only looked at when parsing fails
    on it: naming this token's own agent is tolerated (dropped), naming another
    is refused. Resource labels that name an agent must name this one.
    """
    try:
        intent = parse_intent(data, source="request body", max_bytes=limit)
    except IntentFormatError:
        document = _loose(data, media)
        meta = document.get("metadata") if isinstance(document, dict) else None
        if not isinstance(meta, dict) or "agent" not in meta:
            raise
        claimed = meta["agent"]
        if claimed != principal.agent:
            refuse(
                request,
                principal,
                f"the intent claims agent {claimed!r} but this token submits as agent {principal.agent!r}",
                403,
            )
        rest = {k: v for k, v in meta.items() if k != "agent"}
        intent = parse_intent(
            json.dumps({**document, "metadata": rest}, default=str), source="request body", max_bytes=limit
        )
    for i, change in enumerate(intent.spec.changes):
        for key, value in change.resource.metadata.labels.items():
            if (key == "agent" or key.endswith("/agent")) and value != principal.agent:
                refuse(
                    request,
                    principal,
                    f"spec.changes[{i}].resource.metadata.labels.{key} names agent {value!r} but this "
                    f"token submits as agent {principal.agent!r}",
                    403,
                )
    return intent


def _loose(data: bytes, media: str) -> Any:
    """The body as plain data, or None: only to look for a claimed agent after a parse failed."""
    try:
        return json.loads(data) if media in JSON_TYPES else yaml.safe_load(data)
    except (ValueError, yaml.YAMLError, RecursionError):
        return None


def _worker(request: Request) -> DrainWorker:
    worker: DrainWorker = request.app.state.worker
    return worker


def _await_decision(request: Request, worker: DrainWorker, queued: Decision, wait: float) -> Decision:
    """The intent's decision once it is made, or the queued one after ``wait`` seconds.

    Without a running worker (an API used without its lifespan, as in some
    tests) the intent is decided here, as ``apx submit`` does.
    """
    store = apx_app(request).store
    if not worker.running:
        worker.drain_once()

    def decided() -> IntentView | None:
        view = store.get(queued.intent_id)
        return view if view is not None and view.status not in PENDING else None

    worker.wait_for(lambda: decided() is not None, wait)
    view = decided()
    return view.decision if view is not None and view.decision is not None else queued


def _visible(store: Any, query: IntentQuery, principal: Principal) -> list[IntentView]:
    """The query's page, limited to the principal's tenants.

    A principal with several tenants gets one query per tenant, merged newest
    first: each is exact and uses the tenant index, so paging stays correct.
    """
    if query.tenant is not None or principal.all_tenants:
        found: list[IntentView] = store.query(query)
        return found
    pages = [store.query(replace(query, tenant=tenant)) for tenant in sorted(principal.tenants)]
    merged = heapq.merge(*pages, key=lambda v: v.seq, reverse=True)
    return list(merged)[: query.limit]
