"""``/v1/environments``: one tenant's view of an environment, for agents on other hosts.

These three endpoints serve the read side of :class:`agents.client.Client`
over HTTP (the resources at the branch head, the data plane's metrics, the
changes that landed recently), through the same
:class:`~agents.client.InProcessClient` the scheduler's agents use, so both
see exactly the same thing. ``tenant`` is required and must be one of the
token's tenants.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime, BaseModel

from agents.client import InProcessClient
from orchestrator.api.deps import CurrentPrincipal, apx_app
from orchestrator.api.errors import ERROR_RESPONSES
from orchestrator.authz import Action, authorize
from orchestrator.errors import BadInput

router = APIRouter(prefix="/v1/environments", tags=["environments"], responses=ERROR_RESPONSES)

#: The widest metrics window one request may read (the Optimizer reads minutes).
MAX_METRICS_WINDOW = timedelta(days=1)
TenantQuery = Annotated[str, Query(description="The tenant whose view this is (one of the token's).")]


class EnvironmentOut(BaseModel):
    #: The environment branch's head commit.
    revision: str
    #: ``Kind/name`` → the resource document, this tenant's resources only.
    resources: dict[str, dict[str, Any]]


class SampleOut(BaseModel):
    at: datetime
    environment: str
    commit: str
    scope: str
    metric: str
    value: float


class RecentOut(BaseModel):
    id: str
    agent: str
    targets: list[str]
    received_at: str


@router.get("/{env}", response_model=EnvironmentOut)
def environment(
    request: Request, principal: CurrentPrincipal, env: str, tenant: TenantQuery
) -> EnvironmentOut:
    """The tenant's resources at the head of the environment's branch."""
    authorize(principal, Action.READ_ENVIRONMENT, tenant=tenant)
    revision, resources = InProcessClient(apx_app(request), tenant=tenant).environment(env)
    return EnvironmentOut(revision=revision, resources=resources)


@router.get("/{env}/metrics", response_model=list[SampleOut])
def metrics(
    request: Request,
    principal: CurrentPrincipal,
    env: str,
    tenant: TenantQuery,
    since: AwareDatetime,
    until: AwareDatetime,
) -> list[SampleOut]:
    """The data plane's samples with ``since <= at < until`` (at most one day)."""
    authorize(principal, Action.READ_ENVIRONMENT, tenant=tenant)
    if until - since > MAX_METRICS_WINDOW:
        raise BadInput(f"since..until spans {until - since}; ask for at most {MAX_METRICS_WINDOW} at a time")
    samples = InProcessClient(apx_app(request), tenant=tenant).metrics(env, since, until)
    return [
        SampleOut(
            at=s.at, environment=s.environment, commit=s.commit, scope=s.scope, metric=s.metric, value=s.value
        )
        for s in samples
    ]


@router.get("/{env}/recent", response_model=list[RecentOut])
def recent(
    request: Request, principal: CurrentPrincipal, env: str, tenant: TenantQuery, since: AwareDatetime
) -> list[RecentOut]:
    """The tenant's intents that landed in ``env`` (applied or merged) since ``since``, oldest first."""
    authorize(principal, Action.READ_ENVIRONMENT, tenant=tenant)
    found = InProcessClient(apx_app(request), tenant=tenant).recent(env, since)
    return [RecentOut.model_validate(item) for item in found]
