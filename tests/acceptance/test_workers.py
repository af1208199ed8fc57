"""Several pipeline workers on one intent log: ``apx drain`` processes at once, and
``apx serve --workers N`` with its worker processes.

What an operator scaling out must be able to rely on: every queued intent is
decided exactly once, each environment's commits land in arrival order whatever
worker made them, a worker killed with ``kill -9`` is replaced, and a stop leaves
no worker behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from test_cli import APX, EXAMPLES, apx, git
from test_cli_serve import cli_env, serving

from orchestrator.bootstrap import build
from orchestrator.decision import Status
from orchestrator.intent import Intent

EXTRA = ("qa", "staging")
PER_ENVIRONMENT = 4


def scaled_out_home(tmp_path: Path, database_url: str | None) -> Path:
    """A home with dev, qa and staging auto-applied, limits raised so nothing is held."""
    home = tmp_path / "home"
    assert apx("init", home=home).returncode == 0
    config = yaml.safe_load((home / "apx.yaml").read_text())
    for name in EXTRA:
        config["environments"][name] = {"mode": "auto"}
        assert git(home, "branch", name, "dev").returncode == 0
    config["admission"] = {"rate_limit": {"deploys": 100, "per": "5m"}, "breaker": {"max_deploys": 100}}
    if database_url:
        config["database"] = {"url": database_url}
    (home / "apx.yaml").write_text(yaml.safe_dump(config))
    return home


def admit(home: Path) -> dict[str, list[str]]:
    """Queue PER_ENVIRONMENT distinct intents in each auto environment, decide none; ids by environment."""
    template = yaml.safe_load((EXAMPLES / "optimizer-scale-checkout.yaml").read_text())
    app = build(home)
    queued: dict[str, list[str]] = {}
    try:
        for n in range(PER_ENVIRONMENT):
            for environment in ("dev", *EXTRA):
                # A pool of its own per intent: intents that touch one field from one base
                # revision would (rightly) be refused as conflicts after the first.
                doc = json.loads(json.dumps(template))
                doc["spec"]["environment"] = environment
                change = doc["spec"]["changes"][0]
                change["action"] = "create"
                change["resource"]["metadata"]["name"] = f"batch-{n}"
                decision = app.orchestrator.submit(Intent.model_validate(doc), agent="optimizer", wait=False)
                assert decision.status is Status.QUEUED, decision.reasons
                queued.setdefault(environment, []).append(decision.intent_id)
    finally:
        app.close()
    return queued


def landed(home: Path, branch: str) -> list[str]:
    """Intent ids of ``branch``'s commits since ``apx init``, oldest first."""
    log = git(home, "log", "--reverse", "--format=%(trailers:key=Intent-Id,valueonly)", branch)
    return [line.strip() for line in log.stdout.splitlines() if line.strip()]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str | None:
    return None if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


def test_drain_processes_at_once_decide_every_intent_once_and_each_environment_in_order(
    tmp_path: Path, database_url: str | None
) -> None:
    home = scaled_out_home(tmp_path, database_url)
    queued = admit(home)

    workers = [
        subprocess.Popen(
            [APX, "drain"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(home)
        )
        for _ in range(3)
    ]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], [err for _, err in outputs]

    decided_lines = [line for out, _ in outputs for line in out.splitlines() if " applied" in line]
    assert len(decided_lines) == sum(len(ids) for ids in queued.values())  # each decided once
    for environment, ids in queued.items():
        assert landed(home, environment) == ids  # exactly these commits, in arrival order
        assert git(home, "verify-commit", environment).returncode == 0
    shown = apx("intents", "show", queued["qa"][0], home=home)
    assert re.search(r"^worker: \S+:\d+:drain$", shown.stdout, re.MULTILINE), shown.stdout
    assert apx("audit", "verify", home=home).returncode == 0


