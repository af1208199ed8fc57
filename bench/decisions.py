"""How fast APX decides, next to the cheapest thing that could do the same job.

Runs on the embedded default: a fresh home made by ``orchestrator.home.init_home``
in a temporary directory (SQLite intent log, local git config repo, a real
Ed25519 key signing through ``git``/``ssh-keygen``), wired by
``orchestrator.bootstrap.build`` with a :class:`~orchestrator.testing.FrozenClock`,
and driven in-process through ``app.orchestrator.submit``. With ``--database-url``
(or ``APX_BENCH_DATABASE_URL``) everything runs again with the intent log on that
PostgreSQL server, each home in a fresh schema (``CREATE SCHEMA apx_bench_<hex>``,
reached through ``?options=-csearch_path=…``, dropped at the end), the settings'
``database.url`` overridden as the tests' ``settings`` fixture does. Two scenarios:

(a) **Held at admission.** One intent is applied, then N identical ones are
    submitted; each is recorded as ``duplicate``. A held intent costs the
    pipeline's whole admission path: dedupe key, environment lock, reading
    recent intents and the breaker, and writing the intent with its decision.
    *Baseline*: a bare ``sqlite3`` (stdlib) insert of the very row APX wrote
    for a duplicate (same columns, same JSON payload bytes, same table
    definition and indexes copied from the live schema) into a scratch file on
    the same filesystem, with the store's own connection settings (WAL,
    ``synchronous=NORMAL``, ``busy_timeout``, ``foreign_keys``), autocommit off
    and one ``BEGIN IMMEDIATE`` … ``COMMIT`` per insert. That is the least any
    durable "record this decision" can cost here: the same bytes through the
    same SQLite with the same durability. A second, informational baseline
    (``sqlite, same write set``) also inserts the target and the two event rows
    APX writes alongside, in the same transaction.
    *On PostgreSQL* the baseline is a bare psycopg insert of the very row, into
    the same table with the same indexes (``CREATE TABLE … (LIKE … INCLUDING
    ALL)`` from the live schema, its foreign keys added, in a second fresh
    schema on the same server), one transaction per insert (``INSERT`` then
    ``COMMIT``, the server's default ``synchronous_commit``, as the store runs).
    The clock is frozen, so every duplicate stays inside the admission
    look-back window: the window grows by one intent per submission, as in a
    burst of retries. The first- and last-decile medians show what that costs.

(b) **Dev intents applied as signed commits.** N distinct changes
    (``WorkerPool/checkout`` replicas cycling) from one agent, with the rate
    limit and the breaker raised in the Settings passed to ``build`` so none is
    held. The clock moves 301 s before each submission, so a replica value
    seen before is no longer a duplicate (5 min dedupe window) and the
    admission look-back (15 min) holds a steady handful of intents.
    *Baseline*: in a scratch repository configured like the config repo
    (``gpg.format=ssh``, ``user.signingkey`` an Ed25519 key made by the same
    ``orchestrator.signing.create_signing_key``, allowed-signers file,
    ``commit.gpgsign``), seeded with the same 64 files: write the same file with
    the same rendered YAML, ``git add`` it, ``git commit -S -q -m`` a message of
    the same shape (subject, rationale, trailers), each a subprocess started
    from Python as APX starts its own. Same N. This is what signing a config
    change costs with git alone; APX additionally validates, plans, records and
    moves the branch by compare-and-swap. ``ssh-keygen -Y sign`` alone is
    timed too: the floor under any signed commit.

Each scenario is warmed up (untimed submissions/commits) before timing. Per-op
times are wall-clock ``time.perf_counter`` around one call; ops/s is N over the
summed per-op time. The ratio is ours / baseline at the median. For (b) the
run also reports where the time goes, by wrapping (on the instances, in this
process only) the repo's and store's methods and the pipeline's
``parse_environment``/``plan``/``run_chain``; the wrappers cost microseconds
against milliseconds per op. No thresholds: this measures, it does not judge.

    /work/venv/bin/python bench/decisions.py [--n N] [--warmup W] [--database-url URL] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from common import (
    Breakdown,
    check_postgres_url,
    close,
    database_url_default,
    libpq_conninfo,
    on_database,
    postgres_schema,
    raised_limits,
    render_table,
    server_version,
    signed_scratch_repo,
    timed,
)
from sqlalchemy import make_url

from orchestrator import admission as admission_module
from orchestrator import pipeline as pipeline_module
from orchestrator.bootstrap import App, build
from orchestrator.changeset import render
from orchestrator.decision import Status
from orchestrator.home import init_home
from orchestrator.ids import new_intent_id, new_trace_id
from orchestrator.intent import Intent
from orchestrator.seed import seed_files
from orchestrator.settings import load_settings
from orchestrator.sql_base import SQLITE_BUSY_TIMEOUT_MS
from orchestrator.testing import FrozenClock

POOL = "WorkerPool/checkout.yaml"
START = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SEED = {path: yaml.safe_load(text) for path, text in seed_files().items()}
#: Tables written when an intent is received (the intent, its targets, its events).
WRITE_SET = ("intents", "intent_targets", "intent_events")


# -- helpers ---------------------------------------------------------------------


def intent(replicas: int, rationale: str = "p95 over SLO for 5m on checkout") -> Intent:
    document = copy.deepcopy(SEED[POOL])
    document["spec"]["replicas"] = replicas
    return Intent.model_validate(
        {
            "apiVersion": "apx/v1",
            "kind": "Intent",
            "metadata": {"tenant": "acme"},
            "spec": {
                "environment": "dev",
                "rationale": rationale,
                "changes": [{"action": "update", "resource": document}],
            },
        }
    )


def stats(samples: list[float]) -> dict[str, float]:
    """Per-op seconds → a summary in milliseconds (and ops/s over the summed time)."""
    ms = sorted(s * 1000 for s in samples)
    decile = max(len(samples) // 10, 1)
    return {
        "n": len(samples),
        "p50_ms": statistics.median(ms),
        "p90_ms": ms[min(int(len(ms) * 0.9), len(ms) - 1)],
        "mean_ms": statistics.fmean(ms),
        "min_ms": ms[0],
        "ops_per_s": len(samples) / sum(samples),
        "first_decile_p50_ms": statistics.median(s * 1000 for s in samples[:decile]),
        "last_decile_p50_ms": statistics.median(s * 1000 for s in samples[-decile:]),
    }


def fresh_home(root: Path, name: str) -> Path:
    home = root / name
    init_home(home)
    return home


def run(*args: str, cwd: Path, stdin: bytes | None = None) -> None:
    subprocess.run(args, cwd=cwd, input=stdin, check=True, capture_output=True)


# -- (a) held at admission ---------------------------------------------------------


def bench_held(root: Path, n: int, warmup: int, url: str | None) -> dict[str, Any]:
    """``url``: the intent log's PostgreSQL database (a fresh schema); None for the home's SQLite file."""
    home = fresh_home(root, "held")
    app = build(home, settings=on_database(load_settings(home), url), clock=FrozenClock(START))
    try:
        proposal = intent(6)
        first = app.orchestrator.submit(proposal, agent="optimizer")
        if first.status is not Status.APPLIED:
            raise SystemExit(f"setup: the first intent was {first.status.value}: {first.reasons}")

        def submit() -> None:
            decision = app.orchestrator.submit(proposal, agent="optimizer")
            if decision.status is not Status.DUPLICATE:
                raise SystemExit(f"(a) expected duplicate, got {decision.status.value}: {decision.reasons}")

        breakdown = Breakdown()
        with instrumented(app, breakdown):
            for _ in range(warmup):
                submit()
            breakdown.reset()
            ours = [timed(submit)[0] for _ in range(n)]
    finally:
        close(app)
    if url is not None:
        return {
            "ours": stats(ours),
            **breakdown.per_op(n),
            "baseline": stats(postgres_baseline(url, n, warmup, write_set=False)),
            "baseline_write_set": stats(postgres_baseline(url, n, warmup, write_set=True)),
        }
    db = home / "apx.db"
    return {
        "ours": stats(ours),
        **breakdown.per_op(n),
        "baseline": stats(sqlite_baseline(db, root / "scratch-row.db", n, warmup, write_set=False)),
        "baseline_write_set": stats(sqlite_baseline(db, root / "scratch-set.db", n, warmup, write_set=True)),
    }


def sqlite_baseline(source: Path, scratch: Path, n: int, warmup: int, *, write_set: bool) -> list[float]:
    """Insert the duplicate's own row (and, with ``write_set``, its target and event rows) n times."""
    src = sqlite3.connect(source)
    src.row_factory = sqlite3.Row
    schema = [
        sql
        for (sql,) in src.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name IN (?, ?, ?) AND sql IS NOT NULL "
            "ORDER BY type = 'index', rowid",
            WRITE_SET,
        )
    ]
    row = dict(src.execute("SELECT * FROM intents WHERE status = 'duplicate' LIMIT 1").fetchone())
    targets = [dict(r) for r in src.execute("SELECT * FROM intent_targets WHERE intent_id = ?", (row["id"],))]
    events = [dict(r) for r in src.execute("SELECT * FROM intent_events WHERE intent_id = ?", (row["id"],))]
    src.close()
    del row["seq"]
    for event in events:
        del event["id"]

    # The store's connection settings (orchestrator.sql_store._create_engine), autocommit
    # off: the module opens BEGIN IMMEDIATE before the first INSERT, commit() ends it.
    conn = sqlite3.connect(scratch, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, isolation_level="IMMEDIATE")
    conn.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    for sql in schema:
        conn.execute(sql)
    conn.commit()

    columns = ", ".join(f'"{c}"' for c in row)  # "commit" is a keyword
    insert_row = f"INSERT INTO intents ({columns}) VALUES ({', '.join('?' * len(row))})"
    insert_target = "INSERT INTO intent_targets (intent_id, intent_seq, position, target) VALUES (?, ?, ?, ?)"
    insert_event = "INSERT INTO intent_events (intent_id, status, at, reasons) VALUES (?, ?, ?, ?)"
    # Ids of the same shape as APX's, minted before timing (unique: uq_intents_id).
    ids = [(new_intent_id(START), new_trace_id()) for _ in range(n + warmup)]

    def insert(intent_id: str, trace_id: str) -> None:
        values = {**row, "id": intent_id, "trace_id": trace_id}
        seq = conn.execute(insert_row, tuple(values.values())).lastrowid
        if write_set:
            rows = [(intent_id, seq, t["position"], t["target"]) for t in targets]
            conn.executemany(insert_target, rows)
            conn.executemany(insert_event, [(intent_id, e["status"], e["at"], e["reasons"]) for e in events])
        conn.commit()

    for intent_id, trace_id in ids[:warmup]:
        insert(intent_id, trace_id)
    samples = [timed(functools.partial(insert, i, t))[0] for i, t in ids[warmup:]]
    conn.close()
    return samples


