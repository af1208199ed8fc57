"""The intent-log query filters of issue 4, run over every store (fake, SQLite, PostgreSQL).

``--caused-by``, ``--reason``, ``--until`` and keyset paging, alone and combined
with the older filters; the ``store`` fixture (tests/conftest.py) runs each case
on the in-memory fake and on both databases, so the fake answers as they do.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from orchestrator.decision import Decision, Status
from orchestrator.records import IntentQuery, IntentRecord, IntentView
from orchestrator.sql_store import SqlIntentStore
from orchestrator.testing import InMemoryIntentStore

Store = InMemoryIntentStore | SqlIntentStore
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def record(
    n: int,
    *,
    agent: str = "builder",
    environment: str = "dev",
    caused_by: str | None = None,
    targets: tuple[str, ...] = ("WorkerPool/checkout",),
) -> IntentRecord:
    return IntentRecord(
        id=f"in-{n:026d}",
        trace_id=f"{n:032x}",
        tenant="acme",
        environment=environment,
        agent=agent,
        caused_by=caused_by,
        dedupe_key=f"key-{n}",
        base_revision="a" * 40,
        received_at=T0 + timedelta(minutes=n),
        document={"apiVersion": "apx/v1", "kind": "Intent", "spec": {"environment": environment}},
        targets=targets,
    )


def ids(found: list[IntentView]) -> list[str]:
    return [v.record.id for v in found]


def receive(store: Store, rec: IntentRecord, status: Status = Status.QUEUED, *reasons: str) -> None:
    decision = None
    if status is not Status.QUEUED:
        decision = Decision(
            intent_id=rec.id,
            trace_id=rec.trace_id,
            status=status,
            tenant=rec.tenant,
            environment=rec.environment,
            agent=rec.agent,
            reasons=list(reasons),
        )
    store.receive(rec, status=status, decision=decision)


def decide(store: Store, rec: IntentRecord, status: Status, *reasons: str) -> None:
    store.decide(
        Decision(
            intent_id=rec.id,
            trace_id=rec.trace_id,
            status=status,
            tenant=rec.tenant,
            environment=rec.environment,
            agent=rec.agent,
            reasons=list(reasons),
            decided_at=rec.received_at + timedelta(seconds=1),
        )
    )


# -- caused_by ------------------------------------------------------------------------


def test_caused_by_lists_the_children_of_one_intent_newest_first(store: Store) -> None:
    root = record(1)
    child_a = record(2, agent="optimizer", caused_by=root.id)
    grandchild = record(3, agent="builder", caused_by=child_a.id)
    child_b = record(4, agent="security", caused_by=root.id)
    for rec in (root, child_a, grandchild, child_b):
        receive(store, rec)

    assert ids(store.query(IntentQuery(caused_by=root.id))) == [child_b.id, child_a.id]
    assert ids(store.query(IntentQuery(caused_by=child_a.id))) == [grandchild.id]
    assert store.query(IntentQuery(caused_by=grandchild.id)) == []
    assert ids(store.query(IntentQuery(caused_by=root.id, agent="optimizer"))) == [child_a.id]


# -- since / until ---------------------------------------------------------------------


def test_until_excludes_its_own_instant_so_consecutive_windows_never_overlap(store: Store) -> None:
    recs = [record(n) for n in range(1, 6)]  # received at T0 + 1..5 minutes
    for rec in recs:
        receive(store, rec)
    edge = T0 + timedelta(minutes=3)

    assert ids(store.query(IntentQuery(until=edge))) == [recs[1].id, recs[0].id]
    assert ids(store.query(IntentQuery(since=edge))) == [recs[4].id, recs[3].id, recs[2].id]
    window = IntentQuery(since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=4))
    assert ids(store.query(window)) == [recs[2].id, recs[1].id]
    # The same instant written in another offset is the same edge.
    plus2 = edge.astimezone(timezone(timedelta(hours=2)))
    assert ids(store.query(IntentQuery(until=plus2))) == [recs[1].id, recs[0].id]


def test_a_naive_until_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        store.query(IntentQuery(until=datetime(2025, 6, 1, 12, 0)))


# -- reason ----------------------------------------------------------------------------


@pytest.fixture
def reasoned(store: Store) -> list[IntentRecord]:
    """Five intents whose timelines carry reasons from admission and from decisions."""
    held = record(1, agent="optimizer")
    receive(store, held, Status.RATE_LIMITED, "rate limited: 1 deploy per 5m for optimizer in dev")
    conflict = record(2)
    receive(store, conflict)
    decide(store, conflict, Status.REJECTED, "conflict: WorkerPool/checkout: spec.replicas changed")
    fight = record(3, agent="security")
    receive(store, fight)
    decide(
        store,
        fight,
        Status.APPLIED,
        "applied to dev",
        'oscillation: security sets WorkerPool/checkout spec.replicas back to 4 ("undo")',
    )
    quota = record(4)
    receive(store, quota)
    decide(store, quota, Status.REJECTED, "quota raised 100% → 250%", "policy: needs approval")
    plain = record(5)
    receive(store, plain)
    return [held, conflict, fight, quota, plain]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rate limited", [1]),  # a reason recorded on admission
        ("CONFLICT", [2]),  # case is ignored
        ("Spec.Replicas", [3, 2]),
        ('back to 4 ("undo")', [3]),  # quotes match as written
        ("100% →", [4]),  # non-ASCII and LIKE's own wildcard, literally
        ("1_0", []),  # '_' is not a wildcard
        ("%", [4]),
        ("approval", [4]),  # the second reason of a decision
        ('250%", "policy', []),  # never across two reasons
        ("not there", []),
    ],
)
def test_reason_is_a_case_insensitive_substring_of_any_reason_on_the_timeline(
    store: Store, reasoned: list[IntentRecord], text: str, expected: list[int]
) -> None:
    found = store.query(IntentQuery(reason=text))
    assert ids(found) == [reasoned[n - 1].id for n in expected]


def test_reason_combines_with_the_other_filters(store: Store, reasoned: list[IntentRecord]) -> None:
    assert ids(store.query(IntentQuery(reason="spec.replicas", agent="security"))) == [reasoned[2].id]
    assert ids(store.query(IntentQuery(reason="spec.replicas", status=Status.REJECTED))) == [reasoned[1].id]


# -- keyset paging ---------------------------------------------------------------------


def test_paging_by_sequence_shows_every_intent_once_newest_first(store: Store) -> None:
    recs = [record(n, agent="optimizer" if n % 3 == 0 else "builder") for n in range(1, 12)]
    for rec in recs:
        receive(store, rec)

    seen: list[str] = []
    before: int | None = None
    while True:
        page = store.query(IntentQuery(agent="builder", before_seq=before, limit=3))
        if not page:
            break
        seen += ids(page)
        before = page[-1].seq
    assert seen == [r.id for r in reversed(recs) if r.agent == "builder"]


def test_a_page_after_a_cursor_is_stable_while_new_intents_arrive(store: Store) -> None:
    for n in range(1, 6):
        receive(store, record(n))
    first = store.query(IntentQuery(limit=2))
    for n in range(6, 9):
        receive(store, record(n))
    second = store.query(IntentQuery(limit=2, before_seq=first[-1].seq))
    assert ids(first) == [record(5).id, record(4).id]
    assert ids(second) == [record(3).id, record(2).id]


def test_every_filter_at_once(store: Store) -> None:
    root = record(1)
    receive(store, root)
    match = record(3, agent="optimizer", caused_by=root.id, targets=("Route/r-01",))
    for rec in (
        record(2, agent="optimizer", caused_by=root.id, targets=("Route/r-01",)),
        match,
        record(4, agent="optimizer", caused_by=root.id, targets=("Route/r-02",)),
        record(5, agent="optimizer", caused_by=root.id, targets=("Route/r-01",), environment="prod"),
    ):
        receive(store, rec)
        decide(store, rec, Status.REJECTED, "canary weight over 50")
    later = record(6, agent="optimizer", caused_by=root.id, targets=("Route/r-01",))
    receive(store, later)
    decide(store, later, Status.REJECTED, "canary weight over 50")

    (newest,) = store.query(IntentQuery(limit=1))
    query = IntentQuery(
        agent="optimizer",
        status=Status.REJECTED,
        environment="dev",
        tenant="acme",
        target="Route/r-01",
        caused_by=root.id,
        reason="CANARY",
        since=T0 + timedelta(minutes=2),
        until=T0 + timedelta(minutes=6),
        before_seq=newest.seq,
    )
    assert ids(store.query(query)) == [match.id, record(2).id]
    assert ids(store.query(IntentQuery(trace_id=match.trace_id, reason="canary"))) == [match.id]


# -- target -----------------------------------------------------------------------------------


def test_a_target_in_most_intents_and_one_in_few_both_page_newest_first(store: Store) -> None:
    """A resource in nearly every intent and one in a few: both page newest first."""
    recs = []
    for n in range(1, 21):
        targets = ("WorkerPool/checkout",) if n % 7 else ("WorkerPool/checkout", "Route/r-01")
        recs.append(record(n, environment="prod" if n % 2 else "dev", targets=targets))
    for rec in recs:
        receive(store, rec)
    hot = [r.id for r in reversed(recs)]
    rare = [r.id for r in reversed(recs) if "Route/r-01" in r.targets]

    def pages(query: IntentQuery) -> list[str]:
        seen: list[str] = []
        while page := store.query(query):
            seen += ids(page)
            query = replace(query, before_seq=page[-1].seq)
        return seen

    assert pages(IntentQuery(target="WorkerPool/checkout", limit=3)) == hot
    assert pages(IntentQuery(target="WorkerPool/checkout", environment="dev", limit=3)) == [
        r.id for r in reversed(recs) if r.environment == "dev"
    ]
    assert pages(IntentQuery(target="Route/r-01", limit=1)) == rare == [recs[13].id, recs[6].id]
    assert store.query(IntentQuery(target="Route/r-02")) == []


def test_a_targets_pages_follow_arrival_with_the_other_filters(store: Store) -> None:
    """``--target`` with other filters and the cursor: newest *received into the log*
    first (not by ``received_at``), every match once, whichever place the resource
    has in its intent's list."""
    recs = []
    for n in range(1, 25):
        targets = ("WorkerPool/checkout",) if n % 3 else ("Route/r-01", "WorkerPool/checkout")
        recs.append(record(n, agent="optimizer" if n % 2 else "builder", targets=targets))
    arrival = recs[12:] + recs[:12]  # the later half (by received_at) arrives first
    rejected = {r.id for r in recs[::4]}
    for rec in arrival:
        receive(store, rec)
        if rec.id in rejected:
            decide(store, rec, Status.REJECTED, "replicas above 100")

    def pages(query: IntentQuery) -> list[str]:
        seen: list[str] = []
        while page := store.query(query):
            assert len(page) <= query.limit
            seen += ids(page)
            query = replace(query, before_seq=page[-1].seq)
        return seen

    newest_first = list(reversed(arrival))
    optimizer = IntentQuery(target="WorkerPool/checkout", agent="optimizer", limit=4)
    assert pages(optimizer) == [r.id for r in newest_first if r.agent == "optimizer"]
    queued_route = IntentQuery(target="Route/r-01", status=Status.QUEUED, limit=2)
    assert pages(queued_route) == [
        r.id for r in newest_first if "Route/r-01" in r.targets and r.id not in rejected
    ]
    since, until = T0 + timedelta(minutes=6), T0 + timedelta(minutes=18)
    window = IntentQuery(target="WorkerPool/checkout", since=since, until=until, limit=5)
    assert pages(window) == [r.id for r in newest_first if since <= r.received_at < until]
