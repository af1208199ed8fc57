"""The audit log over every store: what is appended, in which transaction, and what verification catches.

The first part runs on the in-memory fake, SQLite and PostgreSQL (``store``);
the second tampers with a real database the way an attacker with SQL access
would (triggers dropped first) and checks that ``verify`` names what was done.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, pool, text
from sqlalchemy.exc import DBAPIError
from test_store_contract import T0, decision, record

from audit.checkpoint import CheckpointFile, PublicKey, SigningKey
from audit.entry import AuditEvent, parse_body
from audit.hashing import GENESIS, leaf_hash, link, merkle_root
from audit.log import AuditLog
from audit.proof import InclusionProof, ProofError, check
from orchestrator.audit_trail import digest
from orchestrator.decision import Status
from orchestrator.errors import ApxError, StorageError
from orchestrator.records import BreakerState, IntentQuery, PolicyChange
from orchestrator.sql_store import SqlIntentStore
from orchestrator.testing import FrozenClock, InMemoryIntentStore

Store = InMemoryIntentStore | SqlIntentStore


def audit_log(store: Store, home: Path, clock: FrozenClock, *, every: int = 1000) -> AuditLog:
    return AuditLog(
        store.audit,
        keys=home / "keys",
        checkpoint_file=home / "audit" / "checkpoints.jsonl",
        now=clock.now,
        every=every,
        interval=timedelta(minutes=5),
    )


def entries(store: Store) -> list[dict[str, Any]]:
    return [parse_body(body) for _seq, body, _link in store.audit.rows()]


def fill(store: Store, clock: FrozenClock, n: int = 4) -> None:
    """``n`` more intents received, queued and applied: 3n audit entries."""
    first = len(store.query(IntentQuery(limit=10_000))) + 1
    for i in range(first, first + n):
        rec = record(i, at=clock.now())
        store.receive(rec, status=Status.QUEUED, decision=None)
        clock.advance(1)
        store.decide(decision(rec, Status.APPLIED, commit=f"{i:040x}", policy_version="default@1.0.0+abc"))


# -- what is appended, and when -----------------------------------------------------


def test_every_change_to_the_log_appends_its_entry_in_order(store: Store, clock: FrozenClock) -> None:
    rec = record(1)
    store.receive(rec, status=Status.QUEUED, decision=None)
    applied = decision(
        rec, Status.APPLIED, commit="c" * 40, policy_version="default@1.0.0+abc", decided_at=T0
    )
    store.decide(applied)
    tripped = BreakerState(
        tenant="acme",
        environment="dev",
        open=True,
        opened_at=T0,
        closes_at=T0 + timedelta(minutes=30),
        reason="4 deploys in 15m",
        tripped_by=rec.id,
    )
    store.save_breaker(tripped)
    store.save_breaker(replace(tripped, open=False, reset_at=T0 + timedelta(minutes=1), reset_by="alice"))
    store.record_policy(
        PolicyChange(name="default", version="1.1.0", sha256="f" * 64, source="x", by="bob", at=T0)
    )

    got = [(e["action"], e["actor"], e.get("intent_id")) for e in entries(store)]
    assert got == [
        ("intent.received", "agent:builder", rec.id),
        ("intent.queued", "apx", rec.id),
        ("intent.applied", "apx", rec.id),
        ("breaker.tripped", "apx", rec.id),
        ("breaker.reset", "alice", None),
        ("policy.changed", "bob", None),
    ]
    log = entries(store)
    assert [e["seq"] for e in log] == [1, 2, 3, 4, 5, 6]
    assert log[0]["digest"] == digest(rec.document)
    stored = store.get(rec.id)
    assert stored is not None and stored.decision is not None
    assert log[2]["digest"] == digest(stored.decision.model_dump(mode="json"))
    assert log[2]["policy_version"] == "default@1.0.0+abc"
    assert log[2]["trace_id"] == rec.trace_id


def test_a_held_intent_and_the_breaker_it_trips_are_one_write(store: Store) -> None:
    rec = record(1)
    tripped = BreakerState(
        tenant="acme", environment="dev", open=True, opened_at=T0, reason="too many", tripped_by=rec.id
    )
    held = decision(rec, Status.CIRCUIT_OPEN, reasons=["breaker open"], decided_at=T0)
    store.receive(rec, status=Status.CIRCUIT_OPEN, decision=held, breaker=tripped)
    assert [e["action"] for e in entries(store)] == [
        "intent.received",
        "intent.circuit_open",
        "breaker.tripped",
    ]
    assert store.breaker(tenant="acme", environment="dev") == tripped


def test_a_write_that_fails_leaves_no_audit_entry(store: Store) -> None:
    rec = record(1)
    store.receive(rec, status=Status.QUEUED, decision=None)
    store.decide(decision(rec, Status.APPLIED, decided_at=T0))
    before = store.audit.size()
    with pytest.raises(ApxError):
        store.decide(decision(rec, Status.REJECTED, decided_at=T0))  # already final
    with pytest.raises(StorageError):
        store.receive(replace(record(2), document={"bad": {1, 2}}), status=Status.QUEUED, decision=None)
    with pytest.raises(StorageError):
        store.receive(rec, status=Status.QUEUED, decision=None)  # the same id again
    assert store.audit.size() == before


def test_entries_hold_digests_never_the_payload(store: Store) -> None:
    rec = record(1)
    rec = replace(
        rec, document={**rec.document, "spec": {**rec.document["spec"], "rationale": "CANARY-7f3a"}}
    )
    store.receive(rec, status=Status.QUEUED, decision=None)
    store.decide(decision(rec, Status.REJECTED, reasons=["CANARY-7f3a in the reason"], decided_at=T0))
    assert not any(b"CANARY-7f3a" in body for _seq, body, _link in store.audit.rows())


def test_a_clean_log_verifies_with_its_size_and_tree_root(
    store: Store, clock: FrozenClock, tmp_path: Path
) -> None:
    log = audit_log(store, tmp_path, clock, every=3)
    fill(store, clock)
    log.checkpoint()
    clock.advance(1)
    store.audit.append(
        [AuditEvent(action="auth.failed", actor="unknown", at=clock.now(), subject="token:ab12")]
    )
    report = log.verify()
    assert report.ok, report.finding
    assert report.size == 13
    assert report.root == merkle_root([leaf_hash(body) for _s, body, _l in store.audit.rows()])
    assert report.checkpoints == 1


def test_checkpoints_are_signed_every_n_entries_or_t_seconds(
    store: Store, clock: FrozenClock, tmp_path: Path
) -> None:
    log = audit_log(store, tmp_path, clock, every=4)
    fill(store, clock, n=1)
    assert log.checkpoint() is not None  # the first one at once
    assert log.checkpoint() is None  # nothing new
    fill(store, clock, n=1)
    assert log.checkpoint() is None  # 2 new entries, fewer than 4, within 5 minutes
    clock.advance(timedelta(minutes=5))
    made = log.checkpoint()
    assert made is not None and made.size == 6
    fill(store, clock, n=2)
    made = log.checkpoint()
    assert made is not None and made.size == 12
    assert [c.size for c in store.audit.checkpoints()] == [3, 6, 12]
    assert [c.size for c in CheckpointFile(tmp_path / "audit" / "checkpoints.jsonl").read()[0]] == [3, 6, 12]


def test_every_entry_has_a_proof_anyone_can_check_with_the_public_key_alone(
    store: Store, clock: FrozenClock, tmp_path: Path
) -> None:
    log = audit_log(store, tmp_path, clock)
    fill(store, clock, n=5)
    proofs = [json.dumps(log.prove(seq).as_json()) for seq in range(1, 16)]
    # From here on: only the public key's file and the proofs' text.
    public_only = PublicKey.from_pem((tmp_path / "keys" / "audit_ed25519.pub").read_bytes())
    for seq, text_of_proof in enumerate(proofs, start=1):
        assert check(InclusionProof.from_json(json.loads(text_of_proof)), public_only)["seq"] == seq
    proof = log.prove(1)
    assert b"agent:builder" in proof.body
    with pytest.raises(ProofError, match="another root"):
        check(replace(proof, body=proof.body.replace(b"agent:builder", b"agent:mallory")), public_only)
    with pytest.raises(ProofError, match="another key"):
        check(proof, SigningKey.create(tmp_path / "other").public)
    with pytest.raises(LookupError, match="no audit entry 16"):
        log.prove(16)


def test_the_export_can_be_rechecked_with_hashlib_and_the_public_key(
    store: Store, clock: FrozenClock, tmp_path: Path
) -> None:
    log = audit_log(store, tmp_path, clock)
    fill(store, clock, n=3)
    out = tmp_path / "audit.jsonl"
    with out.open("w") as f:
        assert log.export(f) == 9
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    header, *rows, checkpoint = lines
    assert header["type"] == "header" and "BEGIN PUBLIC KEY" in header["public_key"]
    # What a SIEM can do with nothing but hashlib: rebuild each link from the exported fields.
    previous = bytes.fromhex(header["previous_link"])
    for row in rows:
        body = json.dumps(row["entry"], sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        previous = sha256(previous + sha256(b"\x00" + body).digest()).digest()
        assert previous.hex() == row["link"]
    assert checkpoint["type"] == "checkpoint" and checkpoint["size"] == 9


# -- the database refuses edits; verification catches them anyway -----------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


def _execute(url: str, *statements: str) -> None:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_entries SET body = body WHERE seq = 1",
        "DELETE FROM audit_entries WHERE seq = 2",
        "UPDATE audit_checkpoints SET frontier = '[]'",
        "DELETE FROM audit_checkpoints",
    ],
)
def test_the_database_refuses_to_update_or_delete_audit_rows(
    sql_url: str, clock: FrozenClock, tmp_path: Path, statement: str
) -> None:
    with SqlIntentStore.open(sql_url, clock=clock) as store:
        fill(store, clock, n=1)
        audit_log(store, tmp_path, clock).checkpoint()
    with pytest.raises(DBAPIError, match="append-only"):
        _execute(sql_url, statement)


@pytest.mark.postgres
def test_postgres_refuses_to_truncate_the_audit_log(pg_url: str, clock: FrozenClock) -> None:
    with SqlIntentStore.open(pg_url, clock=clock) as store:
        fill(store, clock, n=1)
    with pytest.raises(DBAPIError, match="append-only"):
        _execute(pg_url, "TRUNCATE audit_entries")


def _drop_triggers(url: str) -> list[str]:
    if url.startswith("postgresql"):
        return [f"ALTER TABLE {t} DISABLE TRIGGER USER" for t in ("audit_entries", "audit_checkpoints")]
    return [
        f"DROP TRIGGER {t}_no_{op}"
        for t in ("audit_entries", "audit_checkpoints")
        for op in ("update", "delete")
    ]


def _relink_from(url: str, store: SqlIntentStore, seq: int) -> list[str]:
    """Statements that recompute every link from ``seq`` on, as a careful attacker would."""
    rows = list(store.audit.rows())
    previous = rows[seq - 2][2] if seq > 1 else GENESIS
    statements = []
    for number, body, _old in rows[seq - 1 :]:
        previous = link(previous, leaf_hash(body))
        hexed = f"X'{previous.hex()}'" if url.startswith("sqlite") else f"'\\x{previous.hex()}'::bytea"
        statements.append(f"UPDATE audit_entries SET link = {hexed} WHERE seq = {number}")
    return statements


def _body_sql(url: str, body: bytes) -> str:
    return f"X'{body.hex()}'" if url.startswith("sqlite") else f"'\\x{body.hex()}'::bytea"


@pytest.mark.parametrize(
    ("tamper", "kind", "seq", "words"),
    [
        ("edit", "changed", 3, "entry 3 was changed"),
        ("delete", "missing", 3, "entry 3 is missing"),
        ("swap", "reordered", 3, "position 3 holds entry 4"),
        ("edit-and-relink", "rewritten", 1, "one of entries 1-3 was changed"),
        ("truncate", "truncated", 5, "entries 5-9 are missing"),
        ("forge-checkpoint", "other-key", None, "signed by another key"),
        ("edit-checkpoint", "bad-signature", None, "does not match its size, root and time"),
    ],
)
def test_verification_names_the_first_thing_tampered_with(
    sql_url: str, clock: FrozenClock, tmp_path: Path, tamper: str, kind: str, seq: int | None, words: str
) -> None:
    with SqlIntentStore.open(sql_url, clock=clock) as store:
        log = audit_log(store, tmp_path, clock, every=4)
        for _ in range(5):
            fill(store, clock, n=1)
            log.checkpoint()
        assert log.verify().ok
        rows = list(store.audit.rows())
        statements = _drop_triggers(sql_url)
        if tamper == "edit":
            forged = rows[2][1].replace(b"apx", b"bob")
            statements.append(f"UPDATE audit_entries SET body = {_body_sql(sql_url, forged)} WHERE seq = 3")
        elif tamper == "delete":
            statements.append("DELETE FROM audit_entries WHERE seq = 3")
        elif tamper == "swap":
            statements += [
                "UPDATE audit_entries SET seq = -1 WHERE seq = 3",
                "UPDATE audit_entries SET seq = 3 WHERE seq = 4",
                "UPDATE audit_entries SET seq = 4 WHERE seq = -1",
            ]
        elif tamper == "truncate":
            statements += [
                "DELETE FROM audit_entries WHERE seq > 4",
                "DELETE FROM audit_checkpoints WHERE size > 4",
            ]
        checkpoints = tmp_path / "audit" / "checkpoints.jsonl"
        if tamper == "forge-checkpoint":
            forged_cp = SigningKey.create(tmp_path / "attacker").sign(size=6, root=bytes(32), at=clock.now())
            CheckpointFile(checkpoints).append(forged_cp)
        if tamper == "edit-checkpoint":
            lines = checkpoints.read_text().splitlines()
            first = json.loads(lines[0])
            first["at"] = "2020-01-01T00:00:00.000000+00:00"
            checkpoints.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
        _execute(sql_url, *statements)
        if tamper == "edit-and-relink":
            forged = rows[0][1].replace(b"agent:builder", b"agent:nobody")
            _execute(sql_url, f"UPDATE audit_entries SET body = {_body_sql(sql_url, forged)} WHERE seq = 1")
            _execute(sql_url, *_relink_from(sql_url, store, 1))
        report = log.verify()
    assert not report.ok
    assert report.finding is not None
    assert (report.finding.kind, report.finding.seq) == (kind, seq), report.finding
    assert words in report.finding.message
