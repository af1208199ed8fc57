"""The ports: every external system the orchestrator talks to, as a Protocol.

Implementations are named for their technology and live in their own module
(:mod:`orchestrator.sql_store`, :mod:`orchestrator.git_repo`,
:mod:`orchestrator.locks`); in-memory fakes for tests live in
:mod:`orchestrator.testing` and pass the same contract tests.
Only :mod:`orchestrator.bootstrap` picks implementations.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from orchestrator.decision import Decision, PullRequestRef, Status
from orchestrator.records import (
    BreakerState,
    CanaryWatch,
    IntentQuery,
    IntentRecord,
    IntentView,
    PolicyChange,
    PullRequestView,
    RecentIntent,
    Review,
)


class IntentStore(Protocol):
    """The intent log. Every write is one transaction: all of it or none."""

    def receive(
        self,
        record: IntentRecord,
        *,
        status: Status,
        decision: Decision | None,
        breaker: BreakerState | None = None,
    ) -> int:
        """Insert an arriving intent with its first status; return its sequence number.

        ``status`` is ``queued`` for an admitted intent (``decision`` is None) or a
        held status with its ``decision``. The timeline gets ``received`` and
        ``status``, both at ``record.received_at``. ``breaker`` is the breaker's
        new state when admission changed it, saved in the same transaction.
        Every write here and in :meth:`decide` appends its audit entries
        (:mod:`orchestrator.audit_trail`) in the same transaction.
        """
        ...

    def decide(self, decision: Decision, *, pr: PullRequestRef | None = None) -> None:
        """Record a pending intent's final decision (and its PR, if one was opened)."""
        ...

    def get(self, intent_id: str) -> IntentView | None: ...

    def query(self, query: IntentQuery) -> list[IntentView]:
        """Newest first."""
        ...

    def recent(
        self, *, environment: str, since: datetime, statuses: Collection[Status] | None = None
    ) -> list[RecentIntent]:
        """Intents in ``environment`` received at or after ``since`` (with one of
        ``statuses``, if given), oldest first."""
        ...

    def pending(self, *, environment: str) -> list[IntentView]:
        """Intents in ``environment`` still ``queued``, in arrival (sequence) order."""
        ...

    def claim(self, *, worker: str, environments: Collection[str], lease: timedelta) -> IntentView | None:
        """Claim for ``worker``, until ``lease`` from now, the oldest queued intent among
        ``environments`` that heads its environment's queue and has no live claim on it.

        Atomic across processes: two workers never hold one intent, and while an
        environment's head is claimed no other worker gets anything from that
        environment, so each is decided in arrival order. None when nothing is claimable.
        """
        ...

    def release(self, intent_id: str, *, worker: str) -> None:
        """Drop ``worker``'s claim on a still-queued intent (it gave up without deciding)."""
        ...

    def prune_payloads(self, *, before: datetime, at: datetime, batch: int = 500) -> int:
        """Retention: replace the document, diff and rollback recipe of intents decided
        before ``before`` with a stub, keeping everything else and every audit entry;
        never one still open (pending, or a PR not yet merged). One ``retention.pruned``
        audit entry per batch of ``batch``. Returns how many were pruned."""
        ...


class ReviewStore(Protocol):
    """PRs and their reviews (the intent store implements it)."""

    def pull_request(self, ref: str) -> PullRequestView | None:
        """By PR id or by its intent's id."""
        ...

    def pull_requests(
        self, *, status: str | None = None, environment: str | None = None, limit: int = 100
    ) -> list[PullRequestView]:
        """Newest first."""
        ...

    def agents(self) -> frozenset[str]:
        """Every name an intent was submitted under: these are agents, never reviewers."""
        ...

    def update_pull_request(
        self,
        pr_id: str,
        *,
        review: Review | None = None,
        decision: Decision | None = None,
        status: str | None = None,
        merge_commit: str | None = None,
        closed_reason: str | None = None,
        publication: dict[str, Any] | None = None,
    ) -> None:
        """One transaction: add ``review``; move the intent on to ``decision`` (from
        ``pr_open`` or ``approved`` only); set the PR's ``status`` (only while it is
        open) and the other fields given. Each step appends its audit entry."""
        ...

    def advance(self, decision: Decision, *, expected: Collection[Status]) -> None:
        """Move a decided intent on (``applied`` → ``rolled_back``), only from ``expected``."""
        ...


