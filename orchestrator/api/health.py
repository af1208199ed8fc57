"""``/healthz`` and ``/readyz``: for load balancers and orchestrators; no token needed.

``/healthz`` says the process answers. ``/readyz`` says it can do its job: the
intent log answers a query, the config repo has every environment branch, and
the pipeline worker is running. Neither says more than ok or what is wrong, so
they are safe to leave unauthenticated.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from orchestrator import logs
from orchestrator.api.deps import apx_app
from orchestrator.records import IntentQuery

router = APIRouter(tags=["health"])
log = logs.get_logger("apx.api")


class Health(BaseModel):
    ok: bool
    #: What is not ready, one entry per problem; empty when ok.
    problems: list[str] = []


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    return Health(ok=True)


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(request: Request) -> JSONResponse:
    app = apx_app(request)
    problems: list[str] = []
    try:
        app.store.query(IntentQuery(limit=1))
    except Exception as exc:
        log.warning("readyz.store", error=str(exc))
        problems.append("the intent log does not answer")
    try:
        for env in app.settings.environments:
            if app.repo.head(app.settings.branch_of(env)) is None:
                problems.append(f"the config repo has no branch for environment {env}")
    except Exception as exc:
        log.warning("readyz.repo", error=str(exc))
        problems.append("the config repo cannot be read")
    worker = getattr(request.app.state, "worker", None)
    if worker is not None and getattr(request.app.state, "serving", False) and not worker.running:
        problems.append("the pipeline worker is not running")
    pool = getattr(request.app.state, "pool", None)
    if pool is not None and not pool.pids:
        problems.append("no pipeline worker process is running (apx serve --workers restarts them)")
    health = Health(ok=not problems, problems=problems)
    return JSONResponse(health.model_dump(), status_code=200 if health.ok else 503)