def postgres_baseline(source: str, n: int, warmup: int, *, write_set: bool) -> list[float]:
    """On PostgreSQL: insert the duplicate's own row (and, with ``write_set``, its target and
    event rows) n times through bare psycopg, one transaction each, into copies of the tables."""
    import psycopg
    from psycopg.rows import dict_row
    from psycopg.types.json import Json

    with psycopg.connect(libpq_conninfo(source), autocommit=True, row_factory=dict_row) as src:
        schema = src.execute("SELECT current_schema() AS s").fetchone()["s"]  # type: ignore[index]
        row = src.execute("SELECT * FROM intents WHERE status = 'duplicate' LIMIT 1").fetchone()
        assert row is not None
        targets = src.execute("SELECT * FROM intent_targets WHERE intent_id = %s", (row["id"],)).fetchall()
        events = src.execute("SELECT * FROM intent_events WHERE intent_id = %s", (row["id"],)).fetchall()
        foreign_keys = src.execute(
            "SELECT conrelid::regclass::text AS tbl, conname, pg_get_constraintdef(oid) AS definition "
            "FROM pg_constraint WHERE contype = 'f' AND conrelid::regclass::text = ANY(%s)",
            (list(WRITE_SET),),
        ).fetchall()
    del row["seq"]
    for event in events:
        del event["id"]

    def adapt(value: Any) -> Any:
        return Json(value) if isinstance(value, dict | list) else value

    base = make_url(source).difference_update_query(["options"]).render_as_string(hide_password=False)
    with (
        postgres_schema(base, "apx_bench_scratch") as scratch,
        psycopg.connect(libpq_conninfo(scratch)) as conn,
    ):
        # Autocommit off: psycopg opens a transaction at the first statement, commit() ends it.
        for table in WRITE_SET:
            conn.execute(f'CREATE TABLE {table} (LIKE "{schema}".{table} INCLUDING ALL)')
        for fk in foreign_keys:
            conn.execute(f'ALTER TABLE {fk["tbl"]} ADD CONSTRAINT "{fk["conname"]}" {fk["definition"]}')
        conn.commit()

        columns = ", ".join(f'"{c}"' for c in row)  # "commit" is a keyword
        insert_row = f"INSERT INTO intents ({columns}) VALUES ({', '.join(['%s'] * len(row))})"
        if write_set:
            insert_row += " RETURNING seq"  # as receive() learns it, for the target rows
        insert_target = (
            "INSERT INTO intent_targets (intent_id, intent_seq, position, target) VALUES (%s, %s, %s, %s)"
        )
        insert_event = "INSERT INTO intent_events (intent_id, status, at, reasons) VALUES (%s, %s, %s, %s)"
        ids = [(new_intent_id(START), new_trace_id()) for _ in range(n + warmup)]
        fixed = {k: adapt(v) for k, v in row.items()}

        def insert(intent_id: str, trace_id: str) -> None:
            values = {**fixed, "id": intent_id, "trace_id": trace_id}
            with conn.cursor() as cur:
                cur.execute(insert_row, tuple(values.values()))
                if write_set:
                    seq = cur.fetchone()[0]  # type: ignore[index]
                    rows = [(intent_id, seq, t["position"], t["target"]) for t in targets]
                    cur.executemany(insert_target, rows)
                    cur.executemany(
                        insert_event, [(intent_id, e["status"], e["at"], Json(e["reasons"])) for e in events]
                    )
            conn.commit()

        for intent_id, trace_id in ids[:warmup]:
            insert(intent_id, trace_id)
        samples = [timed(functools.partial(insert, i, t))[0] for i, t in ids[warmup:]]
    return samples


