"""Retention prunes old payloads and keeps everything the audit needs; APScheduler runs it."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from test_audit_log import Store, audit_log, entries
from test_store_contract import T0, decision, record

from orchestrator.audit_trail import digest
from orchestrator.bootstrap import App
from orchestrator.decision import Rollback, Status
from orchestrator.records import PRUNED_DOCUMENT
from orchestrator.scheduler import build_scheduler
from orchestrator.settings import Settings
from orchestrator.testing import FrozenClock


def decided(store: Store, n: int, at_offset: timedelta) -> str:
    rec = record(n, at=T0 + at_offset)
    store.receive(rec, status=Status.QUEUED, decision=None)
    store.decide(
        decision(
            rec,
            Status.APPLIED,
            reasons=["applied"],
            commit=f"{n:040x}",
            diff={"WorkerPool/checkout.yaml": "-  replicas: 4\n+  replicas: 6\n"},
            rollback=Rollback(commit=f"{n:040x}", branch="dev", git=f"git revert {n:040x}", changes=[]),
            decided_at=T0 + at_offset,
        )
    )
    return rec.id


def test_payloads_older_than_the_cutoff_are_pruned_and_the_rest_stays(
    store: Store, clock: FrozenClock, tmp_path: Path
) -> None:
    old = decided(store, 1, timedelta(days=-400))
    recent = decided(store, 2, timedelta(days=-10))
    waiting = record(3, at=T0 - timedelta(days=500))
    store.receive(waiting, status=Status.QUEUED, decision=None)
    in_review = record(4, at=T0 - timedelta(days=500))
    store.receive(in_review, status=Status.QUEUED, decision=None)
    store.decide(decision(in_review, Status.PR_OPEN, decided_at=T0 - timedelta(days=500)))
    original_digest = digest(record(1, at=T0 - timedelta(days=400)).document)
    log = audit_log(store, tmp_path, clock)
    signed = log.checkpoint()

    assert store.prune_payloads(before=T0 - timedelta(days=365), at=T0) == 1

    view = store.get(old)
    assert view is not None and view.decision is not None
    assert view.pruned_at == T0
    assert view.record.document == PRUNED_DOCUMENT
    assert (view.decision.diff, view.decision.rollback) == ({}, None)
    assert (view.status, view.decision.reasons, view.decision.commit) == (
        Status.APPLIED,
        ["applied"],
        f"{1:040x}",
    )
    assert view.payload_digest == original_digest
    # The audit entry written when it arrived holds the same digest, and the log still verifies.
    received = [e for e in entries(store) if e["action"] == "intent.received" and e["intent_id"] == old]
    assert received[0]["digest"] == original_digest
    assert entries(store)[-1]["action"] == "retention.pruned"
    report = log.verify()
    assert report.ok and signed is not None and report.checkpoints == 1 and report.size == signed.size + 1
    for untouched in (recent, waiting.id, in_review.id):
        kept = store.get(untouched)
        assert kept is not None and kept.pruned_at is None and kept.record.document["kind"] == "Intent"
    assert store.prune_payloads(before=T0 - timedelta(days=365), at=T0) == 0


def test_pruning_goes_in_batches_each_with_its_audit_entry(store: Store) -> None:
    for n in range(1, 6):
        decided(store, n, timedelta(days=-400, seconds=n))
    assert store.prune_payloads(before=T0, at=T0, batch=2) == 5
    assert [e["subject"] for e in entries(store) if e["action"] == "retention.pruned"] == [
        f"intents:{n} decided before {T0.isoformat(timespec='seconds')}" for n in (2, 2, 1)
    ]


def test_the_scheduler_runs_retention_on_its_interval(tmp_path: Path, clock: FrozenClock) -> None:
    settings = Settings(
        home=tmp_path / "home",
        database={"url": f"sqlite:///{tmp_path / 'apx.db'}"},
        retention={"payloads": "30d", "every": "1s"},
        audit={"checkpoint_interval": "1s"},
    )
    app = App(settings, clock=clock)
    old = decided(app.store, 1, timedelta(days=-31))
    scheduler = build_scheduler(app)
    scheduler.start()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            view = app.store.get(old)
            if view is not None and view.pruned_at is not None:
                break
            time.sleep(0.1)
    finally:
        scheduler.shutdown(wait=True)
        app.store.close()
    assert view is not None and view.pruned_at == clock.now()
    assert (settings.home / "audit" / "checkpoints.jsonl").exists()
