"""How fast ``apx intents list`` answers over a large intent log, next to a bare newest-100 SELECT.

Issue 4 sets the target: ``intents list`` with filters over 1,000,000 intents at
p95 under 50 ms, on SQLite and on PostgreSQL.

**Seeding.** ``--rows`` intents (default 1,000,000) are written by bulk SQLAlchemy
Core inserts (``executemany`` of 5,000 intents a transaction, with their target
and event rows) into a database migrated by ``SqlIntentStore.open`` — the schema
and indexes the product uses. The log is made to look like two years of a
multi-tenant installation (seeded RNG, so every run writes the same log):

* 50 tenants with a Zipf-like spread (the biggest ~20 % of intents, the smallest ~0.4 %);
  environments dev 60 %, staging 15 %, prod 25 %;
* agents optimizer 40 %, builder 30 %, security 20 %, finops 7 %, migrator 3 %;
* statuses as admission and the pipeline hand them out: in dev/staging ~45 %
  applied, 15 % duplicate, 12 % rate limited, 12 % rejected, 5 % circuit open,
  2 % rolled back, and a tail of queued/failed; in prod merged, pr_open,
  approved, pr_rejected instead of applied; every final intent has a valid
  Decision (reasons, checks, blast radius, commit or PR) and a 2-4 event timeline;
* targets: per tenant one Product, three WorkerPools, one NetworkPolicy and 40
  Routes (2,250 resources); an intent changes one resource (most), 2-5 routes,
  or rarely 20-60 routes: ~1.3 targets per intent;
* 15 % of intents are caused by one of the 200 before them; received times one
  minute apart on average, with jitter.

An existing database at the same place with the same number of rows is reused
(``--fresh`` to re-seed): seeding takes minutes at 1,000,000 rows.

**Queries.** ``SqlIntentStore.query(IntentQuery(...))`` as ``apx intents list``
calls it (limit 101: 100 shown, one to know there is more), including reading
the targets and events of the rows found and building the views. Per filter,
``--n`` queries whose values are drawn from the log (a random agent, status,
tenant, environment and status, target, trace id, parent, time), after a
warm-up of 5. ``cursor page 2`` asks for the page after the newest 100 of a
filter (none, or a random agent).

*Baseline*: the same database, through the raw driver connection (``sqlite3`` /
psycopg), ``SELECT * FROM intents ORDER BY seq DESC LIMIT 100`` with every row
fetched: the least any "newest 100" can cost here. Ratio = ours / baseline at p50.
The figure to compare with the target is p95. Nothing is asserted about speed.

*Page only*: the same queries again, running only the store's first step
(``sql_store._page``: which intents, as sequence numbers, from the indexes) —
the database's share of the filtering; the rest of ``query`` reads those rows
with their targets and events and builds the views. The load average before
and after each database's run is printed: other work on the machine moves
every figure.

    /work/venv/bin/python bench/intent_queries.py [--rows N] [--n N] [--database-url URL] [--json out.json]

PostgreSQL runs when ``--database-url`` or ``APX_BENCH_DATABASE_URL`` names one
(e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/apx_bench``); the bench
works in its own schema there (``--pg-schema``, default ``apx_bench``).
SQLite goes to ``bench/results/intent-queries-<rows>.db`` (``--sqlite-path``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import render_table
from sqlalchemy import create_engine, make_url, pool, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from orchestrator import sql_store
from orchestrator.decision import Decision, Status
from orchestrator.ids import new_intent_id
from orchestrator.records import IntentQuery
from orchestrator.sql_store import SqlIntentStore

RESULTS = Path(__file__).resolve().parent / "results"
START = datetime(2024, 11, 23, 0, 0, tzinfo=UTC)
BATCH = 5_000
SHOWN = 100
TARGET_P95_MS = 50.0

AGENTS = {"optimizer": 40, "builder": 30, "security": 20, "finops": 7, "migrator": 3}
ENVIRONMENTS = {"dev": 60, "staging": 15, "prod": 25}
AUTO_STATUSES = {
    Status.APPLIED: 45,
    Status.DUPLICATE: 15,
    Status.RATE_LIMITED: 12,
    Status.REJECTED: 12,
    Status.CIRCUIT_OPEN: 5,
    Status.ROLLED_BACK: 2,
    Status.FAILED: 0.5,
    Status.QUEUED: 0.3,
}
PR_STATUSES = {
    Status.MERGED: 35,
    Status.DUPLICATE: 15,
    Status.RATE_LIMITED: 10,
    Status.REJECTED: 15,
    Status.PR_REJECTED: 8,
    Status.CIRCUIT_OPEN: 5,
    Status.PR_OPEN: 4,
    Status.APPROVED: 1,
    Status.ROLLED_BACK: 1.5,
    Status.FAILED: 0.5,
    Status.QUEUED: 0.3,
}
REJECTIONS = (
    "policy: replicas above 100 ({n}) on WorkerPool/{name}",
    "policy: quota raised more than 2x ({x}x) on {name}/pro",
    "schema: WorkerPool/{name}: spec.replicas: must be at most maxReplicas",
    "conflict: {target}: spec.replicas changed since the intent's base",
    "policy: NetworkPolicy/{name} opens ingress to 0.0.0.0/0",
    "policy: more than 50 routes in one intent ({n})",
    "secrets: spec.env[0].value looks like an AWS access key (not shown)",
    "no change: the intent changes nothing",
)


# -- the log ------------------------------------------------------------------------


@dataclass
class Universe:
    """What the seeded log is made of, drawn once from a seeded RNG."""

    rng: random.Random
    tenants: list[str]
    tenant_weights: list[float]
    resources: dict[str, list[tuple[str, str]]]  # tenant -> [(kind, name)]
    ids: list[str] = field(default_factory=list)

    @classmethod
    def make(cls, seed: int = 4) -> Universe:
        rng = random.Random(seed)
        tenants = ["acme", *(f"tenant-{i:02d}" for i in range(1, 50))]
        weights = [1 / (rank + 1) ** 0.9 for rank in range(len(tenants))]
        resources = {
            t: [
                ("Product", f"{t}-api"),
                *(("WorkerPool", f"{t}-{p}") for p in ("checkout", "search", "batch")),
                ("NetworkPolicy", f"{t}-edge"),
                *(("Route", f"{t}-r-{i:02d}") for i in range(1, 41)),
            ]
            for t in tenants
        }
        return cls(rng=rng, tenants=tenants, tenant_weights=weights, resources=resources)


def pick(rng: random.Random, weights: dict[Any, float]) -> Any:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def targets_for(u: Universe, tenant: str) -> list[tuple[str, str]]:
    rng = u.rng
    owned = u.resources[tenant]
    routes = [r for r in owned if r[0] == "Route"]
    roll = rng.random()
    if roll < 0.40:
        return [rng.choice(owned[1:4])]  # a WorkerPool
    if roll < 0.70:
        return [rng.choice(routes)]
    if roll < 0.80:
        return rng.sample(routes, rng.randint(2, 5))
    if roll < 0.81:
        return rng.sample(routes, rng.randint(20, 40))
    if roll < 0.92:
        return [owned[0]]  # the Product
    return [owned[4]]  # the NetworkPolicy


def intent_rows(
    u: Universe, seq: int, at: datetime
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """One intent: its row, its target rows, its event rows (plain dicts for Core inserts)."""
    rng = u.rng
    tenant = rng.choices(u.tenants, weights=u.tenant_weights)[0]
    environment = pick(rng, ENVIRONMENTS)
    agent = pick(rng, AGENTS)
    status: Status = pick(rng, PR_STATUSES if environment == "prod" else AUTO_STATUSES)
    intent_id = new_intent_id(at)
    trace_id = f"{rng.getrandbits(128):032x}"
    caused_by = rng.choice(u.ids[-200:]) if u.ids and rng.random() < 0.15 else None
    u.ids.append(intent_id)
    targets = targets_for(u, tenant)
    keys = [f"{kind}/{name}" for kind, name in targets]
    changes = [
        {
            "action": "update",
            "resource": {
                "apiVersion": "apx/v1",
                "kind": kind,
                "metadata": {"name": name, "tenant": tenant},
                "spec": {"replicas": rng.randint(2, 12)}
                if kind == "WorkerPool"
                else {"canary": {"weight": 10}},
            },
        }
        for kind, name in targets
    ]
    document = {
        "apiVersion": "apx/v1",
        "kind": "Intent",
        "metadata": {"tenant": tenant, **({"causedBy": caused_by} if caused_by else {})},
        "spec": {"environment": environment, "rationale": "p95 over SLO for 5m", "changes": changes},
    }
    decided = at + timedelta(milliseconds=rng.randint(40, 4000))
    reasons = reasons_for(rng, status, agent=agent, tenant=tenant, environment=environment, keys=keys)
    commit = f"{rng.getrandbits(160):040x}" if status in LANDS else None
    pr = None
    if environment == "prod" and status in PR_LIFE:
        pr = {"id": f"pr-{seq}", "branch": f"apx/{intent_id}", "base": "prod", "head": commit or "0" * 40}
        pr["status"] = "merged" if status is Status.MERGED else "open"
    decision = None
    if status is not Status.QUEUED:
        decision = {
            "intent_id": intent_id,
            "trace_id": trace_id,
            "status": status.value,
            "tenant": tenant,
            "environment": environment,
            "agent": agent,
            "reasons": reasons,
            "checks": [
                {"name": "schema", "passed": status is not Status.REJECTED, "messages": []},
                {"name": "policy", "passed": status is not Status.REJECTED, "messages": reasons[:1]},
            ],
            "blast_radius": {
                "routes_touched": sum(k.startswith("Route/") for k in keys),
                "tenants": [tenant],
            },
            "policy_version": "apx-default@1.0.0+f3b5da6b3a03",
            "commit": commit,
            "pr": pr,
            "decided_at": decided.isoformat(),
        }
    row = {
        "seq": seq,
        "id": intent_id,
        "trace_id": trace_id,
        "tenant": tenant,
        "environment": environment,
        "agent": agent,
        "caused_by": caused_by,
        "dedupe_key": f"{rng.getrandbits(256):064x}",
        "base_revision": f"{rng.getrandbits(160):040x}",
        "received_at": at,
        "status": status.value,
        "decided_at": None if decision is None else decided,
        "document": document,
        "decision": decision,
        "commit": commit,
        "pr_id": None if pr is None else pr["id"],
    }
    target_rows = [
        {"intent_id": intent_id, "intent_seq": seq, "position": i, "target": k} for i, k in enumerate(keys)
    ]
    event_rows = [
        {"intent_id": intent_id, "status": s.value, "at": t, "reasons": r}
        for s, t, r in timeline(status, at=at, decided=decided, reasons=reasons, prod=environment == "prod")
    ]
    return row, target_rows, event_rows


LANDS = frozenset({Status.APPLIED, Status.MERGED, Status.ROLLED_BACK, Status.PR_OPEN, Status.APPROVED})
PR_LIFE = frozenset({Status.PR_OPEN, Status.APPROVED, Status.MERGED, Status.PR_REJECTED, Status.ROLLED_BACK})
HELD = frozenset({Status.DUPLICATE, Status.RATE_LIMITED, Status.CIRCUIT_OPEN})


def reasons_for(
    rng: random.Random, status: Status, *, agent: str, tenant: str, environment: str, keys: list[str]
) -> list[str]:
    name = keys[0].split("/", 1)[1]
    if status is Status.DUPLICATE:
        return [f"duplicate of an intent received within 5m ({keys[0]})"]
    if status is Status.RATE_LIMITED:
        return [f"rate limited: 1 deploy per 5m for {agent} in {environment}"]
    if status is Status.CIRCUIT_OPEN:
        return [f"circuit open for {tenant}/{environment}: 3 agent deploys in 15m; a human must reset it"]
    if status in (Status.REJECTED, Status.PR_REJECTED):
        template = rng.choice(REJECTIONS)
        return [
            template.format(n=rng.randint(101, 400), x=rng.choice((2.5, 3, 4)), name=name, target=keys[0])
        ]
    if status is Status.FAILED:
        return ["internal error: git commit-tree failed (signing?)"]
    out = [f"applied to {environment}" if environment != "prod" else "PR opened for review"]
    if rng.random() < 0.02:
        out.append(
            f"oscillation: {agent} sets {keys[0]} spec.replicas back to 4, undoing another agent's change"
        )
    return out


def timeline(
    status: Status, *, at: datetime, decided: datetime, reasons: list[str], prod: bool
) -> Iterator[tuple[Status, datetime, list[str]]]:
    yield Status.RECEIVED, at, []
    if status in HELD:
        yield status, at, reasons
        return
    yield Status.QUEUED, at, []
    if status is Status.QUEUED:
        return
    if prod and status in PR_LIFE:
        yield Status.PR_OPEN, decided, reasons
        if status is Status.PR_OPEN:
            return
        later = decided + timedelta(hours=1)
        if status is Status.PR_REJECTED:
            yield Status.PR_REJECTED, later, ["rejected by carol: not during the freeze"]
            return
        yield Status.APPROVED, later, ["approved by alice"]
        if status is Status.APPROVED:
            return
        yield Status.MERGED, later + timedelta(seconds=2), []
    elif status is Status.ROLLED_BACK:
        yield Status.APPLIED, decided, reasons
    else:
        yield status, decided, reasons
        return
    if status is Status.ROLLED_BACK:
        yield Status.ROLLED_BACK, decided + timedelta(hours=3), ["rolled back by bob: error rate up"]


# -- seeding -----------------------------------------------------------------------------


def seed(engine: Engine, rows: int) -> float:
    """Bulk-insert ``rows`` intents; return the seconds it took."""
    u = Universe.make()
    tables = SQLModel.metadata.tables
    intents, targets, events = tables["intents"], tables["intent_targets"], tables["intent_events"]
    # Two years of arrivals, ~1 min apart with jitter, strictly increasing.
    step = timedelta(days=730) / max(rows, 1)
    started = time.perf_counter()
    at = START
    seq = 0
    while seq < rows:
        batch: tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]] = ([], [], [])
        for _ in range(min(BATCH, rows - seq)):
            seq += 1
            at += step * u.rng.uniform(0.2, 1.8)
            row, target_rows, event_rows = intent_rows(u, seq, at)
            batch[0].append(row)
            batch[1].extend(target_rows)
            batch[2].extend(event_rows)
        with engine.begin() as conn:
            conn.execute(intents.insert(), batch[0])
            conn.execute(targets.insert(), batch[1])
            conn.execute(events.insert(), batch[2])
        if seq % 100_000 == 0 or seq == rows:
            elapsed = time.perf_counter() - started
            print(f"  seeded {seq:,} intents in {elapsed:.0f} s", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started
    if engine.dialect.name == "postgresql":
        # The sequence behind seq was bypassed by the explicit values.
        with engine.begin() as conn:
            conn.execute(
                text("SELECT setval(pg_get_serial_sequence('intents', 'seq'), max(seq)) FROM intents")
            )
    # Decisions written as dicts must still be Decisions: check a sample. (As in the
    # store, a missing decision is JSON null, which is not SQL NULL.)
    with engine.connect() as conn:
        for (decision,) in conn.execute(text("SELECT decision FROM intents WHERE seq % 997 = 0 LIMIT 50")):
            document = json.loads(decision) if isinstance(decision, str) else decision
            if document is not None:
                Decision.model_validate(document)
    return elapsed


# -- the databases --------------------------------------------------------------------------


@dataclass
class Database:
    name: str
    url: str  # what the store opens
    engine: Engine  # for seeding, sampling and the baseline
    raw: Callable[[], Any]  # a DB-API connection for the baseline


def sqlite_database(path: Path, rows: int, *, fresh: bool) -> tuple[Database, float | None]:
    if fresh and path.exists():
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    SqlIntentStore.open(url).close()  # migrate (also brings a reused database up to date)
    engine = create_engine(url, poolclass=pool.NullPool)
    seconds = None
    if count(engine) != rows:
        if count(engine):
            raise SystemExit(f"{path} holds another log; pass --fresh or another --sqlite-path")
        seconds = seed(engine, rows)

    def raw() -> Any:
        return sqlite3.connect(path)

    return Database("sqlite", url, engine, raw), seconds


def pg_database(base: str, schema: str, rows: int, *, fresh: bool) -> tuple[Database, float | None]:
    admin = create_engine(base, poolclass=pool.NullPool)
    with admin.begin() as conn:
        if fresh:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    admin.dispose()
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    rendered = url.render_as_string(hide_password=False)
    SqlIntentStore.open(rendered).close()
    engine = create_engine(rendered, poolclass=pool.NullPool)
    seconds = None
    if count(engine) != rows:
        if count(engine):
            raise SystemExit(f"schema {schema} holds another log; pass --fresh or another --pg-schema")
        seconds = seed(engine, rows)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            # What autovacuum does shortly after a bulk load; done now so the plans are the steady ones.
            conn.execute(text("VACUUM ANALYZE"))

    def raw() -> Any:
        import psycopg

        conn = psycopg.connect(
            host=url.host or "127.0.0.1",
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            dbname=url.database,
            options=f"-csearch_path={schema}",
            autocommit=True,
        )
        return conn

    return Database("postgresql", rendered, engine, raw), seconds


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM intents")).scalar() or 0)


# -- queries ----------------------------------------------------------------------------------


@dataclass
class Samples:
    agents: list[str]
    statuses: list[Status]
    environments: list[str]
    tenants: list[str]
    targets: list[str]
    traces: list[str]
    parents: list[str]
    newest: datetime
    oldest: datetime


def samples(engine: Engine, rng: random.Random) -> Samples:
    with engine.connect() as conn:
        top = int(conn.execute(text("SELECT max(seq) FROM intents")).scalar() or 0)
        seqs = sorted({rng.randint(1, top) for _ in range(400)})
        picked = ", ".join(str(s) for s in seqs)
        traces = [r[0] for r in conn.execute(text(f"SELECT trace_id FROM intents WHERE seq IN ({picked})"))]
        parents = [
            r[0]
            for r in conn.execute(
                text(
                    "SELECT caused_by FROM intents WHERE caused_by IS NOT NULL AND seq IN "
                    f"({', '.join(str(s) for s in sorted({rng.randint(1, top) for _ in range(2000)}))})"
                )
            )
        ]
        targets = [r[0] for r in conn.execute(text("SELECT DISTINCT target FROM intent_targets"))]
        tenants = [r[0] for r in conn.execute(text("SELECT DISTINCT tenant FROM intents"))]
        newest, oldest = conn.execute(text("SELECT max(received_at), min(received_at) FROM intents")).one()
    as_dt = [v if isinstance(v, datetime) else datetime.fromisoformat(v) for v in (newest, oldest)]
    return Samples(
        agents=sorted(AGENTS),
        statuses=[s for s in Status if s is not Status.RECEIVED],
        environments=sorted(ENVIRONMENTS),
        tenants=sorted(tenants),
        targets=sorted(targets),
        traces=traces,
        parents=parents,
        newest=as_dt[0].replace(tzinfo=UTC),
        oldest=as_dt[1].replace(tzinfo=UTC),
    )


def workloads(s: Samples, store: SqlIntentStore) -> dict[str, Callable[[random.Random], IntentQuery]]:
    """Filter name → a maker of one random query of that shape."""
    limit = SHOWN + 1
    span = (s.newest - s.oldest).total_seconds()
    page_one_last = store.query(IntentQuery(limit=SHOWN))[-1].seq
    page_one_by_agent = {a: store.query(IntentQuery(agent=a, limit=SHOWN))[-1].seq for a in s.agents}

    def window(r: random.Random) -> IntentQuery:
        since = s.oldest + timedelta(seconds=r.uniform(0, span - 86400))
        return IntentQuery(since=since, until=since + timedelta(hours=r.choice((1, 6, 24))), limit=limit)

    return {
        "none (newest 100)": lambda r: IntentQuery(limit=limit),
        "agent": lambda r: IntentQuery(agent=r.choice(s.agents), limit=limit),
        "status": lambda r: IntentQuery(status=r.choice(s.statuses), limit=limit),
        "env + status": lambda r: IntentQuery(
            environment=r.choice(s.environments), status=r.choice(s.statuses), limit=limit
        ),
        "tenant": lambda r: IntentQuery(tenant=r.choice(s.tenants), limit=limit),
        "(info) tenant + agent + env": lambda r: IntentQuery(
            tenant=r.choice(s.tenants),
            agent=r.choice(s.agents),
            environment=r.choice(s.environments),
            limit=limit,
        ),
        "target": lambda r: IntentQuery(target=r.choice(s.targets), limit=limit),
        "target + env": lambda r: IntentQuery(
            target=r.choice(s.targets), environment=r.choice(s.environments), limit=limit
        ),
        "trace": lambda r: IntentQuery(trace_id=r.choice(s.traces), limit=limit),
        "since (1h-30d ago)": lambda r: IntentQuery(
            since=s.newest - timedelta(seconds=r.uniform(3600, 30 * 86400)), limit=limit
        ),
        "since + until (a 1-24h window)": window,
        "caused_by": lambda r: IntentQuery(caused_by=r.choice(s.parents), limit=limit),
        "cursor page 2": lambda r: IntentQuery(before_seq=page_one_last, limit=limit),
        "agent + cursor page 2": lambda r: (
            lambda a: IntentQuery(agent=a, before_seq=page_one_by_agent[a], limit=limit)
        )(r.choice(s.agents)),
        # Not among the typical filters; measured to show what they cost.
        "(info) until (30d-1y ago)": lambda r: IntentQuery(
            until=s.newest - timedelta(days=r.uniform(30, 365)), limit=limit
        ),
        "(info) reason, common": lambda r: IntentQuery(
            reason=r.choice(("rate limited", "DUPLICATE")), limit=limit
        ),
        "(info) reason, rare": lambda r: IntentQuery(
            reason=r.choice(("opens ingress", "AWS access key", "rolled back by")), limit=limit
        ),
    }


def stats(seconds: list[float]) -> dict[str, float]:
    ms = sorted(x * 1000 for x in seconds)

    def rank(p: float) -> float:
        return ms[min(len(ms) - 1, max(0, int(len(ms) * p + 0.999999) - 1))]

    return {"n": len(ms), "p50_ms": statistics.median(ms), "p95_ms": rank(0.95), "max_ms": ms[-1]}


def bench(db: Database, n: int, warmup: int, only: str | None) -> dict[str, Any]:
    rng = random.Random(7)
    s = samples(db.engine, rng)
    results: dict[str, Any] = {}
    raw = db.raw()
    try:
        cursor = raw.cursor()

        def baseline() -> None:
            cursor.execute("SELECT * FROM intents ORDER BY seq DESC LIMIT 100")
            if len(cursor.fetchall()) != SHOWN:
                raise SystemExit("baseline: fewer than 100 intents")

        for _ in range(warmup):
            baseline()
        results["baseline"] = stats([timed(baseline) for _ in range(n)])
    finally:
        raw.close()
    with SqlIntentStore.open(db.url, migrate=False) as store:
        for name, make in workloads(s, store).items():
            if only and only not in name:
                continue
            queries = [make(rng) for _ in range(n + warmup)]
            found: list[int] = []
            for q in queries[:warmup]:
                store.query(q)
            times = []
            for q in queries[warmup:]:
                started = time.perf_counter()
                views = store.query(q)
                times.append(time.perf_counter() - started)
                found.append(len(views))
            # The database's share: the same queries' first step alone (which intents,
            # as sequence numbers), without reading the rows and building the views.
            pages = [timed(functools.partial(page_only, store, q)) for q in queries[warmup:]]
            results[name] = {
                **stats(times),
                "rows_mean": statistics.fmean(found),
                "page_only": stats(pages),
            }
            print(
                f"  {db.name:<10} {name:<32} p50 {results[name]['p50_ms']:7.2f} ms  "
                f"p95 {results[name]['p95_ms']:7.2f} ms",
                file=sys.stderr,
                flush=True,
            )
    return results


def page_only(store: SqlIntentStore, query: IntentQuery) -> None:
    """What ``store.query`` runs first: the page's sequence numbers (private, on purpose)."""
    with store._transaction("bench a page") as conn:
        conn.execute(sql_store._page(conn, query)).all()


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# -- report ---------------------------------------------------------------------------------


