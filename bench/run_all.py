"""Every benchmark in this directory, one command, one table.

Runs ``decisions.py``, ``policy.py``, ``audit_log.py``, ``intent_queries.py`` and
``workers.py`` one after the other, each in its own subprocess (so one's memory,
caches and garbage do not weigh on the next), the first four on SQLite and on
PostgreSQL, ``workers.py`` (1, 2 and 4 ``apx drain`` processes) on PostgreSQL.
Each script measures its own baselines in the same run; this one only collects
their JSON and writes ``summary.md`` and ``summary.json`` into ``--out``: one
row per figure with ours, the baseline, the ratio and what bounds it.

    /work/venv/bin/python bench/run_all.py --quick     # ~5 min on 2 cores the first time
    /work/venv/bin/python bench/run_all.py             # 1,000,000 of each; seeding ~15 min a database, once

PostgreSQL: ``--postgres URL`` (default the ``apx_bench`` database on the local
server, created if it is missing); ``--no-postgres`` runs SQLite only (and no
workers). The decision, policy, audit and workers benches work in fresh schemas
they drop; the intent-log bench keeps its
seeded log (schema ``intents_<rows>``, and ``bench/results/intent-queries-<rows>.db``
on SQLite) so a second run reuses it. Each script's own output and JSON go to
``<out>/raw/``; ``--table-only`` rebuilds the summary from them without running
anything. No thresholds: a ratio is reported, never judged.

``summary.json``: ``command``, ``mode`` (quick|full), ``started_at``, ``postgres``
(the URL or null), ``environment`` (cpus, machine, python, loadavg_start,
loadavg_end), ``runs`` (per script: argv, returncode, seconds, loadavg before and
after, log) and ``rows``: one object per figure with ``figure``, ``database``,
``ours``, ``baseline`` (text as in the table), ``ratio`` (a number: ours' time over
the baseline's at the same statistic, or null), ``bound`` (what bounds it) and
``status`` (``measured``, ``failed`` or ``not measured``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/apx_bench"
SCRIPTS = ("decisions", "policy", "audit_log", "intent_queries", "workers")


@dataclass(frozen=True)
class Sizes:
    """What each script is asked to do in one mode."""

    decisions: tuple[str, ...]
    policy: tuple[str, ...]
    audit_log: tuple[str, ...]
    intent_rows: int
    intent_queries: tuple[str, ...]
    workers: tuple[str, ...]


FULL = Sizes(
    decisions=("--n", "100", "--warmup", "5"),
    policy=("--n", "100", "--n-eval", "500"),
    audit_log=("--entries", "1000000"),
    intent_rows=1_000_000,
    intent_queries=("--n", "100"),
    workers=("--per-environment", "50"),
)
QUICK = Sizes(
    decisions=("--n", "30", "--warmup", "3"),
    policy=("--n", "30", "--n-eval", "200", "--warmup", "3"),
    audit_log=("--entries", "100000", "--appends", "300", "--batches", "5", "--repeat", "1"),
    intent_rows=100_000,
    intent_queries=("--n", "30", "--warmup", "3"),
    workers=("--per-environment", "10"),
)


@dataclass(frozen=True)
class Row:
    """One figure: ours next to the baseline measured in the same run."""

    figure: str
    database: str
    ours: str
    baseline: str
    ratio: float | None  # ours' time / the baseline's at the same statistic; None: no ratio
    bound: str
    status: str = "measured"  # or "failed", "not measured"


# -- running ------------------------------------------------------------------------------


def commands(sizes: Sizes, raw: Path, postgres: str | None) -> dict[str, list[str]]:
    python = sys.executable
    pg = ["--database-url", postgres] if postgres else []
    rows = sizes.intent_rows
    scripts = {
        "decisions": [python, str(BENCH / "decisions.py"), *sizes.decisions, *pg],
        "policy": [python, str(BENCH / "policy.py"), *sizes.policy, *pg],
        "audit_log": [python, str(BENCH / "audit_log.py"), *sizes.audit_log, *pg],
        "intent_queries": [
            python,
            str(BENCH / "intent_queries.py"),
            "--rows",
            str(rows),
            *sizes.intent_queries,
            *pg,
            *(["--pg-schema", f"intents_{rows}"] if postgres else []),
        ],
        "workers": [python, str(BENCH / "workers.py"), *sizes.workers, *pg],
    }
    if not postgres:
        del scripts["workers"]  # PostgreSQL only
    return {name: [*argv, "--json", str(raw / f"{name}.json")] for name, argv in scripts.items()}


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database ``url`` names if the server does not have it yet."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    target = make_url(url)
    name = target.database
    if not name:
        raise SystemExit("--postgres must name a database")
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            there = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
            if there is None:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
                print(f"created database {name}", file=sys.stderr)
    finally:
        admin.dispose()


def run_script(name: str, argv: list[str], raw: Path) -> dict[str, Any]:
    log = raw / f"{name}.log"
    print(f"[{datetime.now(UTC):%H:%M:%S}] {name}: {shlex.join(argv[1:])}", file=sys.stderr, flush=True)
    load = [loadavg()]
    started = time.perf_counter()
    # The URL each script gets is the one on its command line, or none.
    env = {k: v for k, v in os.environ.items() if k != "APX_BENCH_DATABASE_URL"}
    with log.open("w") as out:
        done = subprocess.run(argv, cwd=BENCH.parent, stdout=out, stderr=subprocess.STDOUT, env=env)
    seconds = time.perf_counter() - started
    load.append(loadavg())
    print(f"  exit {done.returncode} after {seconds:.0f} s; output in {log}", file=sys.stderr, flush=True)
    return {
        "argv": argv[1:],
        "returncode": done.returncode,
        "seconds": round(seconds, 1),
        "loadavg": load,  # 1-minute load average before and after: other work moves every figure
        "log": str(log),
    }


def load_results(raw: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in SCRIPTS:
        path = raw / f"{name}.json"
        if path.exists():
            results[name] = json.loads(path.read_text())
    return results


# -- the table ------------------------------------------------------------------------------


BOUNDS = {
    "held": "three SQLAlchemy transactions per decision (recent, breaker, receive), ~0.5-1 ms of "
    "Python each; SQLite's own work is a small part",
    "held_pg": "the same three transactions, each a few round trips; `receive`'s commit waits for "
    "the server's WAL flush (fsync), as the baseline's does",
    "apply": "signing: `git commit-tree -S` starts git and ssh-keygen; a second git process moves "
    "the branch; then the store's transactions",
    "policy": "rego-cpp evaluating the bundle; the engine adds input checks, JSON and result parsing",
    "validation_one": "three store reads and the policy evaluation, then langgraph and the models",
    "validation_60": "rendering and diffing 60 changed files, then the store reads and the policy",
    "append_single": "a head read and the insert through SQLAlchemy per transaction; on PostgreSQL "
    "also the advisory lock's round trip",
    "append_batched": "Python per entry: the canonical JSON body and three hashes (~12 µs)",
    "verify": "three SHA-256 calls per entry (call overhead, not hashing), the loop, and streaming rows",
    "query": "building 100 views (rows, targets, events, pydantic models); the database's part is a few ms",
    "query_target": "one ordered range of the (target, intent_seq) index, then the resource's intents "
    "joined by seq; a hot resource with rare other filters reads most of its intents",
    "workers_one": "one environment is decided in order, one intent at a time, under its lock: "
    "extra workers wait for it; each decision is ~50-120 ms here of Python, the store, git and signing",
    "workers_many": "2 cores: Python, git, ssh-keygen and PostgreSQL share them; environments are "
    "decided side by side only by workers that take different ones",
}


def ms(value: float) -> str:
    return f"{value:.3f} ms" if value < 1 else f"{value:.2f} ms" if value < 100 else f"{value:.0f} ms"


def rate(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}"


def _missing(figure: str, database: str, why: str, status: str = "failed") -> Row:
    return Row(figure, database, "—", "—", None, why, status)


DATABASES = (("sqlite", "SQLite"), ("postgresql", "PostgreSQL"))


def wanted_databases(postgres: bool) -> list[tuple[str, str]]:
    return [(key, label) for key, label in DATABASES if postgres or key == "sqlite"]


def decision_rows(results: dict[str, Any] | None, postgres: bool) -> list[Row]:
    held, apply = "admission decisions/s (held intent)", "signed dev apply"
    rows: list[Row] = []
    for key, label in wanted_databases(postgres):
        result = (results or {}).get("databases", {}).get(key)
        if result is None:
            why = (
                "no results from decisions.py (see raw/decisions.log)"
                if results is None
                else "not in decisions.py's results"
            )
            status = "failed" if results is None else "not measured"
            rows += [_missing(held, label, why, status), _missing(apply, label, why, status)]
            continue
        bare = "sqlite3" if key == "sqlite" else "psycopg"
        ours, base = result["held"]["ours"], result["held"]["baseline"]
        rows.append(
            Row(
                held,
                label,
                f"{rate(ours['ops_per_s'], '/s')} (p50 {ms(ours['p50_ms'])})",
                f"bare {bare} insert of the same row, a transaction each: {rate(base['ops_per_s'], '/s')} "
                f"(p50 {ms(base['p50_ms'])})",
                ours["p50_ms"] / base["p50_ms"],
                BOUNDS["held" if key == "sqlite" else "held_pg"],
            )
        )
        ours, base = result["apply"]["ours"], result["apply"]["baseline"]
        rows.append(
            Row(
                apply,
                label,
                f"p50 {ms(ours['p50_ms'])} ({rate(ours['ops_per_s'], '/s')})",
                f"write + `git add` + `git commit -S`: p50 {ms(base['p50_ms'])}",
                ours["p50_ms"] / base["p50_ms"],
                BOUNDS["apply"],
            )
        )
    return rows


def worker_rows(results: dict[str, Any] | None, postgres: bool) -> list[Row]:
    """Deciding queued intents with N `apx drain` processes: ours against N bare committers."""
    if not postgres:
        return []
    if results is None:
        return [
            _missing(
                "queued intents decided/s", "PostgreSQL", "no results from workers.py (see raw/workers.log)"
            )
        ]
    rows: list[Row] = []
    for scenario, by_workers in results["scenarios"].items():
        for workers, r in by_workers.items():
            ours, base = r["ours"], r["baseline"]
            count = int(workers)
            rows.append(
                Row(
                    f"queued intents decided/s, {scenario}",
                    f"PostgreSQL, {count} worker{'s' * (count > 1)}",
                    f"{ours['decisions_per_s']:,.1f}/s ({ours['intents']} in {ours['wall_s']:.2f} s)",
                    f"{count} concurrent bare `git commit -S`, a branch each: "
                    f"{base['commits_per_s']:,.1f}/s ({base['wall_s']:.2f} s)",
                    r["ratio"],
                    BOUNDS["workers_one" if scenario.startswith("1 ") else "workers_many"],
                )
            )
    return rows


def policy_rows(results: dict[str, Any] | None, postgres: bool) -> list[Row]:
    if results is None:
        return [_missing("validation p50/p99", "SQLite", "no results from policy.py (see raw/policy.log)")]
    rows: list[Row] = []
    for name in ("one change", "60 routes"):
        policy = results["policy"][name]
        engine, bare = policy["engine"], policy["bare"]
        rows.append(
            Row(
                f"policy evaluation p50, {name}",
                "in process",
                ms(engine["p50_ms"]),
                f"bare regopy `query_bundle`: {ms(bare['p50_ms'])}",
                policy["ratio_p50"],
                BOUNDS["policy"],
            )
        )
    for key, label in wanted_databases(postgres):
        database = results.get("databases", {}).get(key)
        if database is None:
            rows.append(_missing("validation p50/p99", label, "not in policy.py's results", "not measured"))
            continue
        for name, bound in (("one change", "validation_one"), ("60 routes", "validation_60")):
            replay, bare = database["validation"][name]["replay"], results["policy"][name]["bare"]
            status = database["validation"][name]["status"]
            for stat in ("p50", "p99"):
                rows.append(
                    Row(
                        f"validation {stat}, {name} ({status})",
                        label,
                        ms(replay[f"{stat}_ms"]),
                        f"bare regopy evaluation {stat}: {ms(bare[f'{stat}_ms'])}",
                        replay[f"{stat}_ms"] / bare[f"{stat}_ms"],
                        BOUNDS[bound],
                    )
                )
    return rows


def audit_rows(results: dict[str, Any] | None, postgres: bool) -> list[Row]:
    wanted = wanted_databases(postgres)
    if results is None:
        return [
            _missing("audit append and verify", label, "no results from audit_log.py (see raw/audit_log.log)")
            for _, label in wanted
        ]
    rows: list[Row] = []
    entries = results["entries"]
    for key, label in wanted:
        result = results["databases"].get(key)
        if result is None:
            rows.append(
                _missing("audit append and verify", label, "not in audit_log.py's results", "not measured")
            )
            continue
        for variant, title in (("single", "1 entry a transaction"), ("batched", "batched")):
            r = result["append"][variant]
            if variant == "batched":
                title = f"{r['ours']['entries_per_txn']:,} entries a transaction"
            rows.append(
                Row(
                    f"audit append, {title}",
                    label,
                    f"p50 {r['ours']['p50_us']:,.0f} µs/entry",
                    f"bare insert of the same row: p50 {r['baseline']['p50_us']:,.0f} µs/entry",
                    r["ratio_p50"],
                    BOUNDS[f"append_{variant}"],
                )
            )
        v = result["verification"]
        rows.append(
            Row(
                f"audit verify, {entries:,} entries",
                label,
                f"{rate(v['verify']['entries_per_s'], 'entries/s')} ({v['verify']['median_s']:.2f} s)",
                f"hashlib, same hashes: {rate(v['hashlib_floor']['entries_per_s'], 'entries/s')}",
                v["verify"]["median_s"] / v["hashlib_floor"]["median_s"],
                BOUNDS["verify"],
            )
        )
    return rows


def typical(filters: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in filters.items() if k != "baseline" and not k.startswith("(info)")}


def query_rows(results: dict[str, Any] | None, postgres: bool, rows_wanted: int) -> list[Row]:
    wanted = wanted_databases(postgres)
    if results is None:
        why = "no results from intent_queries.py (see raw/intent_queries.log)"
        return [
            _missing(f"intent-log queries p95, {rows_wanted:,} intents", label, why) for _, label in wanted
        ]
    n = results["rows"]
    rows: list[Row] = []
    for key, label in wanted:
        if key not in results:
            rows.append(
                _missing(
                    f"intent-log queries p95, {n:,} intents", label, "not in the results", "not measured"
                )
            )
            continue
        filters = results[key]["filters"]
        base = filters["baseline"]
        baseline = f"bare `SELECT … ORDER BY seq DESC LIMIT 100`: p95 {ms(base['p95_ms'])}"
        common = typical(filters)
        newest = common["none (newest 100)"]
        rows.append(
            Row(
                f"intent-log query p95 at {n:,} intents, newest 100",
                label,
                ms(newest["p95_ms"]),
                baseline,
                newest["p95_ms"] / base["p95_ms"],
                BOUNDS["query"],
            )
        )
        p95s = sorted(f["p95_ms"] for f in common.values())
        rows.append(
            Row(
                f"intent-log query p95 at {n:,} intents, median of {len(p95s)} typical filters",
                label,
                ms(statistics.median(p95s)),
                baseline,
                statistics.median(p95s) / base["p95_ms"],
                BOUNDS["query"],
            )
        )
        worst_name, worst = max(common.items(), key=lambda kv: kv[1]["p95_ms"])
        rows.append(
            Row(
                f"intent-log query p95 at {n:,} intents, slowest typical filter ({worst_name})",
                label,
                ms(worst["p95_ms"]),
                baseline,
                worst["p95_ms"] / base["p95_ms"],
                BOUNDS["query_target"] if worst_name.startswith("target") else BOUNDS["query"],
            )
        )
    return rows


def build_rows(results: dict[str, Any], *, postgres: bool, intent_rows: int) -> list[Row]:
    """The summary's rows from the scripts' JSON (a script missing from ``results`` failed)."""
    return [
        *decision_rows(results.get("decisions"), postgres),
        *worker_rows(results.get("workers"), postgres),
        *policy_rows(results.get("policy"), postgres),
        *audit_rows(results.get("audit_log"), postgres),
        *query_rows(results.get("intent_queries"), postgres, intent_rows),
    ]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| figure | database | ours | baseline (same run) | ratio | what bounds it |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.status == "measured":
            ratio = f"**{r.ratio:.2f}x**" if r.ratio is not None else "—"
            cells = [r.figure, r.database, r.ours, r.baseline, ratio, r.bound]
        else:
            cells = [r.figure, r.database, r.status, "—", "—", r.bound]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def filters_table(results: dict[str, Any] | None) -> str:
    """Every intent-log filter, p95 in ms, per database (the detail behind the query rows)."""
    if not results:
        return ""
    names = [key for key, _ in DATABASES if key in results]
    header = "| filter | " + " | ".join(f"{n} p50 | {n} p95 | {n} page p95" for n in names) + " |"
    lines = [header, "|---" * (1 + 3 * len(names)) + "|"]
    for name in results[names[0]]["filters"]:
        cells = []
        for db in names:
            f = results[db]["filters"].get(name, {})
            page = f.get("page_only", {}).get("p95_ms")
            cells += [
                f"{f['p50_ms']:.1f}" if f else "",
                f"{f['p95_ms']:.1f}" if f else "",
                f"{page:.1f}" if page is not None else "",
            ]
        label = "baseline: bare newest 100" if name == "baseline" else name
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_markdown(summary: dict[str, Any], rows: list[Row], results: dict[str, Any]) -> str:
    env = summary["environment"]
    runs = "; ".join(
        f"{name} {run['seconds']:.0f} s"
        + (f" (load {run['loadavg'][0]} → {run['loadavg'][1]})" if "loadavg" in run else "")
        + ("" if run["returncode"] == 0 else f" (exit {run['returncode']})")
        for name, run in summary["runs"].items()
    )
    parts = [
        f"# APX benchmarks, {summary['mode']} mode",
        "",
        f"`{summary['command']}`, {summary['started_at']}; {env['cpus']} CPUs ({env['machine']}), "
        f"Python {env['python']}; load average {env['loadavg_start']} at start, {env['loadavg_end']} at end. "
        f"Runs: {runs or 'none (table rebuilt from raw/)'}.",
        "",
        "Ratio = ours / the baseline at the statistic shown, time per operation "
        "(for rates: the baseline's rate / ours). 1.00x would be as fast as the baseline.",
        "",
        markdown_table(rows),
    ]
    detail = filters_table(results.get("intent_queries"))
    if detail:
        parts += ["", "Intent-log queries, every filter (ms; page = finding the page only):", "", detail]
    return "\n".join(parts) + "\n"


def loadavg() -> str:
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "?"


def environment() -> dict[str, str]:
    load = loadavg()
    return {
        "cpus": str(os.cpu_count()),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "loadavg_start": load,
        "loadavg_end": load,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (100,000 entries and intents)")
    parser.add_argument(
        "--postgres", default=DEFAULT_POSTGRES, help=f"PostgreSQL URL (default {DEFAULT_POSTGRES})"
    )
    parser.add_argument("--no-postgres", action="store_true", help="run on SQLite only")
    parser.add_argument(
        "--out",
        type=Path,
        default=BENCH / "results" / "summary",
        help="where to write (default bench/results/summary)",
    )
    parser.add_argument("--only", action="append", choices=SCRIPTS, help="run only this script (repeatable)")
    parser.add_argument("--table-only", action="store_true", help="rebuild the summary from <out>/raw/")
    args = parser.parse_args(argv)

    postgres = None if args.no_postgres else args.postgres
    sizes = QUICK if args.quick else FULL
    raw = args.out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "command": "python bench/run_all.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "mode": "quick" if args.quick else "full",
        "started_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "postgres": postgres,
        "environment": environment(),
        "runs": {},
    }
    previous = args.out / "summary.json"
    if args.table_only and previous.exists():
        # Keep what the run that wrote raw/ recorded: its command, date, machine and load.
        summary = {**json.loads(previous.read_text()), "table_rebuilt_at": summary["started_at"]}
    else:
        if postgres:
            ensure_database(postgres)
        for name, command in commands(sizes, raw, postgres).items():
            if args.only and name not in args.only:
                continue
            (raw / f"{name}.json").unlink(missing_ok=True)  # never report an older run's figures
            summary["runs"][name] = run_script(name, command, raw)
        summary["environment"]["loadavg_end"] = loadavg()

    results = load_results(raw)
    rows = build_rows(results, postgres=postgres is not None, intent_rows=sizes.intent_rows)
    summary["rows"] = [asdict(r) for r in rows]
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = summary_markdown(summary, rows, results)
    (args.out / "summary.md").write_text(text)
    print(text)
    print(f"wrote {args.out / 'summary.md'} and {args.out / 'summary.json'}", file=sys.stderr)
    failed = [name for name, run in summary["runs"].items() if run["returncode"] != 0]
    if failed:
        print(f"failed: {', '.join(failed)} (see {raw}/<name>.log)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
