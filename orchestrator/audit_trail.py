"""Which audit entries each change to the intent log produces.

Both stores (SQL and the in-memory fake) call these, inside the write they
audit, so "every status change of every intent" is audited by construction:
a caller cannot record a decision and forget its entry.

Entries name the actor: ``agent:<name>`` for what an agent did (submitting),
``apx`` for what the orchestrator decided, and the human principal for what a
person did (a breaker reset). Payloads are represented by their digest only.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from audit.entry import AuditEvent
from orchestrator.canonical import canonical_json
from orchestrator.decision import Decision, Status
from orchestrator.records import BreakerState, CanaryWatch, IntentRecord, PolicyChange, Review

#: The orchestrator itself, as an actor.
ORCHESTRATOR = "apx"


def digest(value: Any) -> str:
    """``sha256:<hex>`` of ``value`` as canonical JSON (RFC 8785)."""
    return "sha256:" + hashlib.sha256(canonical_json(value)).hexdigest()


def agent_actor(agent: str) -> str:
    return f"agent:{agent}"


def received(record: IntentRecord, status: Status, decision: Decision | None) -> list[AuditEvent]:
    """An intent arriving, and the status admission gave it."""
    events = [
        AuditEvent(
            action="intent.received",
            actor=agent_actor(record.agent),
            at=record.received_at,
            intent_id=record.id,
            trace_id=record.trace_id,
            tenant=record.tenant,
            environment=record.environment,
            digest=digest(record.document),
        )
    ]
    if status is not Status.RECEIVED:
        events.append(_status(record, status, decision))
    return events


def decided(decision: Decision, *, at: datetime) -> AuditEvent:
    """A pending intent's final decision, taken at ``at``."""
    return AuditEvent(
        action=f"intent.{decision.status.value}",
        actor=ORCHESTRATOR,
        at=at,
        intent_id=decision.intent_id,
        trace_id=decision.trace_id,
        tenant=decision.tenant,
        environment=decision.environment,
        policy_version=decision.policy_version,
        digest=digest(decision.model_dump(mode="json")),
    )


def _status(record: IntentRecord, status: Status, decision: Decision | None) -> AuditEvent:
    return AuditEvent(
        action=f"intent.{status.value}",
        actor=ORCHESTRATOR,
        at=(decision.decided_at if decision and decision.decided_at else record.received_at),
        intent_id=record.id,
        trace_id=record.trace_id,
        tenant=record.tenant,
        environment=record.environment,
        policy_version=None if decision is None else decision.policy_version,
        digest=None if decision is None else digest(decision.model_dump(mode="json")),
    )


def breaker_changed(before: BreakerState | None, after: BreakerState, *, at: datetime) -> AuditEvent | None:
    """A breaker tripping, closing after its cool-down, or being reset by a human; None if neither."""
    was_open = before is not None and before.open
    if after.open and (not was_open or (before is not None and before.opened_at != after.opened_at)):
        action, actor, when = "breaker.tripped", ORCHESTRATOR, after.opened_at or at
    elif after.reset_at is not None and (before is None or before.reset_at != after.reset_at):
        action, actor, when = "breaker.reset", after.reset_by or "unknown", after.reset_at
    elif was_open and not after.open:
        action, actor, when = "breaker.closed", ORCHESTRATOR, after.count_from or at
    else:
        return None
    return AuditEvent(
        action=action,
        actor=actor,
        at=when,
        intent_id=after.tripped_by if action == "breaker.tripped" else None,
        tenant=after.tenant,
        environment=after.environment,
        subject=f"breaker:{after.tenant}/{after.environment}",
        digest=digest({"reason": after.reason, "open": after.open}),
    )


def reviewed(review: Review, *, intent_id: str, trace_id: str | None) -> AuditEvent:
    """A human approved or rejected a PR, or its review request expired."""
    return AuditEvent(
        action=f"review.{review.verdict}",
        actor=review.reviewer,
        at=review.at,
        intent_id=intent_id,
        trace_id=trace_id,
        subject=f"pr:{review.pr_id}@{review.head[:12]}",
        digest=digest({"verdict": review.verdict, "head": review.head, "comment": review.comment}),
    )


def canary_settled(watch: CanaryWatch, *, verdict: str, reason: str, at: datetime) -> AuditEvent:
    return AuditEvent(
        action=f"canary.{verdict}",
        actor=ORCHESTRATOR,
        at=at,
        intent_id=watch.intent_id,
        environment=watch.environment,
        digest=digest({"verdict": verdict, "reason": reason}),
    )


def pruned(intent_ids: list[str], *, before: datetime, at: datetime) -> AuditEvent:
    """Retention removed these intents' payloads (their entries and digests stay)."""
    return AuditEvent(
        action="retention.pruned",
        actor=ORCHESTRATOR,
        at=at,
        subject=f"intents:{len(intent_ids)} decided before {before.isoformat(timespec='seconds')}",
        digest=digest(sorted(intent_ids)),
    )


def policy_changed(change: PolicyChange) -> AuditEvent:
    return AuditEvent(
        action="policy.changed",
        actor=change.by,
        at=change.at,
        policy_version=f"{change.name}@{change.version}+{change.sha256[:12]}",
        subject=f"policy:{change.name}",
        digest=f"sha256:{change.sha256}",
    )
