"""The intent-log contract, run over every store: the in-memory fake, SQLite and PostgreSQL.

The first part holds for all of them (``store`` fixture); the second covers what
only the SQL adapter has: several processes on one database, migrations, and
the database's errors coming out as :class:`StorageError`.
"""

from __future__ import annotations

import multiprocessing
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from orchestrator import sql_store
from orchestrator.decision import Check, Decision, PullRequestRef, Rollback, Status
from orchestrator.errors import InternalError, NotFound, StorageError
from orchestrator.records import BreakerState, Event, IntentQuery, IntentRecord
from orchestrator.sql_store import SqlIntentStore, head_revision, migrate
from orchestrator.testing import FrozenClock, InMemoryIntentStore

Store = InMemoryIntentStore | SqlIntentStore
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def record(
    n: int,
    *,
    environment: str = "dev",
    agent: str = "builder",
    tenant: str = "acme",
    targets: tuple[str, ...] = ("WorkerPool/checkout",),
    at: datetime | None = None,
    trace_id: str | None = None,
) -> IntentRecord:
    return IntentRecord(
        id=f"in-{n:026d}",
        trace_id=trace_id or f"{n:032x}",
        tenant=tenant,
        environment=environment,
        agent=agent,
        caused_by=None,
        dedupe_key=f"key-{n}",
        base_revision="a" * 40,
        received_at=at or T0 + timedelta(seconds=n),
        # Keys deliberately out of alphabetical order: the log keeps what was written.
        document={
            "apiVersion": "apx/v1",
            "kind": "Intent",
            "metadata": {"tenant": tenant},
            "spec": {
                "environment": environment,
                "rationale": "p95 over SLO for 5m",
                "changes": [
                    {"action": "update", "resource": {"kind": "WorkerPool", "spec": {"replicas": 6}}}
                ],
            },
        },
        targets=targets,
    )


def decision(rec: IntentRecord, status: Status, **fields: Any) -> Decision:
    return Decision(
        intent_id=rec.id,
        trace_id=rec.trace_id,
        status=status,
        tenant=rec.tenant,
        environment=rec.environment,
        agent=rec.agent,
        **fields,
    )


def test_a_queued_intent_decided_applied_reads_back_with_its_timeline_and_decision(store: Store) -> None:
    rec = record(1, targets=("WorkerPool/checkout", "Route/r-01"))
    seq = store.receive(rec, status=Status.QUEUED, decision=None)
    applied = decision(
        rec,
        Status.APPLIED,
        reasons=["applied to dev"],
        checks=[Check(name="schema", passed=True), Check(name="rego", passed=True, messages=["ok"])],
        blast_radius={"routes": 1, "replica_delta": 2, "tenants": ["acme"], "quota_factor": 1.5},
        policy_version="1.2.0+sha256:abc",
        commit="c" * 40,
        rollback=Rollback(
            commit="c" * 40, branch="dev", git="git revert cccc", changes=[{"action": "update"}]
        ),
        diff={"WorkerPool/checkout.yaml": "-replicas: 4\n+replicas: 6\n"},
        decided_at=T0 + timedelta(minutes=1),
    )
    store.decide(applied)

    view = store.get(rec.id)
    assert view is not None
    assert view.seq == seq
    assert view.record == rec
    assert list(view.record.document) == ["apiVersion", "kind", "metadata", "spec"]
    assert view.status is Status.APPLIED
    assert view.decision == applied
    assert view.events == (
        Event(status=Status.RECEIVED, at=rec.received_at),
        Event(status=Status.QUEUED, at=rec.received_at),
        Event(status=Status.APPLIED, at=T0 + timedelta(minutes=1), reasons=("applied to dev",)),
    )
    assert all(e.at.utcoffset() == timedelta(0) for e in view.events)
    assert view.record.received_at.utcoffset() == timedelta(0)


