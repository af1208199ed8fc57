"""Human review of PRs as a durable langgraph graph: wait, record, merge or close.

A PR's review is one langgraph thread (``thread_id`` = the PR id) paused at an
``interrupt`` until a human acts. Its checkpoints live in a durable
checkpointer: SQLite beside the home's database, or PostgreSQL when the intent
log is there. So a review survives a restart: a new process resumes the same
thread with ``Command(resume=...)`` and carries on where the old one stopped.
The intent log stays the record of what happened (every review, status and
merge is written there, audited, in one transaction each); the thread is the
execution that is waiting.

One turn of the graph:

``wait`` (interrupt) → ``act``: record the review; reject or expire → closed;
approve with fewer approvals than the environment needs → ``wait`` again;
approvals met → ``merge``: re-validate against the base branch as it is *now*,
then a signed merge commit, or — if another change landed in the way — a
reported conflict and a rejected PR, never a forced merge.

Every action runs under the environment's lock, like every other decision
there, so two reviewers approving at once cannot merge twice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from orchestrator import approvals, logs
from orchestrator.decision import Decision, Status
from orchestrator.errors import BadInput, NotFound
from orchestrator.records import PullRequestView, Review

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver

    from orchestrator.pipeline import Orchestrator
    from orchestrator.ports import ConfigRepo, PrProvider, ReviewStore

log = logs.get_logger("apx.review")

#: Who acts when a review request runs out of time.
EXPIRY_ACTOR = "apx"


class _State(TypedDict, total=False):
    pr_id: str
    action: dict[str, Any]
    #: Where ``act`` goes next: ``wait``, ``merge`` or ``done``.
    next: str
    #: What the last action led to (see :attr:`Outcome.result`).
    outcome: str


@dataclass(frozen=True)
class Outcome:
    """What one review action led to."""

    pr: PullRequestView
    #: ``waiting`` (needs more approvals), ``merged``, ``rejected``, ``expired`` or ``conflict``.
    result: str
    message: str


class ReviewFlow:
    def __init__(
        self,
        *,
        orchestrator: Orchestrator,
        repo: ConfigRepo,
        store: ReviewStore,
        provider: PrProvider,
        checkpointer: BaseCheckpointSaver[Any],
        required: Callable[[str], int],
        now: Callable[[], datetime],
        agents: Callable[[], Collection[str]],
        on_change: Callable[[str, PullRequestView, str], None] | None = None,
    ) -> None:
        self._orchestrator = orchestrator
        self._repo = repo
        self._store = store
        self._provider = provider
        self._required = required
        self._now = now
        self._agents = agents
        self._on_change = on_change or (lambda _kind, _pr, _message: None)
        self._graph = self._build().compile(checkpointer=checkpointer)

    # -- what humans (and the scheduler) call ------------------------------------------

    def opened(self, pr_id: str) -> None:
        """Start the PR's review thread: it runs to its first ``interrupt`` and waits there."""
        config = _config(pr_id)
        if not self._graph.get_state(config).next:
            self._graph.invoke({"pr_id": pr_id}, config)

    def approve(self, ref: str, *, by: str, comment: str = "") -> Outcome:
        return self._act(ref, {"verdict": "approve", "by": by, "comment": comment})

    def reject(self, ref: str, *, by: str, comment: str = "") -> Outcome:
        return self._act(ref, {"verdict": "reject", "by": by, "comment": comment})

    def expire_due(self) -> list[Outcome]:
        """Close every open PR whose review request has run out (default deny)."""
        now = self._now()
        expired = []
        for pr in self._store.pull_requests(status="open", limit=10_000):
            if pr.expires_at is not None and pr.expires_at <= now:
                expired.append(self._act(pr.id, {"verdict": "expire", "by": EXPIRY_ACTOR, "comment": ""}))
        return expired

    def _act(self, ref: str, action: dict[str, Any]) -> Outcome:
        pr = self._pull_request(ref)
        environment = pr.intent.record.environment
        with self._orchestrator.holding(environment):
            pr = self._pull_request(ref)  # again, under the lock
            if pr.status != "open":
                raise BadInput(f"PR {pr.id} is already {pr.status}{_why(pr)}; nothing to review")
            if action["verdict"] != "expire":
                why = approvals.refusal(action["by"], submitter=pr.intent.record.agent, agents=self._agents())
                if why is not None:
                    raise BadInput(why)
            actual = self._repo.head(pr.branch)
            if action["verdict"] == "approve" and actual != pr.head:
                raise BadInput(
                    f"PR branch {pr.branch} was changed after apx opened it (it is at "
                    f"{(actual or 'nothing')[:12]}; apx made {pr.head[:12]}): approvals bind to the commit "
                    "apx made and validated, so none can count now; reject this PR and submit the change "
                    "again"
                )
            action = {**action, "head": pr.head, "at": self._now().isoformat()}
            config = _config(pr.id)
            if not self._graph.get_state(config).next:
                self._graph.invoke({"pr_id": pr.id}, config)
            state = self._graph.invoke(Command(resume=action), config)
            after = self._pull_request(pr.id)
        result = state.get("outcome", "waiting")
        return Outcome(pr=after, result=result, message=_message(after, result, self._required(environment)))

    # -- the graph ----------------------------------------------------------------------

    def _build(self) -> StateGraph[_State]:
        graph = StateGraph(_State)
        graph.add_node("wait", self._wait)
        graph.add_node("act", self._record)
        graph.add_node("merge", self._merge)
        graph.add_edge(START, "wait")
        graph.add_edge("wait", "act")
        graph.add_conditional_edges(
            "act", lambda s: s["next"], {"wait": "wait", "merge": "merge", "done": END}
        )
        graph.add_edge("merge", END)
        return graph

    def _wait(self, state: _State) -> _State:
        action: dict[str, Any] = interrupt({"pr": state["pr_id"]})
        return {"action": action}

    def _record(self, state: _State) -> _State:
        action = state["action"]
        pr = self._pull_request(state["pr_id"])
        verdict = action["verdict"]
        review = Review(
            pr_id=pr.id,
            head=action["head"],
            reviewer=action["by"],
            verdict=verdict,
            at=datetime.fromisoformat(action["at"]),
            comment=action.get("comment", ""),
        )
        record = pr.intent
        if verdict in ("reject", "expire"):
            why = (
                f"rejected by {review.reviewer}" + (f": {review.comment}" if review.comment else "")
                if verdict == "reject"
                else f"review request expired at {pr.expires_at.isoformat() if pr.expires_at else '?'} "
                "without enough approvals (default deny)"
            )
            self._store.update_pull_request(
                pr.id,
                review=review,
                decision=self._next(record, Status.PR_REJECTED, [why], review.at),
                status="rejected" if verdict == "reject" else "expired",
                closed_reason=why,
            )
            closed = self._pull_request(pr.id)
            self._provider.close(_ref(closed), _publication(closed), reason=why)
            self._on_change("pr.rejected", closed, why)
            return {"next": "done", "outcome": "rejected" if verdict == "reject" else "expired"}
        given = approvals.approvals_at([*pr.reviews, review], pr.head)
        needed = self._required(record.record.environment)
        if len(given) < needed:
            self._store.update_pull_request(pr.id, review=review)
            self._on_change("pr.approved", self._pull_request(pr.id), f"approved by {review.reviewer}")
            return {"next": "wait", "outcome": "waiting"}
        approved = f"approved by {', '.join(given)} at {pr.head[:12]}"
        self._store.update_pull_request(
            pr.id, review=review, decision=self._next(record, Status.APPROVED, [approved], review.at)
        )
        self._on_change("pr.approved", self._pull_request(pr.id), approved)
        return {"next": "merge", "outcome": "approved"}

    def _merge(self, state: _State) -> _State:
        pr = self._pull_request(state["pr_id"])
        decision = self._orchestrator.merge(pr)
        if decision.status is Status.MERGED:
            self._store.update_pull_request(
                pr.id, decision=decision, status="merged", merge_commit=decision.commit
            )
            merged = self._pull_request(pr.id)
            self._orchestrator.landed(decision)
            self._provider.merged(_ref(merged), _publication(merged), merge_commit=decision.commit or "")
            self._on_change("pr.merged", merged, decision.reasons[0] if decision.reasons else "merged")
            return {"outcome": "merged"}
        self._store.update_pull_request(
            pr.id, decision=decision, status="rejected", closed_reason="; ".join(decision.reasons)
        )
        closed = self._pull_request(pr.id)
        self._provider.close(_ref(closed), _publication(closed), reason="; ".join(decision.reasons))
        self._on_change("pr.rejected", closed, "; ".join(decision.reasons))
        return {"outcome": "conflict"}

    # -- helpers ----------------------------------------------------------------------

    def _next(self, view: Any, status: Status, reasons: list[str], at: datetime) -> Decision:
        current: Decision = view.decision
        return current.model_copy(update={"status": status, "reasons": [*reasons], "decided_at": at})

    def _pull_request(self, ref: str) -> PullRequestView:
        pr = self._store.pull_request(ref)
        if pr is None:
            raise NotFound(f"there is no PR {ref!r} (give the PR id or its intent's id)")
        return pr


