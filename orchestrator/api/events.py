"""``/v1/events``: a server-sent-events stream of decisions, as they are recorded.

The stream follows the audit log, not this process's pipeline: every decision
of every process sharing the database (the server's worker, ``apx submit``,
a review) is an ``intent.<status>`` audit entry, and the entry's sequence
number is the event id. So ``Last-Event-ID`` resumes exactly where a client
left off, across reconnects and server restarts, and nothing is missed or sent
twice. Each event is ``event: decision`` with the intent's decision (as stored
when the event is sent) as ``data``; only the principal's tenants are sent.

Streams are bounded — at most ``limit`` events or ``timeout`` seconds, then
the server closes and the client reconnects with ``Last-Event-ID`` — so no
connection is held forever.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from audit.entry import parse_body
from orchestrator.api.deps import CurrentPrincipal, apx_app
from orchestrator.api.errors import ERROR_RESPONSES
from orchestrator.authz import Action, authorize
from orchestrator.bootstrap import App
from orchestrator.decision import Decision, Status
from orchestrator.errors import BadInput
from orchestrator.principals import Principal

router = APIRouter(prefix="/v1", tags=["events"], responses=ERROR_RESPONSES)

#: How often the audit log is read for new entries.
POLL_SECONDS = 0.5
#: Entries read per poll, so a client far behind catches up in bounded steps.
BATCH = 500
#: Intent statuses that are not decisions (the intent arriving, admission queueing it).
_NOT_DECISIONS = frozenset({Status.RECEIVED.value, Status.QUEUED.value})


def _start(
    request: Request,
    principal: CurrentPrincipal,
    last_event_id: Annotated[
        str | None, Header(description="Resume after this event id (sent by EventSource on reconnect).")
    ] = None,
    after: Annotated[int | None, Query(ge=0, le=2**63 - 1, description="Start after this event id.")] = None,
) -> int:
    """Where the stream starts: after ``Last-Event-ID``, else ``after``, else at the log's end.

    A dependency, so a bad id is a 422 before the stream starts.
    """
    authorize(principal, Action.READ_INTENTS)
    if last_event_id is not None:
        text = last_event_id.strip()
        if not text.isdigit() or int(text) >= 2**63:
            raise BadInput(f"Last-Event-ID {last_event_id!r} is not an event id of this stream")
        return int(text)
    if after is not None:
        return after
    return apx_app(request).audit.store.size()


@router.get(
    "/events",
    response_class=EventSourceResponse,
    responses={200: {"description": "`event: decision` with the decision as data; id = audit seq."}},
)
async def events(
    request: Request,
    principal: CurrentPrincipal,
    start: Annotated[int, Depends(_start)],
    limit: Annotated[int, Query(ge=1, le=10_000, description="Close after this many events.")] = 100,
    timeout: Annotated[float, Query(gt=0, le=3600, description="Close after this many seconds.")] = 60,
) -> AsyncIterator[ServerSentEvent]:
    """Decisions of the principal's tenants as they are recorded."""
    app = apx_app(request)
    deadline = time.monotonic() + timeout
    last, sent = start, 0
    while sent < limit and time.monotonic() < deadline:
        last, found = await run_in_threadpool(_decisions_after, app, principal, last)
        for seq, decision in found:
            yield ServerSentEvent(event="decision", id=str(seq), data=decision)
            sent += 1
            if sent >= limit:
                return
        if not found:
            await anyio.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))


def _decisions_after(app: App, principal: Principal, last: int) -> tuple[int, list[tuple[int, Decision]]]:
    """(the last seq read, decisions the principal may see among up to BATCH entries after ``last``)."""
    found: list[tuple[int, Decision]] = []
    for seq, body, _link in app.audit.store.rows(last + 1, last + BATCH):
        last = seq
        entry = parse_body(body)
        action = str(entry.get("action", ""))
        kind, _, status = action.partition(".")
        if kind != "intent" or status in _NOT_DECISIONS or not entry.get("intent_id"):
            continue
        if not principal.may_see(str(entry.get("tenant", ""))):
            continue
        view = app.store.get(str(entry["intent_id"]))
        if view is not None and view.decision is not None:
            found.append((seq, view.decision))
    return last, found
