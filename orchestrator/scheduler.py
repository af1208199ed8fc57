"""Periodic work: retention and audit checkpoints, on APScheduler.

``apx serve`` starts :func:`build_scheduler`'s scheduler beside the API; the
CLI runs the same jobs once (``apx retention prune``, ``apx audit checkpoint``).
Each job is a plain function of the :class:`~orchestrator.bootstrap.App`, so a
test can run it directly and the scheduler only decides *when*.

Jobs never overlap themselves (``max_instances=1``) and missed runs collapse
into one (``coalesce``): after a pause there is one prune, not a backlog. A
job that fails is logged and runs again at its next time; nothing else stops.
"""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import TYPE_CHECKING

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from orchestrator import logs

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler

    from orchestrator.bootstrap import App

log = logs.get_logger("apx.scheduler")


def prune_payloads(app: App, *, older_than: timedelta | None = None) -> int:
    """Retention: prune the payloads of intents decided longer ago than ``older_than``
    (default ``retention.payloads``; None there means keep them forever)."""
    keep = older_than if older_than is not None else app.settings.retention.payloads
    if keep is None:
        return 0
    now = app.clock.now()
    pruned = app.store.prune_payloads(before=now - keep, at=now)
    if pruned:
        log.info("retention.pruned", intents=pruned, older_than=str(keep))
    app.audit.checkpoint()
    return pruned


def checkpoint_audit(app: App) -> None:
    """Sign an audit checkpoint if N entries or T seconds have passed since the last."""
    made = app.audit.checkpoint()
    if made is not None:
        log.info("audit.checkpoint", size=made.size, root=made.root.hex())


def check_canaries(app: App) -> None:
    """Judge open canary watches; roll back changes that raised the error rate."""
    for watch, judgement in app.canary.check():
        log.info(
            "canary.settled", intent_id=watch.intent_id, verdict=judgement.verdict, reason=judgement.reason
        )


def expire_reviews(app: App) -> None:
    """Close PRs whose review request ran out (default deny)."""
    for outcome in app.reviews.expire_due():
        log.info("review.expired", pr=outcome.pr.id)


def drain_queued(app: App) -> None:
    """Decide what waits (e.g. for a change window to open)."""
    for environment in app.settings.environments:
        app.orchestrator.drain(environment)


def deliver_notifications(app: App) -> None:
    """Post due webhook notifications (retries with backoff are the outbox's business)."""
    if app.settings.notifications.webhooks:
        app.deliver_notifications()


def build_scheduler(app: App, *, scheduler: BaseScheduler | None = None) -> BaseScheduler:
    """A scheduler (not started) holding the control plane's periodic jobs."""
    scheduler = scheduler or BackgroundScheduler(timezone=UTC)
    common = {"max_instances": 1, "coalesce": True, "replace_existing": True}
    scheduler.add_job(
        prune_payloads,
        IntervalTrigger(seconds=app.settings.retention.every.total_seconds(), timezone=UTC),
        args=[app],
        id="retention",
        name="prune intent payloads past retention",
        **common,
    )
    scheduler.add_job(
        checkpoint_audit,
        IntervalTrigger(seconds=app.settings.audit.checkpoint_interval.total_seconds(), timezone=UTC),
        args=[app],
        id="audit-checkpoint",
        name="sign an audit checkpoint when due",
        **common,
    )
    for job, every, name in (
        (check_canaries, app.settings.canary.check_every.total_seconds(), "judge canaries"),
        (expire_reviews, 60.0, "expire unanswered review requests"),
        (drain_queued, 30.0, "decide queued intents (change windows)"),
        (deliver_notifications, app.settings.notifications.interval.total_seconds(), "deliver notifications"),
    ):
        scheduler.add_job(
            job,
            IntervalTrigger(seconds=every, timezone=UTC),
            args=[app],
            id=job.__name__,
            name=name,
            **common,
        )
    from agents.runner import add_agent_jobs

    add_agent_jobs(scheduler, app)
    return scheduler
