"""How fast APX evaluates its policy and validates an intent, next to bare regopy.

Runs on the embedded default, like ``bench/decisions.py``: a fresh home made by
``orchestrator.home.init_home`` in a temporary directory, wired by
``orchestrator.bootstrap.build`` with a :class:`~orchestrator.testing.FrozenClock`
(the rate limit and breaker raised in the Settings passed to ``build``, so no
intent is held). Three intents are submitted with ``wait=False`` (recorded as
``queued``, not decided), each from its own agent so they do not count toward
each other's cumulative route limit:

* **60 routes**: ``canary.weight`` flipped (0 → 10) on every seeded Route. The
  shipped bundle allows at most 50 routes per intent (and per agent per hour),
  so the policy denies it: realistic, and the case the issue names.
* **50 routes**: the same flip on 50 Routes, which the policy allows.
* **one change**: ``WorkerPool/checkout`` replicas 4 → 6.

(a) **Policy evaluation per intent.** ``RegoPyEngine.evaluate(input)`` on the
    shipped bundle (``constraints.bundle.load_bundle()``), its compiled bundle
    cached in a temporary directory: the engine is built twice and the second
    one, which loaded the compiled bundle from that cache as a restarted server
    does, is timed. The inputs are the ones the pipeline itself builds for the
    one-change and the 60-route intent (captured from a replay of each).
    *Baseline*: a bare ``regopy.Interpreter`` set up as the engine sets up its
    own (``strict_built_in_errors``, log level NONE; the same modules, the same
    ``data.json`` as loaded, ``build`` with the same query and entry points),
    fed the very JSON text the engine sends (``policy_document`` with the
    bundle's ``input_keys`` and waiver scope, ``json.dumps`` done once, outside
    the timing), per op ``set_input_term`` + ``query_bundle`` + ``ok()``.
    regopy's ``Output`` already parses its JSON into Python, so the baseline is
    a complete evaluation that yields the decision document; what it leaves out
    is exactly what the engine adds: checking the input, trimming it to the keys
    the rules read, serialising it, the lock and budget, and reading the
    decision into a :class:`~validators.policy.PolicyResult`. Same process,
    same compiled program, same input bytes, alternating engine and bare call
    by call, so drift and load hit both alike. Both produce the same decision
    (checked before timing). Ratio = engine / bare at p50 and at p99.

(b) **Whole validation of an intent, git excluded.** ``app.orchestrator.replay(id)``
    on the recorded queued intent: it runs the decide path's langgraph graph,
    ``sequence`` → ``validate`` → ``route`` with ``dry_run`` (route only builds
    the Decision), and writes nothing. Included: the replay's read of the
    intent (``store.get``), ``Intent.model_validate`` of the stored document,
    the parsed environment (cached by commit: after the first replay every
    replay hits that cache, as every intent after an APX commit does), the
    plan/merge (with each changed file's YAML rendered and diffed), the
    schema, reference and secret-scan validators, blast radius, the cumulative
    query (``store.recent`` of admitted intents + ``routes_in_window``), the
    oscillation query (``store.recent`` of landed intents + ``detect`` per
    change), the policy, ``combine`` and building the Decision. Not included:
    the signed git commit (or PR branch) and the intent-log writes
    (``store.decide``, events) a real decision ends with, nor admission (see
    ``bench/decisions.py``). The same work is also timed by calling the two
    graph nodes directly (``_sequence`` then ``_validate``, no langgraph, no
    ``store.get``): a lower bound, split into sequence and validate.
    A parse of the whole environment (64 YAML files) is paid only on a cache
    miss — a commit APX did not make, or the first intent after a restart —
    and is timed apart ("cold parse").

    *Where the time goes*: a separate, shorter pass wraps (on the instances and
    modules, in this process only) the store's reads, the validators, the
    policy engine and the pipeline's helpers, and reports mean ms per
    replay. The wrappers cost microseconds against milliseconds.

With ``--database-url`` (or ``APX_BENCH_DATABASE_URL``), (b) runs a second time with
the intent log on that PostgreSQL server, the home's ``database.url`` pointed at a
fresh schema (``CREATE SCHEMA apx_bench_<hex>``, dropped at the end): the store's
reads then cross a socket. (a) does not touch the database and runs once; its bare
regopy figures are (b)'s baseline on both databases.

Per-op times are wall-clock ``time.perf_counter`` around one call, after a
warm-up. p99 is the nearest-rank 99th percentile (with N=100 it is the
second-largest sample). No thresholds: this measures, it does not judge; the
issue's targets are printed next to the figures.

    /work/venv/bin/python bench/policy.py [--n N] [--n-eval M] [--database-url URL] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import regopy
import yaml
from common import (
    Breakdown,
    check_postgres_url,
    close,
    database_url_default,
    machine,
    on_database,
    postgres_schema,
    raised_limits,
    render_table,
    server_version,
    timed,
)

from constraints.bundle import load_bundle
from orchestrator import changeset as changeset_module
from orchestrator import pipeline
from orchestrator.bootstrap import App, build
from orchestrator.changeset import parse_environment
from orchestrator.decision import ADMITTED, Status
from orchestrator.home import init_home
from orchestrator.intent import Intent
from orchestrator.seed import seed_files
from orchestrator.settings import load_settings
from orchestrator.testing import FrozenClock
from validators import blast_radius as blast_module
from validators import rego as rego_module
from validators.policy import Bundle, PolicyResult, check_input, policy_document
from validators.rego import RegoPyEngine

POOL = "WorkerPool/checkout.yaml"
START = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SEED = {path: yaml.safe_load(text) for path, text in seed_files().items()}
ROUTES = sorted(path for path in SEED if path.startswith("Route/"))
#: The pipeline module, whose imported helpers the breakdown wraps (typed loosely on purpose).
pipeline_module: Any = pipeline
#: Issue 3's targets, printed beside the figures.
TARGET_RATIO = 1.5
TARGET_P99_MS = 25.0


# -- intents ----------------------------------------------------------------------


def intent_of(documents: list[dict[str, Any]], rationale: str) -> Intent:
    return Intent.model_validate(
        {
            "apiVersion": "apx/v1",
            "kind": "Intent",
            "metadata": {"tenant": "acme"},
            "spec": {
                "environment": "dev",
                "rationale": rationale,
                "changes": [{"action": "update", "resource": d} for d in documents],
            },
        }
    )


def canary_flip(count: int) -> Intent:
    """``canary.weight`` flipped on the first ``count`` seeded Routes."""
    documents = []
    for path in ROUTES[:count]:
        document = copy.deepcopy(SEED[path])
        canary = document["spec"].setdefault("canary", {})
        canary["weight"] = 10 if canary.get("weight", 0) == 0 else 0
        documents.append(document)
    return intent_of(documents, f"shift {count} routes to the canary for the 5% rollout")


def replicas_change() -> Intent:
    document = copy.deepcopy(SEED[POOL])
    document["spec"]["replicas"] = 6
    return intent_of([document], "p95 over SLO for 5m on checkout")


#: name → (intent, agent, the status its replay must end in)
SCENARIOS: dict[str, tuple[Callable[[], Intent], str, Status]] = {
    "60 routes": (lambda: canary_flip(len(ROUTES)), "canary-wide", Status.REJECTED),
    "50 routes": (lambda: canary_flip(50), "canary-half", Status.APPLIED),
    "one change": (replicas_change, "scaler", Status.APPLIED),
}


# -- measuring --------------------------------------------------------------------


def stats(samples: list[float]) -> dict[str, float]:
    """Per-op seconds → a summary in milliseconds; p90/p99 by nearest rank."""
    ms = sorted(s * 1000 for s in samples)

    def rank(q: float) -> float:
        return ms[max(math.ceil(q * len(ms)) - 1, 0)]

    return {
        "n": len(ms),
        "p50_ms": statistics.median(ms),
        "p90_ms": rank(0.90),
        "p99_ms": rank(0.99),
        "mean_ms": statistics.fmean(ms),
        "min_ms": ms[0],
        "max_ms": ms[-1],
    }


@contextmanager
def patched(obj: Any, attr: str, replacement: Any) -> Iterator[None]:
    """Set ``obj.attr`` for the block; restore it (or remove the instance attribute) after."""
    had_own = attr in vars(obj)
    original = vars(obj)[attr] if had_own else None
    setattr(obj, attr, replacement)
    try:
        yield
    finally:
        if had_own:
            setattr(obj, attr, original)
        else:
            delattr(obj, attr)


@contextmanager
def instrumented(app: App, breakdown: Breakdown) -> Iterator[None]:
    """Time the store's reads, the validators, the policy and the pipeline's helpers.

    Only this process's objects are touched (instance attributes and module
    globals, restored afterwards); nothing is changed on disk.
    """
    orchestrator = app.orchestrator
    store, engine = app.store, app.policy

    def recent_label(*args: Any, statuses: Any = None, **kwargs: Any) -> str:
        if statuses == ADMITTED:
            return "store.recent (cumulative)"
        return "store.recent (oscillation)"

    state = {"in_replay_get": True}

    def get_label(*args: Any, **kwargs: Any) -> str:
        # The first get of a replay reads the intent itself; any later one is the oscillation check's.
        label = "store.get (the intent)" if state["in_replay_get"] else "store.get (oscillation)"
        state["in_replay_get"] = False
        return label

    replay = orchestrator.replay

    def replay_and_reset(intent_id: str) -> Any:
        state["in_replay_get"] = True
        return replay(intent_id)

    patches: list[tuple[Any, str, Any]] = [
        (orchestrator, "replay", replay_and_reset),
        (store, "get", breakdown.wrap(get_label, store.get)),
        (store, "recent", breakdown.wrap(recent_label, store.recent)),
        (Intent, "model_validate", breakdown.wrap("Intent.model_validate", Intent.model_validate)),
        (pipeline_module, "parse_environment", breakdown.wrap("parse_environment", parse_environment)),
        (pipeline_module, "plan", breakdown.wrap("plan (merge, render, diff)", pipeline_module.plan)),
        (changeset_module, "render", breakdown.wrap("render (yaml.safe_dump)", changeset_module.render)),
        (blast_module, "compute", breakdown.wrap("blast_radius.compute", blast_module.compute)),
        (
            pipeline_module,
            "routes_in_window",
            breakdown.wrap("routes_in_window", pipeline_module.routes_in_window),
        ),
        (pipeline_module, "detect", breakdown.wrap("oscillation detect()", pipeline_module.detect)),
        (engine, "evaluate", breakdown.wrap("policy.evaluate", engine.evaluate)),
        (pipeline_module, "combine", breakdown.wrap("combine", pipeline_module.combine)),
        (
            pipeline_module,
            "environment_deprecations",
            breakdown.wrap("environment_deprecations", pipeline_module.environment_deprecations),
        ),
        (orchestrator, "_decision", breakdown.wrap("Decision model", orchestrator._decision)),
    ]
    if isinstance(engine, RegoPyEngine):
        patches.append(
            (engine, "_query", breakdown.wrap("regopy set_input_term+query_bundle", engine._query))
        )
    for validator in orchestrator._validators:
        patches.append((validator, "check", breakdown.wrap(f"validator: {validator.name}", validator.check)))
    with _all(patches):
        yield


@contextmanager
def _all(patches: list[tuple[Any, str, Any]]) -> Iterator[None]:
    if not patches:
        yield
        return
    (obj, attr, replacement), rest = patches[0], patches[1:]
    with patched(obj, attr, replacement), _all(rest):
        yield


@contextmanager
def capturing_policy_input(app: App, sink: list[dict[str, Any]]) -> Iterator[None]:
    engine = app.policy

    def evaluate(input: Mapping[str, Any]) -> PolicyResult:
        sink.append(copy.deepcopy(dict(input)))
        return type(engine).evaluate(engine, input)

    with patched(engine, "evaluate", evaluate):
        yield


# -- setup --------------------------------------------------------------------------


def make_app(root: Path, url: str | None = None) -> tuple[App, dict[str, str]]:
    """A fresh home with the three scenario intents recorded as queued: (app, name → intent id).

    ``url``: the intent log's PostgreSQL database; None for the home's SQLite file."""
    home = root / "home"
    init_home(home)
    settings = raised_limits(on_database(load_settings(home), url))
    app = build(home, settings=settings, clock=FrozenClock(START))
    ids = {}
    for name, (make, agent, _) in SCENARIOS.items():
        decision = app.orchestrator.submit(make(), agent=agent, wait=False)
        if decision.status is not Status.QUEUED:
            raise SystemExit(f"setup: {name} was {decision.status.value}: {decision.reasons}")
        ids[name] = decision.intent_id
    return app, ids


# -- (a) policy evaluation --------------------------------------------------------


def bare_interpreter(bundle: Bundle) -> tuple[Any, Any]:
    """A regopy interpreter and compiled bundle, set up as ``RegoPyEngine`` sets up its own."""
    interpreter = regopy.Interpreter()
    interpreter.strict_built_in_errors = True
    interpreter.log_level = regopy.LogLevel.NONE
    for name, source in bundle.modules.items():
        interpreter.add_module(name, source)
    interpreter.add_data_json(json.dumps(bundle.data))
    entrypoints = list(rego_module._violation_entrypoints(bundle.modules))
    compiled = interpreter.build(rego_module._QUERY, entrypoints)
    if not compiled.ok():
        raise SystemExit("baseline: regopy could not build the shipped bundle")
    return interpreter, compiled


def comparable(result: PolicyResult) -> dict[str, Any]:
    return result.model_dump(exclude={"elapsed_ms"})


def bench_policy(
    root: Path, inputs: dict[str, dict[str, Any]], n: int, warmup: int, budget_ms: float
) -> dict[str, Any]:
    bundle = load_bundle()
    cache = root / "policy-cache"
    first = RegoPyEngine(bundle, cache_dir=cache, budget_ms=budget_ms)
    engine = RegoPyEngine(bundle, cache_dir=cache, budget_ms=budget_ms)
    if engine.load_stats.source != "cache":
        raise SystemExit(f"(a) the second engine did not load from the cache: {engine.load_stats}")
    interpreter, compiled = bare_interpreter(bundle)
    out: dict[str, Any] = {
        "bundle": engine.bundle.label,
        "input_keys": sorted(bundle.input_keys or []),
        "scope_sent": bundle.has_waivers,
        "load": {
            "built_ms": first.load_stats.ms,
            "cache_load_ms": engine.load_stats.ms,
        },
    }
    for name, policy_input in inputs.items():
        term = json.dumps(
            policy_document(policy_input, scope=bundle.has_waivers, keys=bundle.input_keys), allow_nan=False
        )

        def bare(term: str = term) -> Any:
            interpreter.set_input_term(term)
            output = interpreter.query_bundle(compiled)
            if not output.ok():
                raise SystemExit("(a) the bare evaluation failed")
            return output

        def ours(policy_input: dict[str, Any] = policy_input) -> PolicyResult:
            return engine.evaluate(policy_input)

        expected = engine.evaluate(policy_input)
        if expected.error:
            raise SystemExit(f"(a) {name}: the engine failed: {expected.error}")
        decision = bare().results[0].bindings["decision"]
        if comparable(PolicyResult.from_decision(decision, elapsed_ms=0)) != comparable(expected):
            raise SystemExit(f"(a) {name}: the bare evaluation decided differently from the engine")

        for _ in range(warmup):
            ours()
            bare()
        engine_samples: list[float] = []
        bare_samples: list[float] = []
        for i in range(n):
            pair = ((ours, engine_samples), (bare, bare_samples))
            for fn, sink in pair if i % 2 == 0 else reversed(pair):
                sink.append(timed(fn)[0])

        # What the engine adds, each piece timed on its own (informational).
        pieces: dict[str, Callable[[], Any]] = {
            "check_input": functools.partial(check_input, policy_input),
            "policy_document + json.dumps": functools.partial(
                lambda i: json.dumps(
                    policy_document(i, scope=bundle.has_waivers, keys=bundle.input_keys), allow_nan=False
                ),
                policy_input,
            ),
            "PolicyResult.from_decision": functools.partial(
                PolicyResult.from_decision, decision, elapsed_ms=0
            ),
        }
        overhead = {
            label: statistics.median(timed(fn)[0] for _ in range(max(n // 2, 20))) * 1e6
            for label, fn in pieces.items()
        }
        engine_stats, bare_stats = stats(engine_samples), stats(bare_samples)
        out[name] = {
            "input_json_bytes": len(json.dumps(policy_input)),
            "sent_json_bytes": len(term),
            "denials": [v.rule for v in expected.deny],
            "engine": engine_stats,
            "bare": bare_stats,
            "ratio_p50": engine_stats["p50_ms"] / bare_stats["p50_ms"],
            "ratio_p99": engine_stats["p99_ms"] / bare_stats["p99_ms"],
            "engine_overhead_us_p50": overhead,
        }
    return out


# -- (b) whole validation -----------------------------------------------------------


def bench_validation(app: App, ids: dict[str, str], n: int, warmup: int) -> dict[str, Any]:
    orchestrator = app.orchestrator
    results: dict[str, Any] = {}
    for name, intent_id in ids.items():
        expected = SCENARIOS[name][2]
        view = app.store.get(intent_id)
        if view is None:
            raise SystemExit(f"(b) {name}: intent {intent_id} is not in the log")
        head = view.record.base_revision

        def replay(intent_id: str = intent_id, expected: Status = expected, name: str = name) -> None:
            _, replayed = orchestrator.replay(intent_id)
            if replayed.status is not expected:
                raise SystemExit(f"(b) {name}: expected {expected.value}, got {replayed.status.value}")

        sequence_samples: list[float] = []
        validate_samples: list[float] = []

        def nodes(
            view: Any = view,
            head: str = head,
            name: str = name,
            expected: Status = expected,
            sequence_samples: list[float] = sequence_samples,
            validate_samples: list[float] = validate_samples,
        ) -> None:
            state: Any = {"view": view, "head": head, "dry_run": True}
            started = time.perf_counter()
            state.update(orchestrator._sequence(state))
            middle = time.perf_counter()
            validated = orchestrator._validate(state)
            ended = time.perf_counter()
            sequence_samples.append(middle - started)
            validate_samples.append(ended - middle)
            rejected = "decision" in validated
            if rejected != (expected is Status.REJECTED):
                raise SystemExit(f"(b) {name}: the nodes decided otherwise than expected ({expected.value})")

        for _ in range(warmup):
            replay()
            nodes()
        sequence_samples.clear()
        validate_samples.clear()
        replay_samples: list[float] = []
        node_samples: list[float] = []
        for i in range(n):
            pair = ((replay, replay_samples), (nodes, node_samples))
            for fn, sink in pair if i % 2 == 0 else reversed(pair):
                sink.append(timed(fn)[0])

        breakdown = Breakdown()
        passes = max(n // 4, 10)
        with instrumented(app, breakdown):
            replay()
            breakdown.reset()
            instrumented_samples = [timed(replay)[0] for _ in range(passes)]
        results[name] = {
            "status": expected.value,
            "changes": len(view.record.targets),
            "replay": stats(replay_samples),
            "nodes": stats(node_samples),
            "sequence": stats(sequence_samples),
            "validate": stats(validate_samples),
            "instrumented_replay": stats(instrumented_samples),
            **breakdown.per_op(passes),
        }

    # What a cache miss adds: parsing the whole environment once.
    head = app.store.get(ids["60 routes"]).record.base_revision  # type: ignore[union-attr]
    files = app.repo.read(head).files
    parse_environment(files)
    parses = [timed(lambda: parse_environment(files))[0] for _ in range(max(n // 5, 10))]
    results["cold_parse"] = {"files": len(files), **stats(parses)}
    return results


# -- report ---------------------------------------------------------------------------


def policy_table(result: dict[str, Any]) -> str:
    rows: list[tuple[str, ...]] = [
        ("(a) policy evaluation", "sent", "engine p50", "p99", "bare p50", "p99", "ratio p50", "p99")
    ]
    for name in ("one change", "60 routes"):
        r = result[name]
        rows.append(
            (
                name,
                f"{r['sent_json_bytes']} B",
                f"{r['engine']['p50_ms']:.3f}",
                f"{r['engine']['p99_ms']:.3f}",
                f"{r['bare']['p50_ms']:.3f}",
                f"{r['bare']['p99_ms']:.3f}",
                f"{r['ratio_p50']:.2f}x",
                f"{r['ratio_p99']:.2f}x",
            )
        )
    return render_table(rows)


def validation_table(result: dict[str, Any]) -> str:
    header = ("(b) validation, git excluded", "status", "replay p50", "p90", "p99", "nodes p50", "p99")
    rows: list[tuple[str, ...]] = [(*header, "seq p50", "val p50")]
    for name in SCENARIOS:
        r = result[name]
        rows.append(
            (
                f"{name} ({r['changes']} changes)",
                r["status"] + (" (dry run)" if r["status"] != "rejected" else ""),
                f"{r['replay']['p50_ms']:.1f}",
                f"{r['replay']['p90_ms']:.1f}",
                f"{r['replay']['p99_ms']:.1f}",
                f"{r['nodes']['p50_ms']:.1f}",
                f"{r['nodes']['p99_ms']:.1f}",
                f"{r['sequence']['p50_ms']:.1f}",
                f"{r['validate']['p50_ms']:.1f}",
            )
        )
    return render_table(rows, left=(0, 1))


#: Labels printed under another (nested calls), and what they are inside.
NESTED = {
    "plan (merge, render, diff)": ("render (yaml.safe_dump)",),
    "policy.evaluate": ("regopy set_input_term+query_bundle",),
}


def where_time_goes(result: dict[str, Any], title: str) -> str:
    per_op, calls, top = result["breakdown_ms_per_op"], result["calls_per_op"], result["outer_ms_per_op"]
    total = result["instrumented_replay"]["mean_ms"]
    lines = [f"{title} (mean {total:.2f} ms per replay, instrumented):"]
    for name, ms in sorted(top.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {name:<36} {ms:7.2f}  {ms / total:5.1%}  ({calls[name]:g} calls)")
        for part in NESTED.get(name, ()):
            if part in per_op:
                lines.append(f"    {part:<34} {per_op[part]:7.2f}  ({calls[part]:g} calls)")
    rest = total - sum(top.values())
    lines.append(
        f"  {'rest':<36} {rest:7.2f}  {rest / total:5.1%}  "
        "(langgraph, Check/Verdict models, policy input, route dry run)"
    )
    return "\n".join(lines)


def environment() -> dict[str, str]:
    return {
        **machine(),
        "regopy": str(regopy.__version__),
        "pyyaml_libyaml": str(getattr(yaml, "__with_libyaml__", False)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="timed validations per scenario (default 100)")
    parser.add_argument(
        "--n-eval", type=int, default=500, help="timed policy evaluations per input and side (default 500)"
    )
    parser.add_argument("--warmup", type=int, default=5, help="untimed operations first (default 5)")
    parser.add_argument(
        "--database-url",
        default=database_url_default(),
        help="also validate with the intent log on this PostgreSQL server, in a fresh schema "
        "(default $APX_BENCH_DATABASE_URL)",
    )
    parser.add_argument("--no-sqlite", action="store_true", help="validate on PostgreSQL only")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.n < 1 or args.n_eval < 1 or args.warmup < 0:
        parser.error("--n and --n-eval must be at least 1, --warmup at least 0")
    if problem := check_postgres_url(args.database_url):
        parser.error(problem)
    if args.no_sqlite and not args.database_url:
        parser.error("--no-sqlite needs --database-url (or APX_BENCH_DATABASE_URL)")

    started = time.perf_counter()
    results: dict[str, Any] = {
        "n": args.n,
        "n_eval": args.n_eval,
        "warmup": args.warmup,
        "environment": environment(),
    }
    databases: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="apx-bench-policy-") as tmp:
        root = Path(tmp)
        app, ids = make_app(root / "sqlite")
        try:
            captured: list[dict[str, Any]] = []
            inputs = {}
            with capturing_policy_input(app, captured):
                for name in ("one change", "60 routes"):
                    app.orchestrator.replay(ids[name])
                    inputs[name] = captured[-1]
            budget_ms = app.settings.policy.budget.total_seconds() * 1000
            results["policy"] = bench_policy(root, inputs, args.n_eval, max(args.warmup, 20), budget_ms)
            if not args.no_sqlite:
                databases["sqlite"] = {
                    "server": f"SQLite {sqlite3.sqlite_version}",
                    "validation": bench_validation(app, ids, args.n, args.warmup),
                }
        finally:
            close(app)
        if args.database_url:
            with postgres_schema(args.database_url) as url:
                app, ids = make_app(root / "postgresql", url)
                try:
                    databases["postgresql"] = {
                        "server": f"PostgreSQL {server_version(url)}",
                        "validation": bench_validation(app, ids, args.n, args.warmup),
                    }
                finally:
                    close(app)
    results["databases"] = databases
    results["seconds"] = time.perf_counter() - started

    env, policy = results["environment"], results["policy"]
    print(
        f"APX policy and validation; {env['cpus']} CPUs ({env['machine']}), Python {env['python']}, "
        f"regopy {env['regopy']}, load average {env['loadavg_1m_at_start']} at start; {policy['bundle']}"
    )
    print()
    print(f"(a) N={args.n_eval} per side, engine and bare alternating; target: engine within {TARGET_RATIO}x")
    print(policy_table(policy))
    print(
        f"  compiled bundle: built in {policy['load']['built_ms']:.0f} ms (incl. the child-process check), "
        f"loaded from the cache in {policy['load']['cache_load_ms']:.1f} ms; input keys sent: "
        f"{', '.join(policy['input_keys'])}"
    )
    for name in ("one change", "60 routes"):
        overhead = ", ".join(f"{k} {v:.0f} µs" for k, v in policy[name]["engine_overhead_us_p50"].items())
        print(f"  engine's own work, {name} (p50, timed apart): {overhead}")
    for database in databases.values():
        validation = database["validation"]
        print()
        print(
            f"(b) intent log on {database['server']}: N={args.n} per scenario, replay and direct node "
            f"calls alternating; target: p99 < {TARGET_P99_MS:g} ms"
        )
        print(validation_table(validation))
        cold = validation["cold_parse"]
        print(
            f"  cold parse of the environment ({cold['files']} files), paid on a cache miss only: "
            f"p50 {cold['p50_ms']:.1f} ms, p99 {cold['p99_ms']:.1f} ms"
        )
        for name in SCENARIOS:
            print()
            print(where_time_goes(validation[name], f"(b) where the time goes, {name}"))
    print()
    print(f"total {results['seconds']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