# -- (b) signed dev applies ---------------------------------------------------------


@contextmanager
def instrumented(app: App, breakdown: Breakdown) -> Iterator[None]:
    """Time the repo's and store's methods (as instance attributes) and the pipeline's helpers.

    Only this process's objects are touched; nothing is changed on disk.
    """
    repo_methods = ["commit", "_commit_tree", "_update_ref", "_write_tree", "head", "read"]
    store_methods = ["receive", "decide", "recent", "breaker", "pending", "get", "save_breaker"]
    for name in repo_methods:
        setattr(app.repo, name, breakdown.wrap(f"repo.{name}", getattr(app.repo, name)))
    for name in store_methods:
        setattr(app.store, name, breakdown.wrap(f"store.{name}", getattr(app.store, name)))
    patched = [
        (pipeline_module, "parse_environment", "parse_environment"),
        (pipeline_module, "plan", "plan"),
        (pipeline_module, "run_chain", "run_chain"),
        (pipeline_module, "dedupe_key", "dedupe_key"),
        (admission_module, "admit", "admission.admit"),
    ]
    # The pipeline's helpers move as the code changes: time the ones that are there.
    patched = [(module, attr, label) for module, attr, label in patched if hasattr(module, attr)]
    originals = [(module, attr, getattr(module, attr)) for module, attr, _ in patched]
    for module, attr, label in patched:
        setattr(module, attr, breakdown.wrap(label, getattr(module, attr)))
    try:
        yield
    finally:
        for module, attr, fn in originals:
            setattr(module, attr, fn)
        for name in repo_methods:
            delattr(app.repo, name)
        for name in store_methods:
            delattr(app.store, name)