def table(name: str, results: dict[str, Any]) -> str:
    base = results["baseline"]
    rows = [
        ("filter", "p50 ms", "p95 ms", "max ms", "rows", "ratio p50", "p95 < 50 ms", "page p50", "page p95")
    ]
    for key, r in results.items():
        if key == "baseline":
            continue
        rows.append(
            (
                key,
                f"{r['p50_ms']:.2f}",
                f"{r['p95_ms']:.2f}",
                f"{r['max_ms']:.1f}",
                f"{r['rows_mean']:.0f}",
                f"{r['p50_ms'] / base['p50_ms']:.1f}x",
                "yes" if r["p95_ms"] < TARGET_P95_MS else "NO",
                f"{r['page_only']['p50_ms']:.2f}",
                f"{r['page_only']['p95_ms']:.2f}",
            )
        )
    rows.append(
        (
            "baseline: bare newest 100",
            f"{base['p50_ms']:.2f}",
            f"{base['p95_ms']:.2f}",
            f"{base['max_ms']:.1f}",
            "100",
            "1.0x",
            "",
            "",
            "",
        )
    )
    return f"{name}\n" + render_table(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="intents in the log (default 1,000,000)")
    parser.add_argument("--n", type=int, default=100, help="timed queries per filter (default 100)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed queries first (default 5)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("APX_BENCH_DATABASE_URL"),
        help="a PostgreSQL URL to bench as well (default $APX_BENCH_DATABASE_URL)",
    )
    parser.add_argument("--pg-schema", default="apx_bench", help="schema to work in on PostgreSQL")
    parser.add_argument(
        "--sqlite-path", type=Path, help="SQLite file (default bench/results/intent-queries-ROWS.db)"
    )
    parser.add_argument("--skip-sqlite", action="store_true", help="bench PostgreSQL only")
    parser.add_argument("--fresh", action="store_true", help="re-seed even if a log of this size is there")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--only", help="run only the filters whose name contains this")
    args = parser.parse_args(argv)
    if args.rows < SHOWN * 2 or args.n < 1:
        parser.error(f"--rows must be at least {SHOWN * 2} and --n at least 1")

    results: dict[str, Any] = {
        "rows": args.rows,
        "n": args.n,
        "environment": {
            "date": datetime.now(UTC).date().isoformat(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
        },
    }
    databases: list[tuple[Database, float | None]] = []
    if not args.skip_sqlite:
        RESULTS.mkdir(exist_ok=True)
        path = args.sqlite_path or RESULTS / f"intent-queries-{args.rows}.db"
        print(f"SQLite: {path}", file=sys.stderr)
        databases.append(sqlite_database(path, args.rows, fresh=args.fresh))
    if args.database_url:
        print(f"PostgreSQL: {make_url(args.database_url).render_as_string()}", file=sys.stderr)
        databases.append(pg_database(args.database_url, args.pg_schema, args.rows, fresh=args.fresh))
    for db, seeded in databases:
        load_before = os.getloadavg()[0]
        filters = bench(db, args.n, args.warmup, args.only)
        # Other work on the machine moves these figures: say how busy it was.
        load = (load_before, os.getloadavg()[0])
        results[db.name] = {"seed_seconds": seeded, "load_average": load, "filters": filters}
        db.engine.dispose()

    env = results["environment"]
    print(
        f"\nAPX intent-log queries over {args.rows:,} intents; {args.n} queries per filter, "
        f"limit {SHOWN} (+1); {env['cpus']} CPUs, Python {env['python']}, SQLite {env['sqlite']}"
    )
    for db, seeded in databases:
        took = f"seeded in {seeded:.0f} s ({args.rows / seeded:,.0f} intents/s)" if seeded else "reused"
        before, after = results[db.name]["load_average"]
        title = f"{db.name} ({took}; load average {before:.1f} before, {after:.1f} after)"
        print(f"\n{table(title, results[db.name]['filters'])}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