class CanaryStore(Protocol):
    def watch_canary(self, watch: CanaryWatch) -> None:
        """Start a watch (a second watch of one intent is ignored)."""
        ...

    def canaries(self, *, status: str | None = None) -> list[CanaryWatch]:
        """Oldest first."""
        ...

    def settle_canary(self, intent_id: str, *, verdict: str, reason: str, at: datetime) -> None:
        """Close a watch with its verdict; audited as ``canary.<verdict>``."""
        ...


class BreakerStore(Protocol):
    def breaker(self, *, tenant: str, environment: str) -> BreakerState | None: ...

    def save_breaker(self, state: BreakerState) -> None: ...

    def breakers(self) -> list[BreakerState]: ...


class PolicyHistory(Protocol):
    """Which policy bundle was in force when, and who brought it in."""

    def record_policy(self, change: PolicyChange) -> bool:
        """Record ``change`` if its bundle differs from the last one recorded; True if it did."""
        ...

    def policy_history(self) -> list[PolicyChange]:
        """Oldest first."""
        ...


@dataclass(frozen=True)
class Snapshot:
    """An environment branch at one commit: ``<Kind>/<name>.yaml`` → text."""

    revision: str
    files: Mapping[str, str]


class ConfigRepo(Protocol):
    """The config repository: one branch per environment."""

    def head(self, branch: str) -> str | None:
        """The commit ``branch`` points at, or None if there is no such branch."""
        ...

    def read(self, revision: str) -> Snapshot: ...

    def parent(self, revision: str) -> str | None:
        """The first parent of commit ``revision`` (the branch before it), or None for a root commit.

        ``apx intents blame`` reads a resource there to see what an intent's commit changed.
        """
        ...

    def intent_commit(self, branch: str, intent_id: str, *, since: str) -> str | None:
        """The commit on ``branch`` after ``since`` carrying ``Intent-Id: intent_id``, if any:
        what a decision that died before its record left behind."""
        ...

    def commit(
        self,
        *,
        branch: str,
        parent: str,
        files: Mapping[str, str | None],
        message: str,
        merge: str | None = None,
    ) -> str:
        """Make one signed commit on top of ``parent`` and move ``branch`` to it.

        With ``merge``, a merge commit whose second parent is that commit.

        ``files`` maps a path to its new text, or to None to delete it. The
        branch moves only if it still points at ``parent`` (or does not exist
        yet); otherwise :class:`orchestrator.errors.BranchMoved` is raised and
        nothing changes.
        """
        ...

    def branches(self, prefix: str = "") -> Sequence[str]: ...


@dataclass(frozen=True, kw_only=True)
class PrPublication:
    """What a PR provider made of a PR: where humans review it."""

    provider: str
    url: str | None = None
    #: The provider's own number for it (GitHub's PR number).
    number: int | None = None


class PrProvider(Protocol):
    """Where humans see a PR.

    apx itself owns the PR: the signed branch ``apx/<intent-id>`` in the config
    repo, the record, the approvals and the signed merge commit. A provider
    mirrors that to a review tool. The local provider is just the record; the
    GitHub provider pushes the branch and opens a real PR. Every call is
    idempotent: a retry after a crash must not open a second PR.
    """

    name: str

    def publish(self, pr: PullRequestRef, *, title: str, body: str) -> PrPublication: ...

    def close(self, pr: PullRequestRef, publication: PrPublication, *, reason: str) -> None:
        """The PR was rejected or expired: close it with ``reason``."""
        ...

    def merged(self, pr: PullRequestRef, publication: PrPublication, *, merge_commit: str) -> None:
        """apx merged it (``merge_commit`` is now the head of ``pr.base``): mirror that."""
        ...


class Observer(Protocol):
    """Told what the pipeline did, after it is recorded: PR publication, review
    threads, notifications, canaries. An observer's failure is logged, never
    turned into a failed decision."""

    def decided(self, decision: Decision) -> None: ...

    def breaker_changed(self, state: BreakerState, *, event: str) -> None:
        """``event`` is ``tripped`` or ``reset``."""
        ...


class EnvironmentLock(Protocol):
    def hold(self, environment: str) -> AbstractContextManager[None]:
        """Exclusive, cross-process hold on one environment's decisions."""
        ...