def replicas_for(i: int) -> int:
    return 5 + i % 8  # 5..12: never the seed's 4, always different from the previous one


def bench_apply(root: Path, n: int, warmup: int, url: str | None) -> dict[str, Any]:
    home = fresh_home(root, "apply")
    clock = FrozenClock(START)
    app = build(home, settings=raised_limits(on_database(load_settings(home), url)), clock=clock)
    breakdown = Breakdown()
    counter = iter(range(10**9))

    def submit() -> None:
        clock.advance(301)
        decision = app.orchestrator.submit(intent(replicas_for(next(counter))), agent="optimizer")
        if decision.status is not Status.APPLIED:
            raise SystemExit(f"(b) expected applied, got {decision.status.value}: {decision.reasons}")

    try:
        with instrumented(app, breakdown):
            for _ in range(warmup):
                submit()
            breakdown.reset()
            ours = [timed(submit)[0] for _ in range(n)]
        if not app.repo.verify(app.repo.head("dev") or ""):
            raise SystemExit("(b) the last apply is not a verifiable signed commit")
    finally:
        close(app)
    git_samples, commit_only, sign_samples = git_baseline(root / "scratch-repo", n, warmup)
    return {
        "ours": stats(ours),
        "baseline": stats(git_samples),
        "baseline_commit_only": stats(commit_only),
        "ssh_keygen_sign": stats(sign_samples),
        **breakdown.per_op(n),
    }