def _pids(output: str) -> list[int]:
    found = re.search(r"worker processes \(pids ([\d, ]+)\)", output)
    assert found, output
    return [int(p) for p in found.group(1).split(", ")]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _children(pid: int) -> set[int]:
    """Live child processes of ``pid`` (from /proc; zombies excluded)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _eventually(check: object, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def test_serve_with_worker_processes_decides_in_them_replaces_a_killed_one_and_stops_them(
    tmp_path: Path,
) -> None:
    home = scaled_out_home(tmp_path, None)
    with serving(home, tmp_path / "logs", "--workers", "2", env=cli_env(home)) as server:
        pids = _pids(server.output())
        assert len(pids) == 2 and all(_alive(p) for p in pids)

        assert sorted(_children(server.process.pid)) == sorted(pids)
        killed = pids[0]
        os.kill(killed, signal.SIGKILL)
        # The pool starts a replacement (after a short back-off).
        assert _eventually(lambda: len(_children(server.process.pid) - {killed}) == 2), server.err.read_text()
        pids = sorted(_children(server.process.pid))

        submitted = apx(
            "submit",
            str(EXAMPLES / "optimizer-scale-checkout.yaml"),
            "--agent",
            "optimizer",
            "--no-wait",
            "--json",
            home=home,
        )
        intent_id = json.loads(submitted.stdout)["intent_id"]

        def applied() -> bool:
            shown = apx("intents", "show", intent_id, home=home)
            return "applied" in shown.stdout.split("timeline:", 1)[-1]

        assert _eventually(applied, timeout=120)
        shown = apx("intents", "show", intent_id, home=home).stdout
        worker = re.search(r"^worker: \S+:(\d+):worker$", shown, re.MULTILINE)
        assert worker and int(worker.group(1)) in pids, shown  # decided by a live worker process

        assert server.stop() == 0
    assert not any(_alive(p) for p in pids)
    assert "apx serve: stopped" in server.output()


def test_a_following_worker_outlives_a_lock_held_too_long_and_then_decides(tmp_path: Path) -> None:
    """An operator's long `apx migrate`, say, holds dev's lock past `admission.lock_timeout`:
    the worker says so, backs off, and decides the intent once the lock is free."""
    from datetime import timedelta

    from orchestrator.locks import FileEnvironmentLock

    home = scaled_out_home(tmp_path, None)
    config = yaml.safe_load((home / "apx.yaml").read_text())
    config["admission"]["lock_timeout"] = "1s"
    config["workers"] = {"poll": "100ms"}
    (home / "apx.yaml").write_text(yaml.safe_dump(config))
    queued = admit(home)["dev"][0]

    out, err = tmp_path / "worker.out", tmp_path / "worker.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        with FileEnvironmentLock(home / "locks", timeout=timedelta(seconds=5)).hold("dev"):
            worker = subprocess.Popen(
                [APX, "drain", "--follow", "--env", "dev", "--for", "60s"],
                stdout=stdout,
                stderr=stderr,
                env=cli_env(home),
            )
            try:
                assert _eventually(lambda: "retrying in" in err.read_text(), timeout=60), err.read_text()
            except BaseException:
                worker.kill()
                raise
        try:
            assert _eventually(lambda: f"{queued} applied" in out.read_text(), timeout=60), err.read_text()
            assert worker.poll() is None  # still running, for what comes next
        finally:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(60) == 0
    assert "environment 'dev' stayed locked" in err.read_text()
    assert "stopped after" in out.read_text()


def test_drain_says_which_worker_holds_an_environment_it_left_alone(tmp_path: Path) -> None:
    """A worker died holding dev's head: a drain decides the other environments and says why
    dev waits, instead of exiting 0 in silence."""
    from datetime import timedelta

    home = scaled_out_home(tmp_path, None)
    queued = admit(home)
    app = build(home)
    try:
        claimed = app.store.claim(worker="host-a:4242:worker", environments=["dev"], lease=timedelta(hours=1))
    finally:
        app.close()
    assert claimed is not None and claimed.record.id == queued["dev"][0]

    drained = apx("drain", home=home)

    assert drained.returncode == 0, drained.stderr
    assert all(f"{i} applied" in drained.stdout for i in queued["qa"] + queued["staging"])
    assert queued["dev"][0] not in drained.stdout
    assert (
        f"apx drain: {PER_ENVIRONMENT} intents left queued in dev: its head {queued['dev'][0]} "
        "is claimed by worker host-a:4242:worker" in drained.stderr
    )
