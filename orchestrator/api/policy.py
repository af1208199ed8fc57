"""``/v1/policy``: which policy bundle is in force, and every bundle that was.

Read-only: the bundle in force changes only through ``apx.yaml`` on the server
(and is then recorded in the history and the audit log); no token can change it.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel

from orchestrator.api.deps import CurrentPrincipal, apx_app
from orchestrator.api.errors import ERROR_RESPONSES
from orchestrator.authz import Action, authorize

router = APIRouter(prefix="/v1/policy", tags=["policy"], responses=ERROR_RESPONSES)


class PolicyChangeOut(BaseModel):
    name: str
    version: str
    sha256: str
    source: str
    by: str
    at: datetime


class PolicyOut(BaseModel):
    name: str
    version: str
    sha256: str
    #: ``name@version+sha256[:12]``: what every decision's ``policy_version`` says.
    label: str
    history: list[PolicyChangeOut]


@router.get("", response_model=PolicyOut)
def policy(request: Request, principal: CurrentPrincipal) -> PolicyOut:
    """The bundle in force and the history of bundles, oldest first."""
    authorize(principal, Action.READ_POLICY)
    app = apx_app(request)
    info = app.policy.bundle
    history = [
        PolicyChangeOut(name=c.name, version=c.version, sha256=c.sha256, source=c.source, by=c.by, at=c.at)
        for c in app.store.policy_history()
    ]
    return PolicyOut(
        name=info.name, version=info.version, sha256=info.sha256, label=info.label, history=history
    )
