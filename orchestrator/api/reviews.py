"""``/v1/prs``: reviewers see and decide their tenants' prod PRs.

Approving or rejecting goes through the same durable review graph as ``apx prs
approve`` (:class:`~orchestrator.review.ReviewFlow`), as the token's principal:
the reviewer recorded on the PR and in the audit log is the principal's name,
so an agent's name can never approve (the review flow refuses it). When
approvals are met the PR is merged before the response, which carries the
intent's decision and an ``APX-Review-Result`` header (``waiting``,
``merged``, ``rejected`` or ``conflict``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from orchestrator import approvals
from orchestrator.api.deps import CurrentPrincipal, apx_app
from orchestrator.api.errors import ERROR_RESPONSES
from orchestrator.authz import Action, authorize
from orchestrator.bootstrap import App
from orchestrator.decision import Decision
from orchestrator.errors import Forbidden, NotFound
from orchestrator.intent import MAX_RATIONALE
from orchestrator.presenters import pr_json
from orchestrator.records import PullRequestView
from orchestrator.workers import PIPELINE_LOCK

router = APIRouter(prefix="/v1/prs", tags=["reviews"], responses=ERROR_RESPONSES)

MAX_LIST = 500


class ReviewOut(BaseModel):
    reviewer: str
    verdict: str
    head: str
    at: str
    comment: str


class PullRequestOut(BaseModel):
    """A PR as ``apx prs show --json`` prints it."""

    id: str
    status: str
    intent_id: str
    agent: str
    tenant: str
    environment: str
    #: The resources the PR changes, ``Kind/name``.
    targets: list[str]
    branch: str
    base: str
    head: str
    created_at: str
    expires_at: str | None
    approvals: list[str]
    required: int
    reviews: list[ReviewOut]
    merge_commit: str | None
    closed_reason: str | None
    publication: dict[str, Any] | None
    rationale: str | None
    caused_by: list[str]
    decision: Decision | None


class ReviewIn(BaseModel):
    """A reviewer's note, recorded with the review and shown to the agent."""

    model_config = ConfigDict(extra="forbid")

    comment: str = Field(default="", max_length=MAX_RATIONALE)


@router.get("", response_model=list[PullRequestOut])
def list_prs(
    request: Request,
    principal: CurrentPrincipal,
    status: Literal["open", "merged", "rejected", "expired", "all"] = "open",
    env: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
) -> list[PullRequestOut]:
    """PRs of the principal's tenants, newest first (open ones by default)."""
    authorize(principal, Action.READ_PRS)
    app = apx_app(request)
    # Other tenants' PRs are skipped, so read more than one page's worth before cutting.
    found = app.store.pull_requests(
        status=None if status == "all" else status, environment=env, limit=MAX_LIST * 4
    )
    mine = [pr for pr in found if principal.may_see(pr.intent.record.tenant)][:limit]
    return [_out(app, pr) for pr in mine]


@router.get("/{ref}", response_model=PullRequestOut)
def get_pr(request: Request, principal: CurrentPrincipal, ref: str) -> PullRequestOut:
    """One PR by its id or its intent's id: diff, checks, blast radius, rationale, causal chain."""
    authorize(principal, Action.READ_PRS)
    app = apx_app(request)
    pr = _find(app, ref)
    authorize(principal, Action.READ_PRS, tenant=pr.intent.record.tenant)
    return _out(app, pr)


@router.post("/{ref}/approve", response_model=Decision)
def approve_pr(
    request: Request, principal: CurrentPrincipal, ref: str, body: ReviewIn | None = None
) -> JSONResponse:
    """Approve; once the environment's approvals are met, re-validate and merge now."""
    return _act(request, principal, ref, "approve", body or ReviewIn())


@router.post("/{ref}/reject", response_model=Decision)
def reject_pr(
    request: Request, principal: CurrentPrincipal, ref: str, body: ReviewIn | None = None
) -> JSONResponse:
    """Reject: the PR is closed and its intent becomes pr_rejected."""
    return _act(request, principal, ref, "reject", body or ReviewIn())


def _act(request: Request, principal: Any, ref: str, verdict: str, body: ReviewIn) -> JSONResponse:
    authorize(principal, Action.REVIEW)
    app = apx_app(request)
    pr = _find(app, ref)
    authorize(principal, Action.REVIEW, tenant=pr.intent.record.tenant)
    # Who may not review this PR (its submitter, a name agents submit under) is a refusal
    # like any other: an audited 403, as on the review page, not a 422 from ReviewFlow.
    why = approvals.refusal(principal.name, submitter=pr.intent.record.agent, agents=app.store.agents())
    if why is not None:
        raise Forbidden(why)
    with PIPELINE_LOCK:
        act = app.reviews.approve if verdict == "approve" else app.reviews.reject
        outcome = act(pr.id, by=principal.name, comment=body.comment)
    app.audit.checkpoint()
    view = app.store.get(pr.intent.record.id)
    if view is None or view.decision is None:  # pragma: no cover - a PR always has its intent's decision
        raise NotFound(f"the intent of PR {pr.id} is gone")
    return JSONResponse(
        view.decision.model_dump(mode="json"),
        headers={"APX-Review-Result": outcome.result},
    )


def _find(app: App, ref: str) -> PullRequestView:
    pr = app.store.pull_request(ref)
    if pr is None:
        raise NotFound(f"there is no PR {ref!r} (give the PR id or its intent's id)")
    return pr


def _out(app: App, pr: PullRequestView) -> PullRequestOut:
    required = max(1, app.settings.environments[pr.intent.record.environment].approvals)
    return PullRequestOut.model_validate(pr_json(app.store, pr, required=required))