def _config(pr_id: str) -> Any:
    return {"configurable": {"thread_id": pr_id}}


def _why(pr: PullRequestView) -> str:
    return f" ({pr.closed_reason})" if pr.closed_reason else ""


def _ref(pr: PullRequestView) -> Any:
    from orchestrator.decision import PullRequestRef

    return PullRequestRef(id=pr.id, branch=pr.branch, base=pr.base, head=pr.head, status=pr.status)


def _publication(pr: PullRequestView) -> Any:
    from orchestrator.ports import PrPublication

    return PrPublication(**(pr.publication or {"provider": "local"}))


def _message(pr: PullRequestView, result: str, required: int) -> str:
    if result == "waiting":
        given = approvals.approvals_at(pr.reviews, pr.head)
        return f"PR {pr.id}: {len(given)} of {required} approvals ({', '.join(given)}); waiting for more"
    if result == "merged":
        return f"PR {pr.id} merged into {pr.base} as signed commit {pr.merge_commit}"
    return f"PR {pr.id} {pr.status}: {pr.closed_reason}"


# -- checkpointers -----------------------------------------------------------------------


@contextmanager
def sqlite_checkpointer(path: Path) -> Iterator[BaseCheckpointSaver[Any]]:
    """A SQLite checkpointer in its own file (langgraph owns its schema; ours is Alembic's)."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    try:
        saver = SqliteSaver(conn)
        saver.setup()
        yield saver
    finally:
        conn.close()


@contextmanager
def postgres_checkpointer(url: str) -> Iterator[BaseCheckpointSaver[Any]]:
    """The PostgreSQL checkpointer, on the intent log's database (``postgresql+psycopg://`` → libpq URL)."""
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername="postgresql")
    conninfo = parsed.render_as_string(hide_password=False)
    with psycopg.Connection.connect(
        conninfo, autocommit=True, prepare_threshold=0, row_factory=dict_row
    ) as conn:
        saver = PostgresSaver(conn)
        saver.setup()
        yield saver


def checkpointer_for(database_url: str, home: Path) -> AbstractContextManager[BaseCheckpointSaver[Any]]:
    if database_url.startswith("postgresql"):
        return postgres_checkpointer(database_url)
    return sqlite_checkpointer(home / "reviews.sqlite")