def test_a_decision_without_a_time_is_stamped_by_the_clock(store: Store, clock: FrozenClock) -> None:
    rec = record(1)
    store.receive(rec, status=Status.QUEUED, decision=None)
    clock.advance(90)
    store.decide(decision(rec, Status.REJECTED, reasons=["replicas above 100"]))

    view = store.get(rec.id)
    assert view is not None
    assert view.events[-1] == Event(status=Status.REJECTED, at=clock.now(), reasons=("replicas above 100",))


def test_a_held_intent_is_stored_with_its_decision_and_is_not_pending(store: Store) -> None:
    first, second = record(1), record(2)
    store.receive(first, status=Status.QUEUED, decision=None)
    held = decision(second, Status.DUPLICATE, reasons=[f"duplicate of {first.id}"], duplicate_of=first.id)
    store.receive(second, status=Status.DUPLICATE, decision=held)

    view = store.get(second.id)
    assert view is not None
    assert (view.status, view.decision) == (Status.DUPLICATE, held)
    assert [e.status for e in view.events] == [Status.RECEIVED, Status.DUPLICATE]
    assert view.events[1].reasons == (f"duplicate of {first.id}",)
    assert [v.record.id for v in store.pending(environment="dev")] == [first.id]


def test_an_unknown_intent_is_none(store: Store) -> None:
    assert store.get("in-nope") is None


def test_pending_lists_queued_intents_of_one_environment_in_arrival_order(store: Store) -> None:
    # Received out of timestamp order on purpose: arrival (sequence) order wins.
    recs = [record(3), record(1), record(2), record(4, environment="prod"), record(5)]
    for rec in recs:
        store.receive(rec, status=Status.QUEUED, decision=None)
    store.decide(decision(recs[2], Status.APPLIED))

    pending = store.pending(environment="dev")
    assert [v.record.id for v in pending] == [recs[0].id, recs[1].id, recs[4].id]
    assert [v.seq for v in pending] == sorted(v.seq for v in pending)
    assert all(v.status is Status.QUEUED and v.decision is None for v in pending)
    assert [v.record.id for v in store.pending(environment="prod")] == [recs[3].id]


def test_recent_includes_the_window_start_and_excludes_what_came_before(store: Store) -> None:
    since = T0 + timedelta(minutes=10)
    before = record(1, at=since - timedelta(microseconds=1))
    on_edge = record(2, at=since, targets=("Route/r-01", "Route/r-02"))
    after = record(3, at=since + timedelta(minutes=4), agent="optimizer")
    elsewhere = record(4, at=since + timedelta(minutes=1), environment="prod")
    for rec in (before, on_edge, after, elsewhere):
        store.receive(rec, status=Status.QUEUED, decision=None)
    store.decide(decision(after, Status.PR_OPEN))

    recent = store.recent(environment="dev", since=since)
    assert [r.id for r in recent] == [on_edge.id, after.id]
    assert recent[0].targets == ("Route/r-01", "Route/r-02")
    assert recent[0].received_at == since
    assert (recent[1].agent, recent[1].status, recent[1].dedupe_key) == ("optimizer", Status.PR_OPEN, "key-3")
    # The same instant written in another offset is the same boundary.
    plus2 = since.astimezone(timezone(timedelta(hours=2)))
    assert [r.id for r in store.recent(environment="dev", since=plus2)] == [on_edge.id, after.id]


