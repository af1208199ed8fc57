"""Claims: how pipeline workers share queued intents, over every store.

The first part is the contract (in-memory fake, SQLite, PostgreSQL): only the
head of an environment's queue is claimable, a live claim keeps other workers
off that environment, a lapsed or released claim frees it. The second part is
PostgreSQL's ``FOR UPDATE SKIP LOCKED`` under real concurrency: many threads
claiming at once, each on its own connection, never share an intent.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from test_store_contract import Store, decision, record

from orchestrator.decision import Status
from orchestrator.records import IntentRecord
from orchestrator.testing import FrozenClock

LEASE = timedelta(minutes=1)


def queue(store: Store, *recs: IntentRecord) -> list[IntentRecord]:
    for rec in recs:
        store.receive(rec, status=Status.QUEUED, decision=None)
    return list(recs)


def test_a_worker_claims_the_oldest_head_and_others_get_the_next_environments_head(store: Store) -> None:
    dev1, prod1, dev2, qa1 = queue(
        store, record(1), record(2, environment="prod"), record(3), record(4, environment="qa")
    )
    everywhere = ("dev", "prod", "qa")

    first = store.claim(worker="w1", environments=everywhere, lease=LEASE)
    second = store.claim(worker="w2", environments=everywhere, lease=LEASE)
    third = store.claim(worker="w3", environments=everywhere, lease=LEASE)

    assert [c.record.id if c else None for c in (first, second, third)] == [dev1.id, prod1.id, qa1.id]
    assert first is not None and first.claimed_by == "w1"
    # dev's second intent waits behind its head: nothing is left to claim.
    assert store.claim(worker="w4", environments=everywhere, lease=LEASE) is None
    stored = store.get(dev1.id)
    assert stored is not None and stored.claimed_by == "w1" and stored.status is Status.QUEUED
    assert dev2.id not in {c.record.id for c in (first, second, third) if c}


def test_once_the_head_is_decided_the_next_intent_of_its_environment_is_claimable(store: Store) -> None:
    dev1, dev2 = queue(store, record(1), record(2))
    assert store.claim(worker="w1", environments=("dev",), lease=LEASE) is not None
    store.decide(decision(dev1, Status.APPLIED))

    nxt = store.claim(worker="w2", environments=("dev",), lease=LEASE)

    assert nxt is not None and nxt.record.id == dev2.id
    decided = store.get(dev1.id)
    assert decided is not None and decided.claimed_by == "w1"  # the log keeps who decided it


def test_only_the_named_environments_are_claimed(store: Store) -> None:
    queue(store, record(1), record(2, environment="prod"))
    claimed = store.claim(worker="w1", environments=("prod",), lease=LEASE)
    assert claimed is not None and claimed.record.environment == "prod"
    assert store.claim(worker="w1", environments=(), lease=LEASE) is None


def test_a_lapsed_claim_is_taken_over_and_a_released_one_at_once(store: Store, clock: FrozenClock) -> None:
    (dev1,) = queue(store, record(1))
    assert store.claim(worker="dead", environments=("dev",), lease=LEASE) is not None
    clock.advance(LEASE - timedelta(seconds=1))
    assert store.claim(worker="w2", environments=("dev",), lease=LEASE) is None

    clock.advance(timedelta(seconds=2))
    taken = store.claim(worker="w2", environments=("dev",), lease=LEASE)
    assert taken is not None and taken.record.id == dev1.id and taken.claimed_by == "w2"

    store.release(dev1.id, worker="someone-else")  # not theirs: no effect
    assert store.claim(worker="w3", environments=("dev",), lease=LEASE) is None
    store.release(dev1.id, worker="w2")
    again = store.claim(worker="w3", environments=("dev",), lease=LEASE)
    assert again is not None and again.claimed_by == "w3"


def test_held_and_decided_intents_are_never_claimed(store: Store) -> None:
    first, second = record(1), record(2)
    store.receive(first, status=Status.QUEUED, decision=None)
    store.decide(decision(first, Status.REJECTED, reasons=["no"]))
    store.receive(second, status=Status.DUPLICATE, decision=decision(second, Status.DUPLICATE))
    assert store.claim(worker="w1", environments=("dev",), lease=LEASE) is None


@pytest.mark.postgres
def test_threads_claiming_at_once_on_postgresql_never_share_an_intent(
    pg_url: str, clock: FrozenClock
) -> None:
    """Twelve environments, twelve claimers released together, each with its own store
    (its own connections): SKIP LOCKED hands every claimer a different head, none waits."""
    from orchestrator.sql_store import SqlIntentStore

    environments = [f"env{n:02d}" for n in range(12)]
    with SqlIntentStore.open(pg_url, clock=clock) as setup:
        for n, env in enumerate(environments):
            queue(setup, record(2 * n + 1, environment=env), record(2 * n + 2, environment=env))

    stores = [SqlIntentStore.open(pg_url, clock=clock, migrate=False) for _ in environments]
    barrier = threading.Barrier(len(stores))
    claimed: list[str | None] = [None] * len(stores)

    def claimer(i: int) -> None:
        barrier.wait()
        view = stores[i].claim(worker=f"w{i}", environments=environments, lease=LEASE)
        claimed[i] = None if view is None else view.record.id

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in stores:
        s.close()

    heads = sorted(record(2 * n + 1, environment=env).id for n, env in enumerate(environments))
    # Every claimer got a head of its own: a row another claimer had locked was skipped,
    # not waited for, and no environment's second intent jumped its queue.
    assert sorted(c or "none" for c in claimed) == heads