def git_baseline(repo: Path, n: int, warmup: int) -> tuple[list[float], list[float], list[float]]:
    """write + ``git add`` + ``git commit -S`` of the same file in a repo set up like the config repo."""
    key = signed_scratch_repo(repo, keys=repo.parent / "scratch-keys")

    target = repo / POOL
    document = copy.deepcopy(SEED[POOL])

    def commit(i: int) -> float:
        document["spec"]["replicas"] = replicas_for(i)
        target.write_text(render(document))
        run("git", "add", POOL, cwd=repo)
        message = (
            f"apx: optimizer update WorkerPool/checkout in dev\n\np95 over SLO for 5m on checkout\n\n"
            f"Intent-Id: {new_intent_id(START)}\nTrace-Id: {new_trace_id()}\nAgent: optimizer\nTenant: acme\n"
        )
        elapsed, _ = timed(
            lambda: run("git", "-c", "gpg.format=ssh", "commit", "-S", "-q", "-m", message, cwd=repo)
        )
        return elapsed

    for i in range(warmup):
        commit(i)
    full: list[float] = []
    commit_only: list[float] = []
    for i in range(warmup, warmup + n):
        started = time.perf_counter()
        commit_only.append(commit(i))
        full.append(time.perf_counter() - started)
    verified = subprocess.run(["git", "verify-commit", "HEAD"], cwd=repo, capture_output=True)
    if verified.returncode != 0:
        raise SystemExit(f"baseline commit is not verifiable: {verified.stderr.decode().strip()}")

    payload = subprocess.run(["git", "cat-file", "commit", "HEAD"], cwd=repo, capture_output=True).stdout
    sign = ["ssh-keygen", "-Y", "sign", "-n", "git", "-f", str(key.private_path)]
    for _ in range(warmup):
        run(*sign, cwd=repo, stdin=payload)
    signs = [timed(lambda: run(*sign, cwd=repo, stdin=payload))[0] for _ in range(n)]
    return full, commit_only, signs


# -- report ---------------------------------------------------------------------------


def table(results: dict[str, Any]) -> str:
    rows = [
        ("scenario", "ours p50 ms", "ours ops/s", "baseline", "base p50 ms", "base ops/s", "ratio"),
    ]
    bare = "sqlite" if results["server"].startswith("SQLite") else "psycopg"
    for scenario, base_key, label in (
        ("held", "baseline", f"{bare} insert, same row"),
        ("held", "baseline_write_set", f"{bare}, same write set"),
        ("apply", "baseline", "write+add+commit -S"),
        ("apply", "baseline_commit_only", "git commit -S only"),
        ("apply", "ssh_keygen_sign", "ssh-keygen -Y sign"),
    ):
        ours, base = results[scenario]["ours"], results[scenario][base_key]
        title = "(a) held at admission" if scenario == "held" else "(b) signed dev apply"
        rows.append(
            (
                title,
                f"{ours['p50_ms']:.2f}",
                f"{ours['ops_per_s']:.0f}",
                label,
                f"{base['p50_ms']:.3f}",
                f"{base['ops_per_s']:.0f}",
                f"{ours['p50_ms'] / base['p50_ms']:.1f}x",
            )
        )
    return render_table(rows, left=(0, 3))