@pytest.fixture
def varied(store: Store) -> list[IntentRecord]:
    recs = [
        record(1, agent="builder", tenant="acme", environment="dev", targets=("WorkerPool/checkout",)),
        record(2, agent="optimizer", tenant="acme", environment="prod", targets=("Route/r-01",)),
        record(3, agent="security", tenant="globex", environment="dev", targets=("NetworkPolicy/edge",)),
        record(4, agent="optimizer", tenant="acme", environment="dev", targets=("Route/r-01", "Route/r-02")),
        record(5, agent="builder", tenant="acme", environment="dev", trace_id="f" * 32),
    ]
    for rec in recs:
        store.receive(rec, status=Status.QUEUED, decision=None)
    store.decide(decision(recs[1], Status.PR_OPEN))
    store.decide(decision(recs[3], Status.REJECTED))
    return recs


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (IntentQuery(), [5, 4, 3, 2, 1]),
        (IntentQuery(agent="optimizer"), [4, 2]),
        (IntentQuery(status=Status.QUEUED), [5, 3, 1]),
        (IntentQuery(status=Status.REJECTED), [4]),
        (IntentQuery(environment="prod"), [2]),
        (IntentQuery(tenant="globex"), [3]),
        (IntentQuery(target="Route/r-01"), [4, 2]),
        (IntentQuery(target="Route/r-02"), [4]),
        (IntentQuery(trace_id="f" * 32), [5]),
        (IntentQuery(since=T0 + timedelta(seconds=3)), [5, 4, 3]),
        (IntentQuery(limit=2), [5, 4]),
        (IntentQuery(agent="optimizer", environment="dev", target="Route/r-01"), [4]),
        (IntentQuery(agent="nobody"), []),
    ],
    ids=lambda v: "" if isinstance(v, list) else repr(v).replace("IntentQuery", ""),
)
def test_query_filters_newest_first(
    store: Store, varied: list[IntentRecord], query: IntentQuery, expected: list[int]
) -> None:
    found = store.query(query)
    assert [v.record.id for v in found] == [varied[n - 1].id for n in expected]


def test_query_returns_whole_views(store: Store, varied: list[IntentRecord]) -> None:
    (view,) = store.query(IntentQuery(status=Status.PR_OPEN))
    assert view.record == varied[1]
    assert view.decision == decision(varied[1], Status.PR_OPEN)
    assert [e.status for e in view.events] == [Status.RECEIVED, Status.QUEUED, Status.PR_OPEN]


@pytest.mark.parametrize("final", [Status.APPLIED, Status.REJECTED, Status.FAILED])
def test_deciding_a_final_intent_raises_and_keeps_the_first_decision(store: Store, final: Status) -> None:
    rec = record(1)
    store.receive(rec, status=Status.QUEUED, decision=None)
    first = decision(rec, final, reasons=["first"], decided_at=T0)
    store.decide(first)

    with pytest.raises(InternalError, match=f"already {final.value}"):
        store.decide(decision(rec, Status.APPLIED, reasons=["second"], decided_at=T0))

    view = store.get(rec.id)
    assert view is not None
    assert (view.status, view.decision, len(view.events)) == (final, first, 3)


def test_deciding_a_held_intent_raises(store: Store) -> None:
    rec = record(1)
    store.receive(rec, status=Status.RATE_LIMITED, decision=decision(rec, Status.RATE_LIMITED))
    with pytest.raises(InternalError, match="already rate_limited"):
        store.decide(decision(rec, Status.APPLIED))


def test_deciding_an_unknown_intent_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.decide(decision(record(1), Status.APPLIED))


def test_a_pr_opened_by_decide_is_recorded_with_the_decision(store: Store) -> None:
    rec = record(1, environment="prod")
    store.receive(rec, status=Status.QUEUED, decision=None)
    pr = PullRequestRef(id="pr-1", branch=f"apx/{rec.id}", base="prod", head="d" * 40)
    store.decide(decision(rec, Status.PR_OPEN, decided_at=T0), pr=pr)

    view = store.get(rec.id)
    assert view is not None
    assert view.decision is not None
    assert view.decision.pr == pr
    assert [v.record.id for v in store.query(IntentQuery(status=Status.PR_OPEN))] == [rec.id]
    assert _pull_requests(store) == [("pr-1", rec.id, f"apx/{rec.id}", "prod", "d" * 40, "open")]


def _pull_requests(store: Store) -> list[tuple[str, ...]]:
    return [(p.id, p.intent.record.id, p.branch, p.base, p.head, p.status) for p in store.pull_requests()]


