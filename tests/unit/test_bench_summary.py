"""bench/run_all.py's table, built from canned results shaped like the bench scripts' JSON."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

RUN_ALL = Path(__file__).resolve().parents[2] / "bench" / "run_all.py"


@pytest.fixture(scope="module")
def run_all() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run_all", RUN_ALL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def timing(p50: float, p99: float | None = None, ops: float | None = None) -> dict[str, float]:
    return {"p50_ms": p50, "p99_ms": p99 or p50 * 2, "ops_per_s": ops or 1000 / p50}


def canned() -> dict[str, Any]:
    policy = {
        name: {"engine": timing(2.0), "bare": timing(1.6), "ratio_p50": 1.25}
        for name in ("one change", "60 routes")
    }
    validation = {
        "one change": {"status": "applied", "replay": timing(12.0, 16.0)},
        "60 routes": {"status": "rejected", "replay": timing(40.0, 80.0)},
    }

    def per_entry(ours: float, bare: float) -> dict[str, Any]:
        return {
            "ours": {"p50_us": ours, "entries_per_txn": 1000},
            "baseline": {"p50_us": bare},
            "ratio_p50": ours / bare,
        }

    def database() -> dict[str, Any]:
        return {
            "append": {"single": per_entry(400, 160), "batched": per_entry(20, 8)},
            "verification": {
                "verify": {"median_s": 4.0, "entries_per_s": 250_000},
                "hashlib_floor": {"median_s": 2.0, "entries_per_s": 500_000},
            },
        }

    def filters() -> dict[str, Any]:
        return {
            "baseline": {"p50_ms": 0.3, "p95_ms": 0.5},
            "none (newest 100)": {"p50_ms": 12.0, "p95_ms": 20.0},
            "agent": {"p50_ms": 15.0, "p95_ms": 30.0},
            "target": {"p50_ms": 50.0, "p95_ms": 150.0},
            "(info) reason, rare": {"p50_ms": 60.0, "p95_ms": 900.0},
        }

    def decisions(held: float, apply: float) -> dict[str, Any]:
        return {
            "held": {"ours": timing(held), "baseline": timing(0.1)},
            "apply": {"ours": timing(apply), "baseline": timing(20.0)},
        }

    def workers(ours_s: float, base_s: float) -> dict[str, Any]:
        return {
            "ours": {
                "intents": 200,
                "wall_s": ours_s,
                "decisions_per_s": 200 / ours_s,
                "decisions_per_worker": [200],
            },
            "baseline": {"commits": 200, "wall_s": base_s, "commits_per_s": 200 / base_s},
            "ratio": ours_s / base_s,
        }

    return {
        "decisions": {"databases": {"sqlite": decisions(5.0, 40.0), "postgresql": decisions(30.0, 60.0)}},
        "policy": {
            "policy": policy,
            "databases": {"sqlite": {"validation": validation}, "postgresql": {"validation": validation}},
        },
        "audit_log": {"entries": 1_000_000, "databases": {"sqlite": database(), "postgresql": database()}},
        "intent_queries": {
            "rows": 1_000_000,
            "sqlite": {"filters": filters()},
            "postgresql": {"filters": filters()},
        },
        "workers": {
            "scenarios": {
                "1 environment": {"1": workers(8.0, 4.0), "2": workers(8.5, 2.5), "4": workers(9.0, 2.0)},
                "4 environments": {"1": workers(8.0, 4.0), "2": workers(6.0, 2.5), "4": workers(5.0, 2.0)},
            }
        },
    }


def by_figure(rows: list[Any], figure: str, database: str) -> Any:
    [row] = [r for r in rows if r.figure.startswith(figure) and r.database == database]
    return row


def test_each_ratio_is_ours_over_the_baseline_from_the_same_results(run_all: ModuleType) -> None:
    rows = run_all.build_rows(canned(), postgres=True, intent_rows=1_000_000)

    assert by_figure(rows, "admission decisions/s", "SQLite").ratio == pytest.approx(50)
    assert by_figure(rows, "admission decisions/s", "PostgreSQL").ratio == pytest.approx(300)
    assert by_figure(rows, "signed dev apply", "SQLite").ratio == pytest.approx(2)
    assert by_figure(rows, "signed dev apply", "PostgreSQL").ratio == pytest.approx(3)
    assert by_figure(rows, "validation p99, 60 routes", "SQLite").ratio == pytest.approx(80 / 3.2)
    assert by_figure(rows, "validation p99, 60 routes", "PostgreSQL").ratio == pytest.approx(80 / 3.2)
    assert by_figure(rows, "audit verify", "PostgreSQL").ratio == pytest.approx(2)
    assert by_figure(rows, "audit append, 1 entry", "PostgreSQL").ratio == pytest.approx(2.5)


def test_the_slowest_typical_query_leaves_out_informational_filters(run_all: ModuleType) -> None:
    rows = run_all.build_rows(canned(), postgres=True, intent_rows=1_000_000)

    slowest = by_figure(rows, "intent-log query p95 at 1,000,000 intents, slowest", "SQLite")
    assert "(target)" in slowest.figure
    assert slowest.ratio == pytest.approx(300)


def test_worker_rows_compare_each_worker_count_with_as_many_bare_committers(run_all: ModuleType) -> None:
    rows = run_all.build_rows(canned(), postgres=True, intent_rows=1_000_000)

    workers = [r for r in rows if "worker" in r.database]
    assert [(r.figure.rsplit(", ", 1)[1], r.database) for r in workers] == [
        ("1 environment", "PostgreSQL, 1 worker"),
        ("1 environment", "PostgreSQL, 2 workers"),
        ("1 environment", "PostgreSQL, 4 workers"),
        ("4 environments", "PostgreSQL, 1 worker"),
        ("4 environments", "PostgreSQL, 2 workers"),
        ("4 environments", "PostgreSQL, 4 workers"),
    ]
    assert [r.ratio for r in workers] == pytest.approx([2.0, 3.4, 4.5, 2.0, 2.4, 2.5])
    assert "40.0/s (200 in 5.00 s)" in workers[-1].ours
    assert "4 concurrent bare `git commit -S`" in workers[-1].baseline


def test_without_postgresql_no_script_gets_a_server_and_the_workers_bench_is_left_out(
    run_all: ModuleType, tmp_path: Path
) -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/apx_bench"

    with_server = run_all.commands(run_all.QUICK, tmp_path, url)
    without = run_all.commands(run_all.QUICK, tmp_path, None)
    rows = run_all.build_rows(canned(), postgres=False, intent_rows=100_000)

    assert sorted(with_server) == sorted(run_all.SCRIPTS)
    assert all(argv[argv.index("--database-url") + 1] == url for argv in with_server.values())
    assert "workers" not in without
    assert not any("--database-url" in argv for argv in without.values())
    assert not any(r.database.startswith("PostgreSQL") for r in rows)


def test_a_script_without_results_shows_as_missing_rather_than_as_a_figure(run_all: ModuleType) -> None:
    results = canned()
    del results["audit_log"]

    rows = run_all.build_rows(results, postgres=False, intent_rows=100_000)
    table = run_all.markdown_table(rows)

    audit = [r for r in rows if r.figure.startswith("audit")]
    assert [(r.database, r.status, r.ratio) for r in audit] == [("SQLite", "failed", None)]
    assert "no results from audit_log.py" in table
    assert not any(r.database.startswith("PostgreSQL") and r.status == "measured" for r in rows)
    assert len(table.splitlines()) == len(rows) + 2
