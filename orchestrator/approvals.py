"""Who may approve a PR, and which approvals count. Pure rules, no I/O.

The platform's first principle is that AI is not root: an agent can never
approve, and nobody approves their own change. An approval is bound to the PR's
head commit when it was given, so if the branch changes afterwards the earlier
approvals stop counting and the new head needs its own.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from orchestrator.records import Review

#: Principals that are agents, not humans, start with this (``agent:optimizer``).
AGENT_PREFIX = "agent:"
#: The agent name of apx's own rollback intents (an agent: never a reviewer).
ROLLBACK_AGENT = "apx-rollback"


def refusal(reviewer: str, *, submitter: str, agents: Collection[str]) -> str | None:
    """Why ``reviewer`` may not review a PR submitted by ``submitter``; None if they may.

    ``agents`` are the names every agent has submitted under: a reviewer name
    that is one of them is an agent, whatever it claims to be.
    """
    name = reviewer.strip()
    if not name:
        return "a review needs the reviewer's name"
    if name.startswith(AGENT_PREFIX) or name in agents:
        return f"{name!r} is an agent; agents can never approve or reject a PR (only human reviewers can)"
    if name in (submitter, f"{AGENT_PREFIX}{submitter}"):
        return f"{name!r} submitted this change and cannot review it"
    return None


def approvals_at(reviews: Sequence[Review], head: str) -> list[str]:
    """The reviewers whose latest word on ``head`` is an approval, in the order they gave it."""
    latest: dict[str, Review] = {}
    for review in reviews:
        if review.head == head and review.verdict in ("approve", "reject"):
            latest.pop(review.reviewer, None)
            latest[review.reviewer] = review
    return [name for name, review in latest.items() if review.verdict == "approve"]


def stale(reviews: Sequence[Review], head: str) -> list[str]:
    """Reviewers who approved an earlier head and have not approved this one."""
    now = set(approvals_at(reviews, head))
    return sorted({r.reviewer for r in reviews if r.verdict == "approve" and r.head != head} - now)