def where_time_goes(result: dict[str, Any], title: str) -> str:
    per_op = result["breakdown_ms_per_op"]
    calls = result["calls_per_op"]
    total = result["ours"]["mean_ms"]
    in_commit = ("repo._commit_tree", "repo._update_ref", "repo._write_tree")
    top = result["outer_ms_per_op"]
    lines = [f"{title} (mean {total:.2f} ms):"]
    for name, ms in sorted(top.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {name:<22} {ms:7.2f}  {ms / total:5.1%}  ({calls[name]:g} calls)")
        if name == "repo.commit":
            for part, label in zip(
                in_commit,
                ("git commit-tree -S (ssh-keygen signs)", "git update-ref (CAS)", "blobs+trees in-process"),
                strict=True,
            ):
                lines.append(f"    {part:<20} {per_op.get(part, 0):7.2f}  {label}")
    rest = total - sum(top.values())
    share = f"{rest / total:5.1%}"
    lines.append(f"  {'rest':<22} {rest:7.2f}  {share}  (pipeline, langgraph, pydantic, lock, logging)")
    return "\n".join(lines)


def environment() -> dict[str, str]:
    def version(*cmd: str) -> str:
        done = subprocess.run(cmd, capture_output=True, text=True)
        return (done.stdout or done.stderr).strip().splitlines()[0]

    return {
        "date": datetime.now(UTC).date().isoformat(),
        "cpus": str(os.cpu_count()),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "git": version("git", "--version"),
        "ssh": version("ssh", "-V"),
    }


def bench_database(root: Path, url: str | None, n: int, warmup: int) -> dict[str, Any]:
    """Both scenarios with the intent log on SQLite (``url`` None) or on that PostgreSQL database."""
    root.mkdir()
    server = f"SQLite {sqlite3.sqlite_version}" if url is None else f"PostgreSQL {server_version(url)}"
    return {
        "server": server,
        "held": bench_held(root, n, warmup, url),
        "apply": bench_apply(root, n, warmup, url),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="timed operations per scenario (default 100)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed operations first (default 5)")
    parser.add_argument(
        "--database-url",
        default=database_url_default(),
        help="also run on this PostgreSQL server, in fresh schemas (default $APX_BENCH_DATABASE_URL)",
    )
    parser.add_argument("--no-sqlite", action="store_true", help="run on PostgreSQL only")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.n < 1 or args.warmup < 0:
        parser.error("--n must be at least 1 and --warmup at least 0")
    if problem := check_postgres_url(args.database_url):
        parser.error(problem)
    if args.no_sqlite and not args.database_url:
        parser.error("--no-sqlite needs --database-url (or APX_BENCH_DATABASE_URL)")

    started = time.perf_counter()
    results: dict[str, Any] = {"n": args.n, "warmup": args.warmup, "environment": environment()}
    databases: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="apx-bench-") as tmp:
        root = Path(tmp)
        if not args.no_sqlite:
            databases["sqlite"] = bench_database(root / "sqlite", None, args.n, args.warmup)
        if args.database_url:
            with postgres_schema(args.database_url) as url:
                databases["postgresql"] = bench_database(root / "postgresql", url, args.n, args.warmup)
    results["databases"] = databases
    results["seconds"] = time.perf_counter() - started

    env = results["environment"]
    print(
        f"APX decisions, N={args.n} (warm-up {args.warmup}); {env['cpus']} CPUs, Python {env['python']}, "
        f"{env['git']}, {env['ssh'].split(',')[0]}"
    )
    for result in databases.values():
        print()
        print(f"== intent log on {result['server']}")
        print(table(result))
        held = result["held"]["ours"]
        print()
        print(
            f"(a) the admission window grows (frozen clock: all {args.n + args.warmup + 1} intents are "
            f"recent): first-decile p50 {held['first_decile_p50_ms']:.2f} ms, "
            f"last-decile p50 {held['last_decile_p50_ms']:.2f} ms"
        )
        print()
        print(where_time_goes(result["held"], "(a) where the time goes, ms per held intent"))
        print()
        print(where_time_goes(result["apply"], "(b) where the time goes, ms per signed apply"))
    print()
    print(f"total {results['seconds']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
