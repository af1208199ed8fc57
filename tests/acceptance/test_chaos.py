"""Workers killed with ``kill -9`` at 200 random moments lose nothing and apply nothing twice,
with the intent log on SQLite and on PostgreSQL.

``chaos_workers.py`` forks workers that submit (acknowledged: recorded as queued)
and decide intents, and kills each after a random delay. Then one ``apx drain``
finishes what is left, and the test checks what a user relies on:

* every acknowledged intent is decided, none is stuck or ``failed``;
* every applied intent has exactly one commit on dev, every other intent none;
* every PR branch belongs to an intent that is ``pr_open``, one branch per PR;
* the audit log verifies; a pending review survives and merges when approved.

On SQLite the environment lock is a ``flock`` the kernel drops with the process;
on PostgreSQL it is a session advisory lock the server drops with the killed
worker's connection. Either way the next worker must get in, or nothing is decided.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from test_cli import APX, git

HARNESS = Path(__file__).with_name("chaos_workers.py")
KILLS = 200


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_kill_9_at_random_points_loses_nothing_and_applies_nothing_twice(
    tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    home = tmp_path / "home"
    env = {
        **os.environ,
        "APX_HOME": str(home),
        # Let the stream through admission: this test is about crashes, not about limits.
        "APX_ADMISSION__RATE_LIMIT__DEPLOYS": "100000",
        "APX_ADMISSION__BREAKER__MAX_DEPLOYS": "100000",
        "APX_ADMISSION__BREAKER__TRIP_ON_OSCILLATION": "false",
        "APX_ADMISSION__DEDUPE_WINDOW": "1s",
        # A killed worker's claim on an environment's head would hold that queue for the
        # default minute; short, the next workers take it over (and the final `apx drain`,
        # seconds later, finds none live). Taken over from a worker still deciding, it
        # must not lead to a second decision: the environment lock and decide() guard that.
        "APX_WORKERS__LEASE": "100ms",
    }
    env.pop("APX_DATABASE_URL", None)
    if database == "postgres":  # every worker, and `apx drain` after them, share one fresh schema
        env["APX_DATABASE_URL"] = request.getfixturevalue("pg_url")

    def apx(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([APX, *args], env=env, capture_output=True, text=True, timeout=300)

    assert apx("init").returncode == 0
    chaos = subprocess.run(
        [sys.executable, str(HARNESS), str(home), str(KILLS), "20261123"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert chaos.returncode == 0, chaos.stdout + chaos.stderr
    report = json.loads(chaos.stdout)
    assert report["kills"] == KILLS

    assert apx("drain").returncode == 0  # a worker that is not killed finishes the rest

    rows = json.loads(apx("intents", "list", "-o", "json", "--limit", "10000").stdout)
    statuses = Counter(row["status"] for row in rows)
    assert len(rows) >= 50, (statuses, report)  # the stream was real
    assert set(statuses) <= {"applied", "rejected", "pr_open", "duplicate"}, statuses
    dev_commits = Counter(
        line.removeprefix("Intent-Id: ")
        for line in git(
            home, "log", "--first-parent", "--format=%(trailers:key=Intent-Id)", "dev"
        ).stdout.split("\n")
        if line.startswith("Intent-Id: ")
    )
    for row in rows:
        expected = 1 if row["status"] == "applied" else 0
        assert dev_commits[row["id"]] == expected, (row, dev_commits[row["id"]])
    pr_open = {row["id"] for row in rows if row["status"] == "pr_open"}
    branches = {
        b.removeprefix("apx/")
        for b in git(home, "branch", "--list", "apx/*", "--format=%(refname:short)").stdout.split()
    }
    assert branches == pr_open
    assert apx("audit", "verify").returncode == 0

    if pr_open:  # a review that waited through every crash still merges
        pick = sorted(pr_open)[0]
        approved = apx("prs", "approve", pick, "--by", "alice")
        assert approved.returncode in (0, 1), approved.stderr  # merged, or refused as a conflict
        shown = json.loads(apx("intents", "show", pick, "--json").stdout)
        assert shown["status"] in ("merged", "pr_rejected")