def test_breakers_round_trip_with_timezone_aware_utc_datetimes(store: Store) -> None:
    assert store.breaker(tenant="acme", environment="prod") is None
    plus2 = timezone(timedelta(hours=2))
    tripped = BreakerState(
        tenant="acme",
        environment="prod",
        open=True,
        opened_at=datetime(2025, 6, 1, 14, 0, tzinfo=plus2),
        closes_at=T0 + timedelta(minutes=30),
        reason="4 agent deploys in 15m",
        tripped_by="in-x",
        count_from=T0 - timedelta(hours=1),
    )
    other = BreakerState(tenant="acme", environment="dev", open=False)
    store.save_breaker(tripped)
    store.save_breaker(other)

    got = store.breaker(tenant="acme", environment="prod")
    assert got == tripped
    assert got is not None and got.opened_at is not None
    assert (got.opened_at.utcoffset(), got.opened_at.hour) == (timedelta(0), 12)
    assert store.breakers() == [other, tripped]

    reset = replace(tripped, open=False, reset_at=T0 + timedelta(minutes=5), reset_by="alice", count_from=T0)
    store.save_breaker(reset)
    assert store.breaker(tenant="acme", environment="prod") == reset
    assert len(store.breakers()) == 2


def test_naive_datetimes_are_refused(store: Store) -> None:
    naive = datetime(2025, 6, 1, 12, 0)
    with pytest.raises(ValueError, match="naive"):
        store.receive(record(1, at=naive), status=Status.QUEUED, decision=None)
    with pytest.raises(ValueError, match="naive"):
        store.save_breaker(BreakerState(tenant="acme", environment="dev", open=True, opened_at=naive))
    assert store.query(IntentQuery()) == []


def test_a_document_json_cannot_hold_is_a_storage_error_and_records_nothing(store: Store) -> None:
    rec = replace(record(1), document={"when": datetime(2025, 1, 1, tzinfo=UTC)})
    with pytest.raises(StorageError):
        store.receive(rec, status=Status.QUEUED, decision=None)
    assert store.get(rec.id) is None


# -- SQL only ----------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


def _receive_many(url: str, worker: int, count: int, start: Any, results: Any) -> None:
    """One OS process: open (and so migrate) the shared database, then receive ``count`` intents."""
    try:
        with SqlIntentStore.open(url) as store:
            start.wait()
            seqs = []
            for i in range(count):
                rec = record(worker * 100_000 + i)
                seqs.append(store.receive(rec, status=Status.QUEUED, decision=None))
                if i % 2:
                    store.decide(decision(rec, Status.APPLIED))
            results.put((worker, seqs))
    except BaseException as exc:
        results.put((worker, repr(exc)))
        raise


