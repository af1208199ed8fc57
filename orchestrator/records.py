"""What the intent log holds, as plain values shared by the core and the stores."""

from __future__ import annotations

import json
import string
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from orchestrator.decision import Decision, Status
from orchestrator.errors import ApxError, InternalError, NotFound, StorageError


@dataclass(frozen=True, kw_only=True)
class IntentRecord:
    """An intent as it arrived: written once, never changed."""

    id: str
    trace_id: str
    tenant: str
    environment: str
    agent: str
    caused_by: str | None
    dedupe_key: str
    #: The environment branch commit the agent saw (sequencing compares to it).
    base_revision: str
    received_at: datetime
    #: The intent document as submitted, parsed to plain data.
    document: dict[str, Any]
    #: ``Kind/name`` of every resource it changes.
    targets: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Event:
    """One status change in an intent's timeline."""

    status: Status
    at: datetime
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class IntentView:
    """An intent with where it stands now: what ``apx intents show`` prints."""

    seq: int
    record: IntentRecord
    status: Status
    decision: Decision | None
    events: tuple[Event, ...] = field(default=())
    #: ``sha256:`` of the document as received (the audit log holds the same).
    payload_digest: str | None = None
    #: Set once retention pruned the document, diff and rollback recipe.
    pruned_at: datetime | None = None
    #: The pipeline worker that claimed it (``apx drain``, ``apx serve --workers``);
    #: None when a synchronous submit or ``drain`` decided it without a claim.
    claimed_by: str | None = None


@dataclass(frozen=True, kw_only=True)
class RecentIntent:
    """The facts admission needs about an earlier intent."""

    id: str
    tenant: str
    agent: str
    dedupe_key: str
    status: Status
    received_at: datetime
    targets: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class BreakerState:
    """A circuit breaker for one tenant + environment.

    ``count_from`` is when the deploy count restarted: the last human reset or
    the end of the last cool-down. Deploys before it never count again.
    """

    tenant: str
    environment: str
    open: bool
    opened_at: datetime | None = None
    closes_at: datetime | None = None
    reason: str = ""
    tripped_by: str | None = None
    count_from: datetime | None = None
    reset_at: datetime | None = None
    reset_by: str | None = None


@dataclass(frozen=True, kw_only=True)
class PolicyChange:
    """A policy bundle coming into force: which one, from where, who made the change."""

    name: str
    version: str
    sha256: str
    source: str
    by: str
    at: datetime


@dataclass(frozen=True, kw_only=True)
class Review:
    """One human's verdict on a PR, bound to the PR's head commit at that moment."""

    pr_id: str
    #: The PR branch head the reviewer saw; a later head makes this review stop counting.
    head: str
    reviewer: str
    #: ``approve``, ``reject``, or ``expire`` (the request ran out of time: apx's default deny).
    verdict: str
    at: datetime
    comment: str = ""


@dataclass(frozen=True, kw_only=True)
class PullRequestView:
    """A PR with its intent, its reviews and where it stands."""

    id: str
    intent: IntentView
    branch: str
    base: str
    head: str
    #: ``open``, ``merged``, ``rejected`` or ``expired``.
    status: str
    created_at: datetime
    expires_at: datetime | None
    reviews: tuple[Review, ...] = ()
    merge_commit: str | None = None
    closed_reason: str | None = None
    #: Where humans review it (``PrPublication`` fields), if a provider published it.
    publication: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class CanaryWatch:
    """A landed change whose effect on the error rate apx is watching."""

    intent_id: str
    environment: str
    started_at: datetime
    until: datetime
    #: ``watching``, then ``passed``, ``rolled_back``, ``rollback_failed`` or ``no_data``.
    status: str = "watching"
    reason: str = ""
    settled_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class IntentQuery:
    """Filters of ``apx intents list``; ``None`` means any. All given filters must hold."""

    agent: str | None = None
    status: Status | None = None
    environment: str | None = None
    tenant: str | None = None
    target: str | None = None
    trace_id: str | None = None
    #: Received at or after this instant.
    since: datetime | None = None
    #: Received before this instant: with ``since``, the half-open window [since, until),
    #: so consecutive windows never show an intent twice.
    until: datetime | None = None
    #: Intents whose ``metadata.causedBy`` is this id (its children).
    caused_by: str | None = None
    #: Case-insensitive substring of any reason on the intent's timeline (which
    #: carries the decision's reasons too).
    reason: str | None = None
    #: Keyset paging: only intents older than this sequence number, i.e. the
    #: page after the one whose last (oldest) intent had it. Stable while new
    #: intents arrive, unlike an offset.
    before_seq: int | None = None
    limit: int = 100

    _ASCII_LOWER: ClassVar[dict[int, int]] = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

    def reason_matches(self, reasons: Iterable[str]) -> bool:
        """Whether :attr:`reason` is in one of ``reasons`` (True when no reason is asked for).

        Case is ignored for ASCII letters only: that is what both databases
        can do on the stored JSON text (non-ASCII is kept there as ``\\uXXXX``
        escapes, which ``lower()``/``ILIKE`` leave alone), and the fake must
        answer as they do.
        """
        if self.reason is None:
            return True
        wanted = self.reason.translate(self._ASCII_LOWER)
        return any(wanted in text.translate(self._ASCII_LOWER) for text in reasons)


# -- rules every store applies to what it is given (the SQL store and the fake alike) --


def utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime is refused (the log cannot guess its zone)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} given to the intent log; use UTC")
    return value.astimezone(UTC)


def utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


def plain_json(value: dict[str, Any], what: str) -> dict[str, Any]:
    """``value`` as a JSON column gives it back; what JSON cannot hold is refused here.

    Checked before any transaction because psycopg serialises JSON itself and
    its ``TypeError`` would otherwise escape unwrapped.
    """
    try:
        copied: dict[str, Any] = json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise StorageError(f"could not {what}: the document is not plain JSON ({exc})") from exc
    return copied


#: What an intent's document becomes once retention prunes it.
PRUNED_DOCUMENT: dict[str, Any] = {"pruned": True}


def pruned_decision(decision: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stored decision without its payload: the diff and the rollback recipe (inverse changes) go;
    status, reasons, checks, blast radius, policy version, commit and PR stay."""
    if decision is None:
        return None
    return {**decision, "diff": {}, "rollback": None}


#: Statuses a review can move an intent on from.
REVIEWABLE = frozenset({Status.PR_OPEN, Status.APPROVED})


def not_in(decision: Decision, expected: Collection[Status], current: Status | None) -> ApxError:
    """The error for moving an intent on from a status it is not in."""
    if current is None:
        return NotFound(f"intent {decision.intent_id} is not in the intent log", intent_id=decision.intent_id)
    allowed = ", ".join(sorted(s.value for s in expected))
    return InternalError(
        f"intent {decision.intent_id} is {current.value}, not {allowed}; "
        f"refusing to record it as {decision.status.value}",
        intent_id=decision.intent_id,
    )


def not_pending(intent_id: str, current: Status | None) -> ApxError:
    """The error for deciding an intent that is unknown or already decided (a bug upstream)."""
    if current is None:
        return NotFound(f"intent {intent_id} is not in the intent log", intent_id=intent_id)
    return InternalError(
        f"intent {intent_id} is already {current.value}; refusing to overwrite its decision",
        intent_id=intent_id,
    )
