"""``/v1/audit``: verify the tamper-evident log, prove an entry, export it for a SIEM.

Verification reports on the whole chain (counts and the root, never entries),
so engineers may run it. A proof carries the entry itself, so it is given only
for entries of the principal's tenants (an entry with no tenant, such as a
policy change, needs a principal with every tenant). The export holds every
tenant's entries: admin only.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import IO, Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from audit.entry import parse_body
from orchestrator.api.deps import CurrentPrincipal, apx_app
from orchestrator.api.errors import ERROR_RESPONSES
from orchestrator.authz import Action, authorize
from orchestrator.bootstrap import App
from orchestrator.errors import NotFound
from orchestrator.principals import ALL_TENANTS

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=ERROR_RESPONSES)

#: Largest sequence number a database can hold (BIGINT).
MAX_SEQ = 2**63 - 1
#: The export is written to a temporary file first; this much stays in memory.
_SPOOL_BYTES = 8 << 20


class Problem(BaseModel):
    kind: str
    seq: int | None
    message: str


class VerifyReport(BaseModel):
    """``apx audit verify --json``."""

    ok: bool
    entries: int
    root: str
    checkpoints: int
    signed_up_to: int
    problem: Problem | None
    notes: list[str]


@router.get("/verify", response_model=VerifyReport)
def verify(request: Request, principal: CurrentPrincipal) -> VerifyReport:
    """Recompute the chain and the Merkle tree and check every signed checkpoint."""
    authorize(principal, Action.AUDIT_VERIFY)
    app = apx_app(request)
    report = app.audit.verify()
    covered = max((cp.size for cp in app.audit.store.checkpoints()), default=0)
    finding = report.finding
    return VerifyReport(
        ok=report.ok,
        entries=report.size,
        root=report.root.hex(),
        checkpoints=report.checkpoints,
        signed_up_to=covered,
        problem=None
        if finding is None
        else Problem(kind=finding.kind, seq=finding.seq, message=finding.message),
        notes=list(report.notes),
    )


@router.get("/proof/{seq}", response_model=dict[str, Any])
def proof(
    request: Request, principal: CurrentPrincipal, seq: Annotated[int, Path(ge=1, le=MAX_SEQ)]
) -> dict[str, Any]:
    """An inclusion proof of entry ``seq`` (counting from 1) against the newest signed checkpoint."""
    authorize(principal, Action.AUDIT_PROOF)
    app = apx_app(request)
    authorize(principal, Action.AUDIT_PROOF, tenant=_tenant_of(app, seq))
    try:
        made = app.audit.prove(seq)
    except LookupError as exc:
        raise NotFound(str(exc)) from exc
    return made.as_json()


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}, "description": "JSON lines."}},
)
def export(
    request: Request,
    principal: CurrentPrincipal,
    start: Annotated[int, Query(alias="from", ge=1, le=MAX_SEQ, description="First entry to export.")] = 1,
) -> StreamingResponse:
    """The log as JSON lines: a header with the public key, the entries, the covering checkpoint."""
    authorize(principal, Action.AUDIT_EXPORT)
    app = apx_app(request)
    # Closed by _lines once the response is sent, so not a with-block here.
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES, mode="w+", encoding="utf-8")  # noqa: SIM115
    try:
        app.audit.export(spool, start=start)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return StreamingResponse(_lines(spool), media_type="application/x-ndjson")


def _lines(spool: IO[str]) -> Iterator[str]:
    try:
        yield from spool
    finally:
        spool.close()


def _tenant_of(app: App, seq: int) -> str:
    """The tenant an entry is about: its own field, else its intent's; ``*`` for none."""
    for _seq, body, _link in app.audit.store.rows(seq, seq):
        entry = parse_body(body)
        if entry.get("tenant"):
            return str(entry["tenant"])
        if entry.get("intent_id"):
            view = app.store.get(str(entry["intent_id"]))
            if view is not None:
                return view.record.tenant
        return ALL_TENANTS
    size = app.audit.store.size()
    raise NotFound(f"there is no audit entry {seq}; the log has {size} entries (they count from 1)")