def test_two_processes_writing_one_new_database_lose_nothing(sql_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(2, timeout=60), ctx.Queue()
    procs = [ctx.Process(target=_receive_many, args=(sql_url, w, 200, start, results)) for w in (1, 2)]
    for p in procs:
        p.start()
    outcome = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert all(isinstance(seqs, list) for seqs in outcome.values()), outcome

    seqs = outcome[1] + outcome[2]
    assert len(set(seqs)) == 400
    with SqlIntentStore.open(sql_url, migrate=False) as store:
        views = store.query(IntentQuery(limit=1000))
        assert sorted(v.seq for v in views) == sorted(seqs)
        assert sum(v.status is Status.APPLIED for v in views) == 200
        assert all(len(v.events) == (3 if v.status is Status.APPLIED else 2) for v in views)


def test_migrate_twice_is_a_no_op(sql_url: str) -> None:
    migrate(sql_url)
    with SqlIntentStore.open(sql_url, migrate=False) as store:
        store.receive(record(1), status=Status.QUEUED, decision=None)
    migrate(sql_url)
    with SqlIntentStore(sql_url) as store:
        # The full Alembic path, not only the version check, changes nothing either.
        sql_store._upgrade(store._engine)
        assert [v.record.id for v in store.query(IntentQuery())] == [record(1).id]
        assert sql_store._current_revision(store._engine) == head_revision()


def test_the_migrations_create_exactly_the_models_tables(sql_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    migrate(sql_url)
    with SqlIntentStore(sql_url) as store, store._engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []


def test_the_head_revision_read_from_file_names_is_alembics_head() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(Path(sql_store.__file__).parent / "migrations"))
    assert ScriptDirectory.from_config(config).get_heads() == [head_revision()]


def _upgrade_to(url: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(sql_store.__file__).parent / "migrations"))
    with SqlIntentStore(url) as store, store._engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def test_a_log_from_before_targets_kept_their_order_lists_a_target_newest_first(sql_url: str) -> None:
    """Migration 0010 on a log written at 0009: each target row gets its intent's
    place in the order, so ``--target`` pages newest first as before the upgrade."""
    from sqlalchemy import MetaData, Table

    # Ids in the reverse of arrival order, so an order taken from the id would show.
    recs = [
        replace(record(n, targets=targets), id=f"in-{9 - n:026d}")
        for n, targets in enumerate(
            [
                ("WorkerPool/checkout",),
                ("Route/r-01", "WorkerPool/checkout"),
                (),
                ("Route/r-01",),
                ("Route/r-02", "Route/r-01", "WorkerPool/checkout"),
            ],
            start=1,
        )
    ]
    _upgrade_to(sql_url, "0009")
    with SqlIntentStore(sql_url) as old, old._engine.begin() as conn:
        intents, targets = (
            Table(name, MetaData(), autoload_with=conn) for name in ("intents", "intent_targets")
        )
        for rec in recs:
            conn.execute(
                intents.insert().values(
                    **{f: getattr(rec, f) for f in ("id", "trace_id", "tenant", "environment", "agent")},
                    dedupe_key=rec.dedupe_key,
                    base_revision=rec.base_revision,
                    received_at=rec.received_at,
                    status=Status.QUEUED.value,
                    document=rec.document,
                )
            )
            for position, target in enumerate(rec.targets):
                conn.execute(targets.insert().values(intent_id=rec.id, position=position, target=target))

    with SqlIntentStore.open(sql_url) as store:  # migrates to the head
        newest_first = list(reversed(recs))
        for target in ("WorkerPool/checkout", "Route/r-01", "Route/r-02"):
            expected = [r.id for r in newest_first if target in r.targets]
            assert [v.record.id for v in store.query(IntentQuery(target=target))] == expected
            one_by_one: list[str] = []
            query = IntentQuery(target=target, limit=1)
            while page := store.query(query):
                one_by_one += [v.record.id for v in page]
                query = replace(query, before_seq=page[-1].seq)
            assert one_by_one == expected
        view = store.get(recs[4].id)
        assert view is not None
        assert view.record.targets == recs[4].targets
        later = record(20, targets=("Route/r-01",))
        store.receive(later, status=Status.QUEUED, decision=None)
        assert [v.record.id for v in store.query(IntentQuery(target="Route/r-01", limit=2))] == [
            later.id,
            recs[4].id,
        ]


def test_sqlite_connections_use_wal_and_wait_for_writers(sqlite_url: str) -> None:
    with SqlIntentStore.open(sqlite_url) as store, store._engine.connect() as conn:
        pragmas = [conn.exec_driver_sql(f"PRAGMA {p}").scalar() for p in ("journal_mode", "busy_timeout")]
        assert pragmas == ["wal", 30_000]
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


def test_an_unmigrated_database_is_a_one_line_storage_error(sql_url: str) -> None:
    with SqlIntentStore(sql_url) as store, pytest.raises(StorageError) as caught:
        store.get("in-x")
    assert caught.value.retryable
    assert "\n" not in caught.value.message
    assert caught.value.message.startswith("could not read intent in-x: ")


def test_a_policy_change_is_recorded_once_with_who_made_it(store: Any) -> None:
    from orchestrator.records import PolicyChange

    first = PolicyChange(
        name="apx-default", version="1.0.0", sha256="a" * 64, source="shipped", by="alice", at=T0
    )
    assert store.record_policy(first) is True
    assert store.record_policy(replace(first, by="bob", at=T0 + timedelta(minutes=1))) is False
    second = replace(first, version="1.1.0", sha256="b" * 64, by="bob", at=T0 + timedelta(minutes=2))
    assert store.record_policy(second) is True
    history = store.policy_history()
    assert [(p.version, p.by) for p in history] == [("1.0.0", "alice"), ("1.1.0", "bob")]
    assert history[1].at == T0 + timedelta(minutes=2)
