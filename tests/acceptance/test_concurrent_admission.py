"""Admission stays exact when many processes submit at the same moment, on SQLite and PostgreSQL.

Each submitter is a real ``apx submit`` process. They import apx first and then
wait at a barrier (a file appearing), so their submissions really do meet. On
SQLite the environment's file lock orders them; on PostgreSQL the advisory lock
does, which is what lets processes on several hosts share one database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from test_cli import APX, EXAMPLES

N = 8

#: A submitter: import everything, wait for the go file, then run `apx submit`.
SUBMITTER = textwrap.dedent(
    """
    import os, sys, time
    from orchestrator.cli import main
    import orchestrator.bootstrap, orchestrator.pipeline  # pay for imports before the barrier
    go = sys.argv[1]
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.002)
    sys.argv = ["apx", "submit", *sys.argv[2:]]
    main()
    """
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """Environment variables for apx processes sharing one home (and, for postgres, one database)."""
    home = tmp_path / "home"
    variables = {**os.environ, "APX_HOME": str(home)}
    variables.pop("APX_DATABASE_URL", None)
    if request.param == "postgres":
        variables["APX_DATABASE_URL"] = request.getfixturevalue("pg_url")
    subprocess.run([APX, "init"], env=variables, check=True, capture_output=True, timeout=120)
    return variables


def submit_at_once(
    env: dict[str, str], tmp_path: Path, files: list[Path], agent: str
) -> list[dict[str, object]]:
    """Run one `apx submit FILE --agent AGENT --json` per file, all released at one instant
    (once every child has said it is ready)."""
    go = tmp_path / f"go-{time.monotonic_ns()}"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", SUBMITTER, str(go), str(f), "--agent", agent, "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for f in files
    ]
    for child in children:  # every child has imported apx and waits at the barrier
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    go.touch()
    decisions = []
    for child in children:
        out, err = child.communicate(timeout=180)
        assert child.returncode in (0, 3), err
        decision = json.loads(out)
        decision["exit"] = child.returncode
        decisions.append(decision)
    return decisions


def test_the_same_intent_from_n_processes_is_accepted_once(env: dict[str, str], tmp_path: Path) -> None:
    decisions = submit_at_once(env, tmp_path, [EXAMPLES / "optimizer-scale-checkout.yaml"] * N, "optimizer")

    assert Counter(d["status"] for d in decisions) == {"applied": 1, "duplicate": N - 1}
    [accepted] = [d for d in decisions if d["status"] == "applied"]
    assert {d["exit"] for d in decisions if d["status"] == "duplicate"} == {3}
    # Every duplicate names the one that was accepted.
    assert all(accepted["intent_id"] in d["reasons"][0] for d in decisions if d["status"] == "duplicate")
    log = subprocess.run(
        [APX, "intents", "list", "-o", "json", "--limit", "100"], env=env, capture_output=True, text=True
    )
    assert len(json.loads(log.stdout)) == N  # every submission is on record, none lost


def test_a_burst_from_one_agent_admits_exactly_the_rate_limit(env: dict[str, str], tmp_path: Path) -> None:
    # N different proposals (so none is a duplicate) from one agent: the limit is 1 per 5 minutes.
    base = yaml.safe_load((EXAMPLES / "optimizer-scale-checkout.yaml").read_text())
    files = []
    for i in range(N):
        doc = json.loads(json.dumps(base))
        doc["spec"]["changes"][0]["resource"]["spec"]["replicas"] = 5 + i
        path = tmp_path / f"burst-{i}.yaml"
        path.write_text(yaml.safe_dump(doc))
        files.append(path)

    decisions = submit_at_once(env, tmp_path, files, "optimizer")

    assert Counter(d["status"] for d in decisions) == {"applied": 1, "rate_limited": N - 1}
