"""How fast 1, 2 and 4 ``apx drain`` processes decide queued intents on PostgreSQL.

Each run works in a fresh home (``orchestrator.home.init_home`` in a temporary
directory) whose ``apx.yaml`` is then pointed at a fresh schema on the server
(``CREATE SCHEMA apx_bench_<hex>``, reached through ``?options=-csearch_path=…``,
dropped at the end), with ``auto`` environments ``dev``, ``qa``, ``staging`` and
``perf`` (beside ``prod``; the three new ones get their branch as ``apx init``
makes one: the seeded, signed commit of ``dev``), the rate limit and breaker
raised so nothing is held, and the policy's time budget at 10 s so a loaded core
cannot turn a slow evaluation into a rejection.

**Queue.** In the bench's own process (``orchestrator.bootstrap.build``, the
real clock) ``--per-environment`` M intents per environment are admitted with
``app.orchestrator.submit(intent, agent="optimizer", wait=False)``: each is
recorded ``queued`` and not decided. Intent *i* creates ``WorkerPool/load-<i>``
(replicas 2-9): distinct resources, so none is a duplicate of another and none
conflicts with those queued before it, whose commits land between its
admission and its decision.

**Timed.** N processes (``--workers``, default 1, 2 and 4) each import what
``apx drain`` imports, say they are ready and wait; at the start signal each
runs ``apx drain --home H`` (``orchestrator.cli.main``, in that process: it
builds its app from the home, drains every environment and signs an audit
checkpoint). The figure is *start signal → last decision*, the last
``decided_at`` the processes wrote (the same machine's clock): it excludes
Python start-up and imports (about 2 s a process, paid once by a long-running
worker) and includes each process building its app and the first decision.
Also reported: first → last decision, and start signal → every process exited.
Each process prints one line per decision it made, which shows how the work
was shared. Checked after each run (never timed): every intent ``applied``,
each with its own commit, each environment's branch exactly M commits past the
seed, one per intent (its ``Intent-Id`` trailer), every one with a good signature
(``%G?`` = ``G``).

*Baseline*, in the same run: the same number of bare signed commits (M per
environment, all environments together) by N concurrent committers, each on its
own branch in its own ``git worktree`` of one scratch repository set up like the
config repo (``gpg.format=ssh``, an Ed25519 key from the same
``create_signing_key``, allowed signers, ``commit.gpgsign``); per commit: write
the rendered ``WorkerPool`` file, ``git add``, ``git commit -S -q -m`` a message
of APX's shape. The committers are N threads of this process, each running those
git processes one after another (the processes do the work; the threads only
wait for them). What this machine can do in parallel at all with git's signing:
ratio = ours' time / the baseline's for the same number of commits and the same N.

No thresholds: this measures, it does not judge.

    /work/venv/bin/python bench/workers.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/apx_bench
    /work/venv/bin/python bench/workers.py --per-environment 20 --workers 1 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from common import (
    check_postgres_url,
    close,
    database_url_default,
    git,
    machine,
    postgres_schema,
    render_table,
    server_version,
    signed_scratch_repo,
)
from sqlalchemy import create_engine, pool, text

import orchestrator
from orchestrator.bootstrap import build
from orchestrator.changeset import render
from orchestrator.decision import Status
from orchestrator.home import init_home
from orchestrator.ids import new_intent_id, new_trace_id
from orchestrator.intent import Intent

BENCH = Path(__file__).resolve().parent
SOURCE = Path(orchestrator.__file__).resolve().parent.parent
ENVIRONMENTS = ("dev", "qa", "staging", "perf")
#: What a worker process imports before it says it is ready (``apx drain`` imports these lazily).
CHILD = """
import sys
import orchestrator.cli
import orchestrator.bootstrap, orchestrator.pipeline, orchestrator.sql_store, orchestrator.git_repo
import orchestrator.locks, validators.rego, audit.log, psycopg
print("ready", flush=True)
sys.stdin.readline()
sys.argv = ["apx", "drain", "--home", sys.argv[1]]
orchestrator.cli.main()
"""
DECISION_LINE = re.compile(r"^\S+ (\w+)")
#: How long one run may take before the bench gives up (a bounded wait, not a threshold).
RUN_TIMEOUT_S = 900


# -- the home ---------------------------------------------------------------------------


def make_home(home: Path, url: str, environments: tuple[str, ...]) -> str:
    """A fresh home on ``url`` with ``environments`` in ``auto`` mode, each with its branch;
    the seed commit they start from."""
    init_home(home)
    settings = yaml.safe_load((home / "apx.yaml").read_text())
    settings["database"]["url"] = url
    admission = settings["admission"]
    admission["rate_limit"]["deploys"] = 10**9
    admission["breaker"]["max_deploys"] = 10**9
    admission["lock_timeout"] = "15m"  # a process may wait for another's whole environment
    settings["policy"]["budget"] = "10s"
    for env in environments:
        settings["environments"].setdefault(env, {"mode": "auto"})
    (home / "apx.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    repo = home / "config-repo"
    for env in environments:
        if env != "dev":
            git("branch", env, "dev", cwd=repo)
    return subprocess.run(
        ["git", "rev-parse", "dev"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


def load_intent(env: str, i: int) -> Intent:
    return Intent.model_validate(
        {
            "apiVersion": "apx/v1",
            "kind": "Intent",
            "metadata": {"tenant": "acme"},
            "spec": {
                "environment": env,
                "rationale": f"queue depth over target: add pool load-{i:04d}",
                "changes": [{"action": "create", "resource": pool_document(i)}],
            },
        }
    )


def pool_document(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "apx/v1",
        "kind": "WorkerPool",
        "metadata": {"name": f"load-{i:04d}", "tenant": "acme"},
        "spec": {
            "replicas": 2 + i % 8,
            "minReplicas": 1,
            "maxReplicas": 20,
            "accelerator": "none",
            "spot": i % 2 == 0,
        },
    }


def queue(home: Path, environments: tuple[str, ...], per_environment: int) -> tuple[list[str], float]:
    """Admit the intents without deciding them: (their ids, the median seconds per admission;
    the first one also builds the app's policy engine)."""
    app = build(home)
    try:
        ids, seconds = [], []
        for env in environments:
            for i in range(per_environment):
                started = time.perf_counter()
                decision = app.orchestrator.submit(load_intent(env, i), agent="optimizer", wait=False)
                seconds.append(time.perf_counter() - started)
                if decision.status is not Status.QUEUED:
                    raise SystemExit(
                        f"setup: {env} intent {i} was {decision.status.value}: {decision.reasons}"
                    )
                ids.append(decision.intent_id)
        return ids, statistics.median(seconds)
    finally:
        close(app)


# -- ours: N `apx drain` processes -------------------------------------------------------


@dataclass(frozen=True)
class Drained:
    go: datetime
    exited_s: float
    lines: list[list[str]]  # per process: its decision lines


def drain_with(home: Path, workers: int, log_dir: Path) -> Drained:
    env = {k: v for k, v in os.environ.items() if k != "APX_DATABASE_URL"}  # apx.yaml says where
    # The workers run the code this process imported (a checkout given by PYTHONPATH, or the install).
    env["PYTHONPATH"] = os.pathsep.join([str(SOURCE), *filter(None, [os.environ.get("PYTHONPATH")])])
    stderr = [(log_dir / f"worker-{k}.err").open("w") for k in range(workers)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(home)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
            cwd=home,
        )
        for err in stderr
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                raise SystemExit(f"a worker did not start; see {log_dir}")
        go = datetime.now(UTC)
        started = time.perf_counter()
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outputs = [process.communicate(timeout=RUN_TIMEOUT_S)[0] for process in processes]
        exited_s = time.perf_counter() - started
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for err in stderr:
            err.close()
    failed = [k for k, process in enumerate(processes) if process.returncode != 0]
    if failed:
        raise SystemExit(f"`apx drain` exited non-zero in worker(s) {failed}; see {log_dir}")
    lines = [[line for line in out.splitlines() if DECISION_LINE.match(line)] for out in outputs]
    return Drained(go=go, exited_s=exited_s, lines=lines)


def check_and_time(
    url: str, home: Path, seed: str, ids: list[str], environments: tuple[str, ...], per_environment: int
) -> tuple[datetime, datetime]:
    """Every intent applied with its own verified signed commit; (first, last) ``decided_at``."""
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, status, commit, decided_at, environment FROM intents")).all()
    finally:
        engine.dispose()
    by_id = {row.id: row for row in rows}
    if sorted(by_id) != sorted(ids):
        raise SystemExit(f"check: the log holds {len(by_id)} intents, {len(ids)} were queued")
    wrong = Counter(row.status for row in rows if row.status != Status.APPLIED.value)
    if wrong:
        raise SystemExit(f"check: not every intent was applied: {dict(wrong)}")
    if len({row.commit for row in rows}) != len(rows):
        raise SystemExit("check: two intents share a commit")
    repo = home / "config-repo"
    for env in environments:
        log = subprocess.run(
            [
                "git",
                "log",
                "--format=%H %G? %(trailers:key=Intent-Id,valueonly,separator=)",
                f"{seed}..{env}",
            ],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        commits = [line.split() for line in log if line.strip()]
        if len(commits) != per_environment:
            raise SystemExit(f"check: {env} has {len(commits)} commits past the seed, not {per_environment}")
        bad = [c for c in commits if len(c) != 3 or c[1] != "G"]
        if bad:
            raise SystemExit(f"check: {env}: commits without a good signature or an Intent-Id: {bad[:3]}")
        for sha, _, intent_id in commits:
            row = by_id.get(intent_id)
            if row is None or row.commit != sha or row.environment != env:
                raise SystemExit(f"check: {env}: commit {sha} is not the commit of intent {intent_id}")
    decided = sorted(row.decided_at for row in rows)
    return decided[0], decided[-1]


def bench_ours(
    base_url: str, root: Path, environments: tuple[str, ...], per_environment: int, workers: int
) -> dict[str, Any]:
    with postgres_schema(base_url) as url:
        home = root / "home"
        seed = make_home(home, url, environments)
        ids, admit_s = queue(home, environments, per_environment)
        drained = drain_with(home, workers, root)
        first, last = check_and_time(url, home, seed, ids, environments, per_environment)
    total = len(ids)
    wall = (last - drained.go).total_seconds()
    span = (last - first).total_seconds()
    statuses = [Counter(DECISION_LINE.match(line)[1] for line in lines) for lines in drained.lines]  # type: ignore[index]
    return {
        "intents": total,
        "admit_p50_ms": admit_s * 1000,
        "wall_s": wall,
        "decisions_per_s": total / wall,
        "first_to_last_s": span,
        "exited_s": drained.exited_s,
        "decisions_per_worker": [sum(c.values()) for c in statuses],
    }


# -- baseline: N committers on their own branches ----------------------------------------


def bench_baseline(root: Path, commits: int, workers: int) -> dict[str, Any]:
    repo = root / "repo"
    signed_scratch_repo(repo, keys=root / "keys")
    trees = []
    for k in range(workers):
        tree = root / f"tree-{k}"
        git("worktree", "add", "-q", "-b", f"w{k}", str(tree), "dev", cwd=repo)
        trees.append(tree)
    shares = [commits // workers + (1 if k < commits % workers else 0) for k in range(workers)]
    barrier = threading.Barrier(workers + 1)
    errors: list[BaseException] = []

    def committer(tree: Path, share: int, k: int) -> None:
        try:
            barrier.wait()
            for j in range(share):
                i = k * commits + j
                path = f"WorkerPool/load-{i:04d}.yaml"
                (tree / path).write_text(render(pool_document(i)))
                git("add", path, cwd=tree)
                message = (
                    f"apx: optimizer create WorkerPool/load-{i:04d} in dev\n\n"
                    f"queue depth over target: add pool load-{i:04d}\n\n"
                    f"Intent-Id: {new_intent_id(datetime.now(UTC))}\nTrace-Id: {new_trace_id()}\n"
                    "Agent: optimizer\nTenant: acme\n"
                )
                git("commit", "-S", "-q", "-m", message, cwd=tree)
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)

    threads = [
        threading.Thread(target=committer, args=(tree, share, k))
        for k, (tree, share) in enumerate(zip(trees, shares, strict=True))
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join(RUN_TIMEOUT_S)
    wall = time.perf_counter() - started
    if errors:
        raise errors[0]
    for k in range(workers):
        verified = subprocess.run(["git", "verify-commit", f"w{k}"], cwd=repo, capture_output=True)
        if verified.returncode != 0:
            raise SystemExit(f"baseline commit is not verifiable: {verified.stderr.decode().strip()}")
    return {"commits": commits, "wall_s": wall, "commits_per_s": commits / wall}


# -- report -------------------------------------------------------------------------------


def table(results: dict[str, Any]) -> str:
    header = (
        "scenario",
        "workers",
        "intents",
        "start→last s",
        "decided/s",
        "first→last s",
        "exited s",
        "per worker",
        "bare commits/s",
        "ratio",
    )
    rows: list[tuple[str, ...]] = [header]
    for scenario, by_workers in results["scenarios"].items():
        for workers, r in by_workers.items():
            ours, base = r["ours"], r["baseline"]
            rows.append(
                (
                    scenario,
                    workers,
                    str(ours["intents"]),
                    f"{ours['wall_s']:.2f}",
                    f"{ours['decisions_per_s']:.1f}",
                    f"{ours['first_to_last_s']:.2f}",
                    f"{ours['exited_s']:.2f}",
                    "/".join(str(n) for n in ours["decisions_per_worker"]),
                    f"{base['commits_per_s']:.1f}",
                    f"{r['ratio']:.2f}x",
                )
            )
    return render_table(rows)


def environment() -> dict[str, str]:
    return machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=database_url_default(),
        help="the PostgreSQL server, a fresh schema per run (default $APX_BENCH_DATABASE_URL)",
    )
    parser.add_argument(
        "--per-environment", type=int, default=50, help="intents queued per environment (default 50)"
    )
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2, 4], help="process counts (default 1 2 4)"
    )
    parser.add_argument(
        "--environments",
        type=int,
        nargs="+",
        default=[1, len(ENVIRONMENTS)],
        choices=range(1, len(ENVIRONMENTS) + 1),
        help=f"how many environments get intents (default 1 {len(ENVIRONMENTS)})",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("--database-url (or APX_BENCH_DATABASE_URL) is required: this bench runs on PostgreSQL")
    if problem := check_postgres_url(args.database_url):
        parser.error(problem)
    if args.per_environment < 1 or min(args.workers) < 1:
        parser.error("--per-environment and --workers must be at least 1")

    started = time.perf_counter()
    results: dict[str, Any] = {
        "per_environment": args.per_environment,
        "workers": args.workers,
        "server": f"PostgreSQL {server_version(args.database_url)}",
        "environment": environment(),
        "scenarios": {},
    }
    with tempfile.TemporaryDirectory(prefix="apx-bench-workers-") as tmp:
        root = Path(tmp)
        for count in args.environments:
            environments = ENVIRONMENTS[:count]
            scenario = f"{count} environment{'s' * (count > 1)}"
            by_workers: dict[str, Any] = {}
            for workers in args.workers:
                run = root / f"{count}-{workers}"
                (run / "ours").mkdir(parents=True)
                (run / "baseline").mkdir(parents=True)
                print(
                    f"[{datetime.now(UTC):%H:%M:%S}] {scenario}, {workers} worker(s)",
                    file=sys.stderr,
                    flush=True,
                )
                ours = bench_ours(
                    args.database_url, run / "ours", environments, args.per_environment, workers
                )
                baseline = bench_baseline(run / "baseline", ours["intents"], workers)
                by_workers[str(workers)] = {
                    "ours": ours,
                    "baseline": baseline,
                    "ratio": ours["wall_s"] / baseline["wall_s"],
                }
            results["scenarios"][scenario] = by_workers
    results["seconds"] = time.perf_counter() - started
    results["environment"]["loadavg_1m_at_end"] = (
        f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "0.00"
    )

    env = results["environment"]
    print(
        f"APX workers: `apx drain` processes deciding {args.per_environment} queued intents per environment; "
        f"{results['server']}, {env['cpus']} CPUs, Python {env['python']}, load average "
        f"{env['loadavg_1m_at_start']} at start, {env['loadavg_1m_at_end']} at end"
    )
    print()
    print(table(results))
    print()
    print(
        "start→last: the start signal to the last decided_at (imports excluded); ratio: that over the time "
        "N committers take for as many bare `git commit -S`, each on its own branch"
    )
    admit = statistics.median(
        r["ours"]["admit_p50_ms"] for s in results["scenarios"].values() for r in s.values()
    )
    print(f"queueing them (admission, in the bench's own process, not timed above): p50 {admit:.1f} ms")
    print(f"total {results['seconds']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
