"""Running agents: on demand (``apx agents run``) and on the scheduler (``apx serve``).

:data:`AGENTS` is the registry; :func:`run_agent` runs one agent once against
an :class:`~orchestrator.bootstrap.App` through an
:class:`~agents.client.InProcessClient` scoped to one tenant (read-only, plus
submit); :func:`run_with` runs it through any client, such as
:class:`~agents.http_client.HttpClient` for an agent on another host;
:func:`add_agent_jobs` puts the periodic agents on an APScheduler scheduler: the
Optimizer every ``agents.optimizer.every`` (5m), the Security agent every
``agents.security.every`` (1h). The Builder acts on human requests only, so it
has no job.

The deterministic planners are the default; when ``llm.models`` is configured,
:func:`run_agent` plans with :class:`agents.llm.LlmPlanner` instead. Either way the
proposal is validated the same way before anything is submitted.
"""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING

from agents.builder import BUILDER
from agents.client import InProcessClient
from agents.graph import Agent, AgentRun, Scope, run
from agents.optimizer import OPTIMIZER
from agents.security import SECURITY
from agents.settings import AgentsSettings
from orchestrator import logs
from orchestrator.errors import BadInput

if TYPE_CHECKING:
    from datetime import datetime

    from apscheduler.schedulers.base import BaseScheduler

    from agents.base import Planner
    from agents.client import Client
    from agents.llm_settings import LlmSettings
    from orchestrator.bootstrap import App

log = logs.get_logger("apx.agents")

AGENTS: dict[str, Agent] = {agent.name: agent for agent in (BUILDER, OPTIMIZER, SECURITY)}


def agents_settings(app: App) -> AgentsSettings:
    """``agents:`` from the installation's settings."""
    return app.settings.agents


def run_agent(
    app: App,
    name: str,
    *,
    environment: str | None = None,
    tenant: str = "acme",
    request: str | None = None,
    planner: Planner | None = None,
    settings: AgentsSettings | None = None,
) -> AgentRun:
    """Run agent ``name`` once. ``environment`` defaults to ``agents.<name>.environment``."""
    return run_with(
        InProcessClient(app, tenant=tenant),
        name,
        settings=settings or agents_settings(app),
        llm=app.settings.llm,
        at=app.clock.now(),
        environment=environment,
        request=request,
        planner=planner,
    )


def run_with(
    client: Client,
    name: str,
    *,
    settings: AgentsSettings,
    llm: LlmSettings,
    at: datetime,
    environment: str | None = None,
    request: str | None = None,
    planner: Planner | None = None,
) -> AgentRun:
    """Run agent ``name`` once through any :class:`~agents.client.Client`: in-process
    (:func:`run_agent`) or over HTTP (``apx agents run --server``, :mod:`agents.http_client`),
    for the client's tenant."""
    agent = AGENTS.get(name)
    if agent is None:
        raise BadInput(f"no agent {name!r}; agents: {', '.join(AGENTS)}")
    own = getattr(settings, name)
    if not own.enabled:
        raise BadInput(f"agent {name!r} is disabled (agents.{name}.enabled in apx.yaml)")
    if agent.needs_request and not (request and request.strip()):
        raise BadInput(f"the {name} acts on a request: give one with --request TEXT")
    scope = Scope(
        tenant=client.tenant,
        environment=environment or own.environment,
        at=at,
        request=request,
    )
    if planner is None and llm.enabled:
        # Models are configured: plan with them (litellm is imported only now).
        from agents.llm import LlmPlanner

        planner = LlmPlanner(llm, agent=name, instructions=agent.instructions)
    return run(agent, client=client, scope=scope, settings=settings, planner=planner)


def scheduled_run(app: App, name: str) -> list[AgentRun]:
    """One scheduled run of ``name`` for every tenant in ``agents.tenants``.

    A tenant whose run fails is logged and the others still run; the job runs
    again at its next time.
    """
    done: list[AgentRun] = []
    for tenant in agents_settings(app).tenants:
        try:
            done.append(run_agent(app, name, tenant=tenant))
        except Exception:
            log.exception("agent.run_failed", agent=name, tenant=tenant)
    app.audit.checkpoint()
    return done


def add_agent_jobs(scheduler: BaseScheduler, app: App) -> list[str]:
    """Add the periodic agents (enabled ones) to ``scheduler``; returns the job ids."""
    from apscheduler.triggers.interval import IntervalTrigger

    settings = agents_settings(app)
    added = []
    for name, every in (("optimizer", settings.optimizer.every), ("security", settings.security.every)):
        if not getattr(settings, name).enabled:
            continue
        job_id = f"agent-{name}"
        scheduler.add_job(
            scheduled_run,
            IntervalTrigger(seconds=every.total_seconds(), timezone=UTC),
            args=[app, name],
            id=job_id,
            name=f"run the {name} agent",
            max_instances=1,
            coalesce=True,
            replace_existing=True,
        )
        added.append(job_id)
    return added
