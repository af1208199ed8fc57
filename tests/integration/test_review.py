"""Human review of prod PRs end to end: approve and merge, reject, expire, conflicts, restarts.

Real home (SQLite or PostgreSQL, a real git repo, real SSH signing) and the
real langgraph review graph with its durable checkpointer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from test_pipeline import POOL, branch_file, doc, git, intent

from orchestrator.bootstrap import App, build
from orchestrator.decision import Status
from orchestrator.errors import BadInput
from orchestrator.settings import Settings
from orchestrator.testing import FrozenClock


@pytest.fixture
def app(settings: Settings, clock: FrozenClock) -> Iterator[App]:
    application = build(settings.home, settings=settings, clock=clock)
    yield application
    application.close()


def with_approvals(settings: Settings, n: int) -> Settings:
    prod = settings.environments["prod"].model_copy(update={"approvals": n})
    return settings.model_copy(update={"environments": {**settings.environments, "prod": prod}})


def open_pr(app: App, replicas: int = 6, agent: str = "optimizer") -> Any:
    decision = app.orchestrator.submit(intent("prod", ("update", doc(POOL, replicas=replicas))), agent=agent)
    assert decision.status is Status.PR_OPEN, decision.reasons
    assert decision.pr is not None
    return decision.pr


def actions(app: App) -> list[str]:
    from audit.entry import parse_body

    return [parse_body(body)["action"] for _s, body, _l in app.store.audit.rows()]


def test_an_approval_merges_with_a_signed_merge_commit(app: App) -> None:
    pr = open_pr(app)
    assert app.store.pull_request(pr.id) is not None
    outcome = app.reviews.approve(pr.id, by="alice", comment="looks right")
    assert outcome.result == "merged", outcome.message
    merged = app.store.pull_request(pr.id)
    assert merged is not None and merged.status == "merged"
    assert merged.intent.status is Status.MERGED
    assert [e.status for e in merged.intent.events][-3:] == [Status.PR_OPEN, Status.APPROVED, Status.MERGED]
    head = git(app, "rev-parse", "prod").stdout.strip()
    assert head == merged.merge_commit
    parents = git(app, "rev-list", "--parents", "-n", "1", "prod").stdout.split()[1:]
    assert parents[1] == pr.head  # the PR branch is the merge's second parent
    assert git(app, "verify-commit", "prod").returncode == 0
    message = git(app, "log", "-1", "--format=%B", "prod").stdout
    assert f"Intent-Id: {merged.intent.record.id}" in message and "Approved-By: alice" in message
    assert branch_file(app, "prod", POOL)["spec"]["replicas"] == 6
    assert "review.approve" in actions(app) and actions(app)[-1] == "intent.merged"
    assert app.audit.verify().ok


@pytest.mark.parametrize("reviewer", ["optimizer", "agent:optimizer", "agent:security", "builder"])
def test_agents_and_the_submitter_can_never_approve(app: App, reviewer: str) -> None:
    app.orchestrator.submit(intent("dev", ("update", doc(POOL, replicas=5))), agent="builder")
    pr = open_pr(app)
    with pytest.raises(BadInput, match=r"agent|submitted"):
        app.reviews.approve(pr.id, by=reviewer)
    still = app.store.pull_request(pr.id)
    assert still is not None and still.status == "open" and still.reviews == ()


def test_approvals_wait_for_the_required_number_and_survive_a_restart(
    settings: Settings, clock: FrozenClock
) -> None:
    settings = with_approvals(settings, 2)
    first = build(settings.home, settings=settings, clock=clock)
    try:
        pr = open_pr(first)
        waiting = first.reviews.approve(pr.id, by="alice")
        assert waiting.result == "waiting" and "1 of 2" in waiting.message
        again = first.reviews.approve(pr.id, by="alice")  # the same person twice still counts once
        assert again.result == "waiting"
    finally:
        first.close()
    # A new process: the review thread is resumed from the durable checkpointer.
    second = build(settings.home, settings=settings, clock=clock)
    try:
        assert second.reviews.approve(pr.id, by="bob").result == "merged"
        merged = second.store.pull_request(pr.id)
        assert merged is not None and merged.status == "merged"
        assert "Approved-By: alice, bob" in git(second, "log", "-1", "--format=%B", "prod").stdout
    finally:
        second.close()


def test_a_rejection_closes_the_pr_and_leaves_prod_alone(app: App) -> None:
    before = git(app, "rev-parse", "prod").stdout
    pr = open_pr(app)
    outcome = app.reviews.reject(pr.id, by="carol", comment="not during the sale")
    assert outcome.result == "rejected"
    closed = app.store.pull_request(pr.id)
    assert closed is not None and closed.status == "rejected"
    assert closed.intent.status is Status.PR_REJECTED
    assert closed.closed_reason == "rejected by carol: not during the sale"
    assert git(app, "rev-parse", "prod").stdout == before
    with pytest.raises(BadInput, match="already rejected"):
        app.reviews.approve(pr.id, by="alice")


def test_an_unanswered_review_request_expires_as_a_rejection(app: App, clock: FrozenClock) -> None:
    pr = open_pr(app)
    assert app.reviews.expire_due() == []
    clock.advance(app.settings.environments["prod"].review_timeout)
    [expired] = app.reviews.expire_due()
    assert expired.result == "expired"
    closed = app.store.pull_request(pr.id)
    assert closed is not None and closed.status == "expired"
    assert closed.intent.status is Status.PR_REJECTED
    assert closed.reviews[-1].reviewer == "apx" and closed.reviews[-1].verdict == "expire"
    assert "default deny" in (closed.closed_reason or "")


def test_a_change_that_landed_meanwhile_is_a_reported_conflict_never_a_forced_merge(app: App) -> None:
    pr = open_pr(app, replicas=6)
    other = open_pr(app, replicas=8, agent="builder")
    assert app.reviews.approve(other.id, by="alice").result == "merged"
    prod = git(app, "rev-parse", "prod").stdout
    outcome = app.reviews.approve(pr.id, by="alice")
    assert outcome.result == "conflict", outcome.message
    closed = app.store.pull_request(pr.id)
    assert closed is not None and closed.status == "rejected" and closed.intent.status is Status.PR_REJECTED
    assert "spec.replicas" in (closed.closed_reason or "")
    assert git(app, "rev-parse", "prod").stdout == prod
    assert branch_file(app, "prod", POOL)["spec"]["replicas"] == 8


def test_approvals_bind_to_the_head_they_saw(app: App) -> None:
    pr = open_pr(app)
    app.repo.commit(
        branch=pr.branch, parent=pr.head, files={"README.md": "edited by hand\n"}, message="hand edit"
    )
    with pytest.raises(BadInput, match="changed after apx opened it"):
        app.reviews.approve(pr.id, by="alice")


# -- rollback -------------------------------------------------------------------------


def test_a_dev_change_rolls_back_as_a_signed_commit_linked_both_ways(app: App, clock: FrozenClock) -> None:
    applied = app.orchestrator.submit(intent("dev", ("update", doc(POOL, replicas=6))), agent="optimizer")
    assert applied.status is Status.APPLIED
    undo = app.orchestrator.rollback(applied.intent_id, by="alice", reason="error rate up")
    assert undo.status is Status.APPLIED, undo.reasons
    assert branch_file(app, "dev", POOL)["spec"]["replicas"] == 4
    assert git(app, "verify-commit", "dev").returncode == 0
    original = app.store.get(applied.intent_id)
    undone = app.store.get(undo.intent_id)
    assert original is not None and original.status is Status.ROLLED_BACK
    assert original.decision is not None and original.decision.rolled_back_by == undo.intent_id
    assert undone is not None and undone.record.caused_by == applied.intent_id
    assert "requested by alice: error rate up" in undone.record.document["spec"]["rationale"]
    # An undo is not an agent fight: no oscillation flag, and the breaker stays closed.
    assert not any("oscillation" in r for r in undo.reasons)
    assert not any(state.open for state in app.store.breakers())
    # An agent that sets the rolled-back value again is fighting the rollback: that is flagged.
    clock.advance(360)  # past the optimizer's rate limit
    again = app.orchestrator.submit(intent("dev", ("update", doc(POOL, replicas=6))), agent="optimizer")
    assert any("oscillation" in r and "apx-rollback" in r for r in again.reasons), again.reasons


def test_a_rollback_over_a_later_change_to_the_same_field_is_refused(app: App, clock: FrozenClock) -> None:
    first = app.orchestrator.submit(intent("dev", ("update", doc(POOL, replicas=6))), agent="optimizer")
    clock.advance(600)
    later = app.orchestrator.submit(intent("dev", ("update", doc(POOL, replicas=8))), agent="builder")
    assert later.status is Status.APPLIED
    refused = app.orchestrator.rollback(first.intent_id, by="alice")
    assert refused.status is Status.REJECTED
    assert "refused as unsafe" in refused.reasons[0] and "spec.replicas" in " ".join(refused.reasons)
    assert branch_file(app, "dev", POOL)["spec"]["replicas"] == 8
    original = app.store.get(first.intent_id)
    assert original is not None and original.status is Status.APPLIED
    with pytest.raises(BadInput, match="only an applied or merged intent"):
        app.orchestrator.rollback(refused.intent_id, by="alice")


def test_a_prod_rollback_goes_through_review_and_marks_the_original_when_it_merges(app: App) -> None:
    pr = open_pr(app)
    assert app.reviews.approve(pr.id, by="alice").result == "merged"
    merged = app.store.pull_request(pr.id)
    assert merged is not None
    undo = app.orchestrator.rollback(merged.intent.record.id, by="bob")
    assert undo.status is Status.PR_OPEN and undo.pr is not None
    still = app.store.get(merged.intent.record.id)
    assert still is not None and still.status is Status.MERGED
    assert app.reviews.approve(undo.pr.id, by="carol").result == "merged"
    assert branch_file(app, "prod", POOL)["spec"]["replicas"] == 4
    done = app.store.get(merged.intent.record.id)
    assert done is not None and done.status is Status.ROLLED_BACK
