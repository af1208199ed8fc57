"""What happens after the pipeline records a decision: the side effects that follow it.

A PR opened → published to the PR provider and its review thread started (so it
waits, durably, for a human); breaker trips, PRs and merges → notifications.
These run after the decision is committed, through the orchestrator's
:class:`~orchestrator.ports.Observer` hook, so their failure is logged and
retried later but never undoes or fails a decision.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from orchestrator import logs
from orchestrator.approvals import ROLLBACK_AGENT
from orchestrator.canary import CANARY_ACTOR
from orchestrator.decision import Decision, Status
from orchestrator.notify.events import Kind, Notification
from orchestrator.records import BreakerState, PullRequestView
from orchestrator.telemetry import INTENT_ID

if TYPE_CHECKING:
    from orchestrator.bootstrap import App

log = logs.get_logger("apx.reactions")
#: What a review decided about an intent, counted in ``apx_decisions_total``.
_REVIEW_OUTCOMES = frozenset({Status.APPROVED, Status.MERGED, Status.PR_REJECTED})


class Reactions:
    """The :class:`~orchestrator.ports.Observer` the composition root installs."""

    def __init__(self, app: App) -> None:
        self._app = app

    def decided(self, decision: Decision) -> None:
        if decision.status is Status.PR_OPEN and decision.pr is not None:
            self._pr_opened(decision)
        elif decision.status is Status.APPLIED:
            self._app.canary.watch(decision)
            self._rolled_back(decision)

    def pr_changed(self, kind: str, pr: PullRequestView, message: str) -> None:
        """A review moved a PR on (``pr.approved``, ``pr.rejected``, ``pr.merged``)."""
        log.info(kind, pr=pr.id, intent_id=pr.intent.record.id, message=message)
        record = pr.intent.record
        if pr.intent.status in _REVIEW_OUTCOMES:  # not a partial approval: the intent moved on
            self._app.service_metrics.decided(
                agent=record.agent, environment=record.environment, status=pr.intent.status.value
            )
        self._notify(
            Kind(kind),
            tenant=record.tenant,
            environment=record.environment,
            intent_id=record.id,
            trace_id=record.trace_id,
            summary=f"PR {pr.id} ({record.agent}, {' '.join(record.targets)}): {message}",
            url=(pr.publication or {}).get("url"),
        )
        if kind == "pr.merged" and pr.intent.decision is not None:
            self._app.canary.watch(pr.intent.decision)
            self._rolled_back(pr.intent.decision)

    def breaker_changed(self, state: BreakerState, *, event: str) -> None:
        tripped = event == "tripped"
        self._notify(
            Kind.BREAKER_TRIPPED if tripped else Kind.BREAKER_RESET,
            tenant=state.tenant,
            environment=state.environment,
            intent_id=state.tripped_by if tripped else None,
            summary=(
                f"circuit breaker for {state.tenant}/{state.environment} tripped: {state.reason}"
                if tripped
                else f"circuit breaker for {state.tenant}/{state.environment} reset by {state.reset_by}"
            ),
        )

    def _rolled_back(self, decision: Decision) -> None:
        """A rollback landed: say so (an automatic one as ``canary.rolled_back``)."""
        if decision.agent != ROLLBACK_AGENT:
            return
        view = self._app.store.get(decision.intent_id)
        if view is None:
            return
        rationale = str((view.record.document.get("spec") or {}).get("rationale", ""))
        self._notify(
            Kind.CANARY_ROLLED_BACK if CANARY_ACTOR in rationale else Kind.INTENT_ROLLED_BACK,
            tenant=decision.tenant,
            environment=decision.environment,
            intent_id=view.record.caused_by,
            trace_id=decision.trace_id,
            summary=f"{view.record.caused_by} rolled back by {decision.intent_id}: {rationale}"[:1000],
        )

    def _notify(self, kind: Kind, **fields: Any) -> None:
        with self._app.telemetry.span(
            "apx.notify.enqueue",
            trace_id=fields.get("trace_id"),
            **{INTENT_ID: fields.get("intent_id"), "apx.notification.kind": kind.value},
        ):
            self._app.notifier.notify(Notification(kind=kind, at=self._app.clock.now(), **fields))

    def _pr_opened(self, decision: Decision) -> None:
        assert decision.pr is not None
        pr = decision.pr
        with self._app.telemetry.span("apx.pr.publish", trace_id=decision.trace_id):
            publication = self._app.provider.publish(pr, title=pr_title(decision), body=pr_body(decision))
        self._app.store.update_pull_request(pr.id, publication=asdict(publication))
        self._app.reviews.opened(pr.id)
        self._notify(
            Kind.PR_OPENED,
            tenant=decision.tenant,
            environment=decision.environment,
            intent_id=decision.intent_id,
            trace_id=decision.trace_id,
            summary=f"{decision.agent} opened PR {pr.id} for {decision.environment}: review it",
            url=publication.url,
        )


def pr_title(decision: Decision) -> str:
    return f"apx: {decision.agent} change in {decision.environment} ({decision.intent_id})"


def pr_body(decision: Decision) -> str:
    """What a reviewer needs on the PR page: why, what, how big, under which policy, how to undo."""
    lines = [f"Intent `{decision.intent_id}` from agent **{decision.agent}** for tenant `{decision.tenant}`."]
    lines += ["", *[f"- {reason}" for reason in decision.reasons]]
    lines += ["", f"Policy: `{decision.policy_version}` · trace `{decision.trace_id}`"]
    if decision.blast_radius:
        lines += ["", "Blast radius:", *[f"- {k}: {v}" for k, v in decision.blast_radius.items() if v]]
    lines += ["", "Checks:", *[f"- {c.name}: {'pass' if c.passed else 'FAIL'}" for c in decision.checks]]
    for path, diff in decision.diff.items():
        lines += ["", f"`{path}`", "```diff", diff.rstrip("\n"), "```"]
    if decision.rollback:
        lines += ["", f"Rollback: `{decision.rollback.git}`"]
    return "\n".join(lines)
