"""``/v1/breakers``: see the circuit breakers of your tenants; engineers reset them.

Resetting is a human decision ("AI is not root"): agent tokens cannot, and the
principal's name is recorded as who reset it, in the breaker and the audit log.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel

from orchestrator.api.deps import CurrentPrincipal, apx_app
from orchestrator.api.errors import ERROR_RESPONSES
from orchestrator.authz import Action, authorize
from orchestrator.errors import UnknownEnvironment
from orchestrator.records import BreakerState

router = APIRouter(prefix="/v1/breakers", tags=["breakers"], responses=ERROR_RESPONSES)


class BreakerOut(BaseModel):
    tenant: str
    environment: str
    open: bool
    opened_at: datetime | None
    closes_at: datetime | None
    reason: str
    tripped_by: str | None
    count_from: datetime | None
    reset_at: datetime | None
    reset_by: str | None


def _out(state: BreakerState) -> BreakerOut:
    return BreakerOut(**asdict(state))


@router.get("", response_model=list[BreakerOut])
def list_breakers(request: Request, principal: CurrentPrincipal) -> list[BreakerOut]:
    """Every breaker of the principal's tenants that has tripped, open or closed."""
    authorize(principal, Action.READ_BREAKERS)
    states = apx_app(request).orchestrator.breakers()
    return [_out(s) for s in states if principal.may_see(s.tenant)]


@router.post("/{tenant}/{environment}/reset", response_model=BreakerOut)
def reset_breaker(request: Request, principal: CurrentPrincipal, tenant: str, environment: str) -> BreakerOut:
    """Close a breaker; its deploy count restarts now."""
    authorize(principal, Action.RESET_BREAKER, tenant=tenant)
    app = apx_app(request)
    if environment not in app.settings.environments:
        known = ", ".join(sorted(app.settings.environments))
        raise UnknownEnvironment(f"environment {environment!r} is not configured (configured: {known})")
    state = app.orchestrator.reset_breaker(tenant=tenant, environment=environment, by=principal.name)
    app.audit.checkpoint()
    return _out(state)
