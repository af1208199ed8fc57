"""Build the FastAPI application of one installation.

``apx serve`` and the tests call :func:`create_api` with a wired
:class:`~orchestrator.bootstrap.App`; endpoints reach it through
:func:`orchestrator.api.deps.apx_app`.

Endpoints are plain ``def`` functions, so FastAPI runs them in its thread
pool, and the App's parts are shared between those threads. What makes that
safe: the SQLAlchemy engines pool connections per thread; the git repo
serialises its calls (an RLock around gitpython's helpers); the langgraph
checkpointers guard their one connection with a lock; the environment lock
is an ``flock`` on a file opened per call (or a PostgreSQL advisory lock on a
connection per call), so it excludes threads as it excludes processes; the
orchestrator's parsed-environment cache has its own lock; the secret scan avoids
detect-secrets' global settings. The App builds its parts lazily with
``cached_property`` (two threads could build two stores), so :func:`create_api`
builds them all up front. Review actions and the drain worker also take
:data:`orchestrator.workers.PIPELINE_LOCK`, so one process resumes a review
thread from one place at a time.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from orchestrator.api import (
    audit,
    breakers,
    environments,
    errors,
    events,
    health,
    intents,
    policy,
    reviews,
)
from orchestrator.api.deps import AnonymousRefusals
from orchestrator.bootstrap import App
from orchestrator.principals import Principals
from orchestrator.workers import DrainWorker

#: Routers other modules contribute when present: the review page and /metrics.
OPTIONAL_ROUTERS = ("orchestrator.api.pages", "orchestrator.api.metrics")


def create_api(
    app: App,
    *,
    principals: Principals | None = None,
    worker: DrainWorker | None = None,
    drain_interval: float = 2.0,
) -> FastAPI:
    """The API of ``app``. Its lifespan starts the drain worker and stops it on shutdown.

    ``principals`` defaults to ``<home>/principals.yaml``; ``worker`` to a
    :class:`DrainWorker` polling every ``drain_interval`` seconds.
    """
    _build_parts(app)
    drain = worker or DrainWorker(app, interval=drain_interval)

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        drain.start()
        api.state.serving = True
        try:
            yield
        finally:
            api.state.serving = False
            drain.stop()

    api = FastAPI(
        title="APX control plane",
        version="1",
        description=(
            "Agents submit intents; the orchestrator decides, applies and records them; "
            "humans review prod PRs. Every call needs a bearer token (see docs/how-to/tokens-and-roles.md)."
        ),
        lifespan=lifespan,
    )
    api.state.apx = app
    api.state.principals = principals or Principals.load(app.settings.home)
    api.state.anonymous_refusals = AnonymousRefusals()
    api.state.worker = drain
    api.state.serving = False
    errors.install(api)
    # No body may be larger than an intent may be (a review comment is far smaller).
    api.add_middleware(errors.BodyLimit, limit=app.settings.admission.max_intent_bytes)
    api.add_middleware(errors.RefuseNul)
    for module in (health, intents, events, reviews, breakers, audit, policy, environments):
        api.include_router(module.router)
    for name in OPTIONAL_ROUTERS:
        try:
            optional = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        api.include_router(optional.router)
    _document_intent_schemas(api)
    return api


def _document_intent_schemas(api: FastAPI) -> None:
    """Add the submit body's schemas to /openapi.json (FastAPI sees only pydantic parameters)."""
    build = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            document = build()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in intents.openapi_schemas().items():
                schemas.setdefault(name, schema)
            api.openapi_schema = document
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]


def _build_parts(app: App) -> None:
    """Build every lazily built part now, in one thread, before requests share them."""
    app.store  # noqa: B018
    app.audit  # noqa: B018
    app.repo  # noqa: B018
    app.policy  # noqa: B018
    app.orchestrator  # noqa: B018
    app.reviews  # noqa: B018
