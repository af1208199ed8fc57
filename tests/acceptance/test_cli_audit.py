"""``apx audit`` as an auditor uses it: verify, prove, check a proof elsewhere, export, tamper."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import EXAMPLES, apx

DOC = Path(__file__).resolve().parents[2] / "docs" / "how-to" / "verify-the-audit-log.md"


def _busy(home: Path) -> Path:
    assert apx("init", home=home).returncode == 0
    example = str(EXAMPLES / "optimizer-scale-checkout.yaml")
    assert apx("submit", example, "--agent", "optimizer", home=home).returncode == 0
    assert apx("submit", example, "--agent", "builder", home=home).returncode == 3
    assert apx("submit", example, "--agent", "optimizer", "--env", "prod", home=home).returncode == 0
    return home


@pytest.fixture(scope="module")
def busy_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home whose log holds an applied intent, a duplicate and a prod PR (shared: only read it)."""
    return _busy(tmp_path_factory.mktemp("audit") / "home")


@pytest.fixture
def own_busy_home(tmp_path: Path) -> Path:
    """The same, for a test that changes it."""
    return _busy(tmp_path / "home")


def test_a_fresh_log_verifies_and_says_how_much_it_covered(busy_home: Path) -> None:
    result = apx("audit", "verify", home=busy_home)
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.match(r"OK: (\d+) entries, root ([0-9a-f]{64}), (\d+) checkpoints verified", result.stdout)
    assert match, result.stdout
    report = json.loads(apx("audit", "verify", "--json", home=busy_home).stdout)
    assert report["ok"] and report["entries"] == int(match[1]) and report["root"] == match[2]
    # policy change + (received, queued, applied) + (received, duplicate) + (received, queued, pr_open)
    assert report["entries"] == 9


def test_a_proof_checks_out_elsewhere_with_only_the_public_key(busy_home: Path, tmp_path: Path) -> None:
    proof = apx("audit", "prove", "4", home=busy_home)
    assert proof.returncode == 0, proof.stderr
    elsewhere = tmp_path / "auditor"
    elsewhere.mkdir()
    (elsewhere / "proof.json").write_text(proof.stdout)
    shutil.copy(busy_home / "keys" / "audit_ed25519.pub", elsewhere / "audit.pub")
    nobody = tmp_path / "no-home"

    checked = apx(
        "audit",
        "check-proof",
        str(elsewhere / "proof.json"),
        "--key",
        str(elsewhere / "audit.pub"),
        home=nobody,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("OK: entry 4 (intent.applied in-")

    # The documented lines of Python reach the same verdict without apx.
    snippet = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert snippet is not None
    (elsewhere / "check.py").write_text(snippet[1])
    run = subprocess.run(
        [sys.executable, "check.py", "proof.json", "audit.pub"], cwd=elsewhere, capture_output=True, text=True
    )
    assert run.returncode == 0 and run.stdout.startswith("OK"), run.stderr

    forged = json.loads(proof.stdout)
    forged["leaf_index"] = forged["seq"] = 5
    (elsewhere / "forged.json").write_text(json.dumps(forged))
    refused = apx(
        "audit",
        "check-proof",
        str(elsewhere / "forged.json"),
        "--key",
        str(elsewhere / "audit.pub"),
        home=nobody,
    )
    assert refused.returncode == 1 and refused.stdout.startswith("INVALID: the entry says it is entry 4")
    run = subprocess.run(
        [sys.executable, "check.py", "forged.json", "audit.pub"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
    )
    assert run.returncode != 0


def test_bad_proof_requests_are_usage_errors(busy_home: Path, tmp_path: Path) -> None:
    assert apx("audit", "prove", "99", home=busy_home).returncode == 2
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    result = apx("audit", "check-proof", str(garbage), home=busy_home)
    assert result.returncode == 2 and "garbage.json" in result.stderr


def test_export_writes_header_entries_and_a_covering_checkpoint(busy_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "audit.jsonl"
    result = apx("audit", "export", "-o", str(out), home=busy_home)
    assert result.returncode == 0 and "wrote 9 entries" in result.stdout
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["type"] for line in lines] == ["header", *["entry"] * 9, "checkpoint"]
    assert lines[-1]["size"] == 9
    actions = [line["entry"]["action"] for line in lines[1:-1]]
    assert actions[:4] == ["policy.changed", "intent.received", "intent.queued", "intent.applied"]
    assert "intent.duplicate" in actions and actions[-1] == "intent.pr_open"


def test_the_database_refuses_edits_and_verify_catches_them_once_the_triggers_are_gone(
    own_busy_home: Path,
) -> None:
    busy_home = own_busy_home
    db = sqlite3.connect(busy_home / "apx.db", isolation_level=None)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("UPDATE audit_entries SET body = body WHERE seq = 2")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("DELETE FROM audit_entries")
        assert apx("audit", "verify", home=busy_home).returncode == 0

        db.execute("DROP TRIGGER audit_entries_no_update")
        (body,) = db.execute("SELECT body FROM audit_entries WHERE seq = 2").fetchone()
        db.execute(
            "UPDATE audit_entries SET body = ? WHERE seq = 2", (body.replace(b"optimizer", b"security"),)
        )
    finally:
        db.close()
    result = apx("audit", "verify", home=busy_home)
    assert result.returncode == 1
    assert result.stdout.strip() == (
        "TAMPERED: entry 2 was changed: its content no longer matches the hash recorded for it"
    )


def test_pruning_payloads_keeps_the_log_verifiable(own_busy_home: Path) -> None:
    busy_home = own_busy_home
    result = apx("intents", "prune", "--older-than", "0s", home=busy_home)
    assert result.returncode == 0 and "pruned the payloads of 2 intents" in result.stdout, result.stdout
    assert apx("audit", "verify", home=busy_home).returncode == 0
    listed = json.loads(apx("intents", "list", "--status", "applied", "-o", "json", home=busy_home).stdout)
    shown = apx("intents", "show", listed[0]["id"], home=busy_home)
    assert "payload pruned by retention" in shown.stdout and "sha256:" in shown.stdout
    export = apx("audit", "export", home=busy_home).stdout.splitlines()
    assert json.loads(export[-2])["entry"]["action"] == "retention.pruned"
