"""Decisions: what happened to an intent, as a value.

A :class:`Decision` is what the CLI prints, what the intent log stores and
what the canonical log line is made from, so the three cannot disagree.
Statuses follow the contract in ``architecture.md``; :data:`EXIT_CODES` is the
one mapping from a status to the CLI's exit code.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Status(StrEnum):
    RECEIVED = "received"
    DUPLICATE = "duplicate"
    RATE_LIMITED = "rate_limited"
    CIRCUIT_OPEN = "circuit_open"
    QUEUED = "queued"
    REJECTED = "rejected"
    APPLIED = "applied"
    PR_OPEN = "pr_open"
    APPROVED = "approved"
    MERGED = "merged"
    PR_REJECTED = "pr_rejected"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"


#: Held by admission: recorded, nothing attempted, the agent may try later.
HELD = frozenset({Status.DUPLICATE, Status.RATE_LIMITED, Status.CIRCUIT_OPEN})
#: Admitted and not refused: these count for dedupe, rate limit and breaker.
ADMITTED = frozenset({Status.QUEUED, Status.APPLIED, Status.PR_OPEN, Status.APPROVED, Status.MERGED})
#: Still waiting for the pipeline to decide.
PENDING = frozenset({Status.RECEIVED, Status.QUEUED})
#: Not done yet: still to be decided, or a PR still to be reviewed or merged.
#: Retention never prunes these, however old.
OPEN = PENDING | {Status.PR_OPEN, Status.APPROVED}

EXIT_OK, EXIT_REJECTED, EXIT_BAD_INPUT, EXIT_HELD, EXIT_INTERNAL = 0, 1, 2, 3, 4
EXIT_CODES: dict[Status, int] = {
    **{s: EXIT_OK for s in ADMITTED},
    Status.RECEIVED: EXIT_OK,
    **{s: EXIT_HELD for s in HELD},
    Status.REJECTED: EXIT_REJECTED,
    Status.PR_REJECTED: EXIT_REJECTED,
    Status.ROLLED_BACK: EXIT_OK,
    Status.FAILED: EXIT_INTERNAL,
}


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Check(_Value):
    """One validator's verdict on an intent."""

    name: str
    passed: bool
    messages: list[str] = Field(default_factory=list)


class PullRequestRef(_Value):
    id: str
    branch: str
    base: str
    head: str
    status: str = "open"
    #: When the review request runs out (then it counts as rejected: default deny).
    expires_at: datetime | None = None


class Rollback(_Value):
    """How to undo an applied change.

    ``changes`` is the inverse intent (submit it to undo through the pipeline);
    ``git`` is the equivalent revert for someone working in the repo by hand.
    """

    commit: str
    branch: str
    git: str
    changes: list[dict[str, Any]]


class Decision(_Value):
    intent_id: str
    trace_id: str
    status: Status
    tenant: str
    environment: str
    agent: str
    reasons: list[str] = Field(default_factory=list)
    checks: list[Check] = Field(default_factory=list)
    blast_radius: dict[str, Any] | None = None
    policy_version: str | None = None
    commit: str | None = None
    pr: PullRequestRef | None = None
    rollback: Rollback | None = None
    #: The intent this one duplicates, for ``duplicate``.
    duplicate_of: str | None = None
    #: Unified diff per changed file, for a human reading the decision.
    diff: dict[str, str] = Field(default_factory=dict)
    #: Shown, not blocking: policy warnings, deprecations, oscillations.
    warnings: list[str] = Field(default_factory=list)
    #: Waivers that let a rule pass this time: rule, ticket, reason, expiry.
    waivers: list[dict[str, Any]] = Field(default_factory=list)
    #: The environment commit the intent was planned and validated against.
    revision: str | None = None
    decided_at: datetime | None = None
    #: For a rolled-back intent: the intent that undid it (the other one has ``causedBy`` back).
    rolled_back_by: str | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def summary(self) -> str:
        """One line for humans: status and the first reason."""
        where = self.commit or (self.pr.branch if self.pr else None)
        tail = f" ({where})" if where else ""
        reason = f": {self.reasons[0]}" if self.reasons else ""
        return f"{self.intent_id} {self.status.value}{tail}{reason}"
