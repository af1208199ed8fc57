"""A simulated runtime: what an environment's resources would serve, and how it would behave.

Pure and deterministic (no I/O, no clock, no randomness): :func:`reconcile`
turns the parsed resources of one commit into a :class:`Runtime` (the routing
table, the worker pools, the rate limits), and :func:`observe` computes the
metrics that runtime shows at a given instant. The same commit at the same
instant always gives the same samples, so tests can assert exact outcomes and a
canary decision can be replayed. :mod:`orchestrator.dataplane.runner` calls both.

The model is deliberately small, but its cause and effect are the real ones:

* **Load.** Each route has a steady offered load (1 rps for unauthenticated
  probes, otherwise 2 to 20 rps from a hash of its name), shaped by a daily sine
  (±20 %, peaking at 15:00 UTC) and ±5 % noise from a hash of (route, minute).
* **Rate limits.** A route's traffic comes from 3 to 10 consumers (a hash of its
  name), each limited to its plan's ``rateLimit.rps`` (the route's ``plan``, or the
  product's first plan). What a consumer sends above it is answered 429: counted
  as ``throttled_rate``, never as an error, and it never reaches a pool. Bursts
  are sub-second and a per-minute model cannot see them; daily quotas are
  accounting, not load, and are not modelled.
* **Pools.** A route runs on the WorkerPool named like its product, else on
  ``checkout``. Capacity is ``replicas * 500 rps`` (3 times that with ``accelerator: gpu``);
  utilisation is admitted load over capacity.
* **Latency.** Each route has a base p95 of 15 to 60 ms (+4 ms with ``auth: required``),
  multiplied by a queueing factor ``1 + u / (2 (1 - u))`` that grows steeply as
  utilisation ``u`` nears 1; at or over capacity requests wait for the 5 s timeout.
* **Errors** (5xx only). About 0.2 % at rest; above 85 % utilisation up to 10 %
  more; over capacity the excess is shed as 503s. With the seeded tenant at
  midday (~750 rps), ``WorkerPool/checkout`` runs at ~38 % with 4 replicas and
  ~0.2 % errors, at ~75 % with 2 and still ~0.2 %; with 1 it is over capacity at
  every hour of the day and 15 to 45 % of requests fail.

Only Products, Routes and WorkerPools shape traffic; NetworkPolicies and
PolicyBundles are accepted and not modelled. A resource that does not validate
(or a Route whose Product or plan is missing, or whose host and path another
Route already serves) is not run; :attr:`Runtime.skipped` says why, as a
GitOps controller reports a resource it could not sync.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from orchestrator.dataplane.metrics import POOL, ROUTE, Metric, Sample
from orchestrator.intent import API_VERSION
from orchestrator.records import utc
from orchestrator.resources import ProductSpec, RouteSpec, WorkerPoolSpec, field_problems, typed_spec

__all__ = [
    "DEFAULT_POOL",
    "Changes",
    "RunningPool",
    "Runtime",
    "ServedRoute",
    "changes",
    "observe",
    "reconcile",
]

#: The pool a route runs on when no pool is named like its product.
DEFAULT_POOL = "checkout"
#: Requests per second one worker serves at full utilisation (a CPU worker).
PER_REPLICA_RPS = 500.0
#: How many times more a GPU worker serves.
GPU_FACTOR = 3.0
#: 5xx fraction of a healthy route, on average (0.2 %).
BASELINE_ERROR = 0.002
#: Utilisation above which errors start to climb, and how far they climb by full capacity.
KNEE = 0.85
KNEE_ERROR = 0.10
#: What p95 becomes when a pool is at or over capacity: requests wait for the timeout.
TIMEOUT_MS = 5000.0
#: Added to the base latency of a route that authenticates its callers.
AUTH_MS = 4.0
#: Amplitude of the daily load curve, and the hour (UTC) of its peak.
DAILY_SWING = 0.2
PEAK_HOUR = 15
#: Per-minute load noise amplitude.
NOISE = 0.05

Document = Mapping[str, Any]


@dataclass(frozen=True)
class ServedRoute:
    """A route the runtime answers: ``host`` + ``path`` prefix → product, on a pool."""

    name: str
    host: str
    path: str
    product: str
    auth: str
    canary_weight: int
    #: The plan whose rate limit applies, and that limit (requests/s per consumer).
    plan: str
    rate_limit_rps: int
    #: The pool that serves it; None when the environment has no pool for it (all 503s).
    pool: str | None


@dataclass(frozen=True)
class RunningPool:
    name: str
    replicas: int
    accelerator: str
    spot: bool

    @property
    def capacity_rps(self) -> float:
        per_replica = PER_REPLICA_RPS * (GPU_FACTOR if self.accelerator == "gpu" else 1.0)
        return self.replicas * per_replica


@dataclass(frozen=True)
class Runtime:
    """What one commit of an environment runs."""

    commit: str
    routes: Mapping[str, ServedRoute] = field(default_factory=dict)
    pools: Mapping[str, RunningPool] = field(default_factory=dict)
    #: ``Kind/name: why`` for every resource that is not running.
    skipped: tuple[str, ...] = ()

    def serve(self, host: str, path: str) -> ServedRoute | None:
        """The route a request for ``host`` + ``path`` reaches: the longest matching path prefix."""
        best: ServedRoute | None = None
        for route in self.routes.values():
            prefix = route.path if route.path.endswith("/") else route.path + "/"
            matches = route.host == host and (path == route.path or path.startswith(prefix))
            if matches and (best is None or len(route.path) > len(best.path)):
                best = route
        return best


def reconcile(documents: Mapping[str, Document], *, commit: str) -> Runtime:
    """The runtime for ``documents`` (path → parsed resource, as ``parse_environment`` gives them)."""
    skipped: list[str] = []
    products: dict[str, ProductSpec] = {}
    pools: dict[str, RunningPool] = {}
    routes: dict[str, RouteSpec] = {}
    for path in sorted(documents):
        parsed = _typed(path, documents[path], skipped)
        if parsed is None:
            continue
        name, spec = parsed
        if isinstance(spec, ProductSpec):
            products[name] = spec
        elif isinstance(spec, WorkerPoolSpec):
            pools[name] = RunningPool(name, spec.replicas, spec.accelerator, spec.spot)
        elif isinstance(spec, RouteSpec):
            routes[name] = spec

    served: dict[str, ServedRoute] = {}
    taken: dict[tuple[str, str], str] = {}
    for name, route in sorted(routes.items()):
        product = products.get(route.product)
        if product is None:
            skipped.append(f"Route/{name}: product {route.product!r} does not exist")
            continue
        plan = product.plan(route.plan) if route.plan else product.plans[0]
        if plan is None:
            skipped.append(f"Route/{name}: product {route.product!r} has no plan {route.plan!r}")
            continue
        if (owner := taken.get((route.host, route.path))) is not None:
            skipped.append(f"Route/{name}: {route.host}{route.path} is already served by Route/{owner}")
            continue
        taken[(route.host, route.path)] = name
        pool = route.product if route.product in pools else DEFAULT_POOL if DEFAULT_POOL in pools else None
        served[name] = ServedRoute(
            name=name,
            host=route.host,
            path=route.path,
            product=route.product,
            auth=route.auth,
            canary_weight=route.canary.weight,
            plan=plan.name,
            rate_limit_rps=plan.rateLimit.rps,
            pool=pool,
        )
    return Runtime(commit=commit, routes=served, pools=pools, skipped=tuple(skipped))


def _typed(path: str, document: object, skipped: list[str]) -> tuple[str, object] | None:
    """``(name, typed spec)`` of a runnable resource; otherwise None, and why goes to ``skipped``."""
    if not isinstance(document, Mapping):
        skipped.append(f"{path}: not a resource (expected a mapping)")
        return None
    kind = document.get("kind")
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    label = f"{kind}/{name}" if isinstance(kind, str) and isinstance(name, str) else path
    if document.get("apiVersion") != API_VERSION:
        skipped.append(f"{label}: apiVersion is not {API_VERSION}")
        return None
    if not isinstance(kind, str) or not isinstance(name, str):
        skipped.append(f"{path}: kind and metadata.name are required")
        return None
    try:
        spec = typed_spec(kind, document.get("spec"))
    except KeyError:
        skipped.append(f"{label}: unknown kind")
        return None
    except ValidationError as exc:
        skipped.append(f"{label}: {field_problems(exc, prefix=('spec',))[0]}")
        return None
    return name, spec


# -- what changed between two commits ------------------------------------------------------


@dataclass(frozen=True)
class Changes:
    """What moved between two runtimes, for the ``dataplane.reconciled`` log line."""

    routes_added: tuple[str, ...] = ()
    routes_removed: tuple[str, ...] = ()
    #: Served differently (host, path, product, auth, canary weight, plan or limit, pool).
    routes_changed: tuple[str, ...] = ()
    pools_added: tuple[str, ...] = ()
    pools_removed: tuple[str, ...] = ()
    #: pool → (replicas before, replicas after).
    pools_scaled: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    #: Accelerator or spot changed.
    pools_changed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return any(
            (
                self.routes_added,
                self.routes_removed,
                self.routes_changed,
                self.pools_added,
                self.pools_removed,
                self.pools_scaled,
                self.pools_changed,
            )
        )

    def as_fields(self) -> dict[str, Any]:
        """The non-empty parts, as plain values for a log line."""
        out: dict[str, Any] = {
            "routes_added": list(self.routes_added),
            "routes_removed": list(self.routes_removed),
            "routes_changed": list(self.routes_changed),
            "pools_added": list(self.pools_added),
            "pools_removed": list(self.pools_removed),
            "pools_scaled": {name: f"{a}→{b}" for name, (a, b) in self.pools_scaled.items()},
            "pools_changed": list(self.pools_changed),
        }
        return {key: value for key, value in out.items() if value}


def changes(before: Runtime | None, after: Runtime) -> Changes:
    """What reconciling ``after`` changed; everything is "added" when nothing ran before."""
    old_routes = before.routes if before else {}
    old_pools = before.pools if before else {}
    return Changes(
        routes_added=tuple(sorted(after.routes.keys() - old_routes.keys())),
        routes_removed=tuple(sorted(old_routes.keys() - after.routes.keys())),
        routes_changed=tuple(
            sorted(n for n in after.routes.keys() & old_routes.keys() if after.routes[n] != old_routes[n])
        ),
        pools_added=tuple(sorted(after.pools.keys() - old_pools.keys())),
        pools_removed=tuple(sorted(old_pools.keys() - after.pools.keys())),
        pools_scaled={
            n: (old_pools[n].replicas, after.pools[n].replicas)
            for n in sorted(after.pools.keys() & old_pools.keys())
            if old_pools[n].replicas != after.pools[n].replicas
        },
        pools_changed=tuple(
            sorted(
                n
                for n in after.pools.keys() & old_pools.keys()
                if (old_pools[n].accelerator, old_pools[n].spot)
                != (after.pools[n].accelerator, after.pools[n].spot)
            )
        ),
    )


# -- metrics ----------------------------------------------------------------------------------


def observe(runtime: Runtime, *, environment: str, at: datetime) -> list[Sample]:
    """The samples ``runtime`` shows at ``at``: per route, then per pool (see :class:`Metric`)."""
    at = utc(at)
    minute = at.strftime("%Y-%m-%dT%H:%M")
    daily = 1 + DAILY_SWING * math.sin(2 * math.pi * (_hours(at) - PEAK_HOUR + 6) / 24)

    # Offered and admitted load per route.
    offered: dict[str, float] = {}
    throttled: dict[str, float] = {}
    admitted_by_pool: dict[str | None, float] = {}
    for name, route in runtime.routes.items():
        base = 1.0 if route.auth == "none" else 2 + 18 * _unit(name, "load")
        load = base * daily * (1 + NOISE * (2 * _unit(name, minute, "noise") - 1))
        consumers = 3 + int(8 * _unit(name, "consumers"))
        per_consumer = load / consumers
        fraction = max(0.0, per_consumer - route.rate_limit_rps) / per_consumer if per_consumer > 0 else 0.0
        offered[name], throttled[name] = load, fraction
        admitted_by_pool[route.pool] = admitted_by_pool.get(route.pool, 0.0) + load * (1 - fraction)

    # Each pool's state follows from what reaches it.
    demand: dict[str, float] = {}
    for name, pool in runtime.pools.items():
        load = admitted_by_pool.get(name, 0.0)
        capacity = pool.capacity_rps
        demand[name] = load / capacity if capacity > 0 else (math.inf if load > 0 else 0.0)

    samples: list[Sample] = []

    def add(scope: str, metric: Metric, value: float) -> None:
        samples.append(Sample(at, environment, runtime.commit, scope, metric.value, round(value, 6)))

    per_pool: dict[str, list[tuple[float, float, float, float]]] = {}  # (offered, admitted, 5xx, p95)
    for name, route in sorted(runtime.routes.items()):
        base_ms = 15 + 45 * _unit(name, "latency") + (AUTH_MS if route.auth == "required" else 0.0)
        baseline = BASELINE_ERROR * (0.5 + _unit(name, minute, "errors"))
        if route.pool is None:
            errors, p95 = 1.0, base_ms  # the gateway answers 503 at once: nothing to run it on
        else:
            u = demand[route.pool]
            errors = baseline + (1 - baseline) * _overload_errors(u)
            p95 = _p95(base_ms, u)
        load, fraction = offered[name], throttled[name]
        admitted = load * (1 - fraction)
        add(ROUTE + name, Metric.RPS, load)
        add(ROUTE + name, Metric.P95_MS, p95)
        add(ROUTE + name, Metric.ERROR_RATE, 100 * (1 - fraction) * errors)
        add(ROUTE + name, Metric.THROTTLED_RATE, 100 * fraction)
        if route.pool is not None:
            per_pool.setdefault(route.pool, []).append((load, admitted, errors, p95))

    for name, pool in sorted(runtime.pools.items()):
        rows = per_pool.get(name, [])
        offered_total = sum(r[0] for r in rows)
        admitted_total = sum(r[1] for r in rows)
        add(POOL + name, Metric.RPS, admitted_total)
        if admitted_total > 0:
            add(POOL + name, Metric.P95_MS, _weighted_percentile([(r[3], r[1]) for r in rows], 0.95))
        add(
            POOL + name,
            Metric.ERROR_RATE,
            100 * sum(r[1] * r[2] for r in rows) / admitted_total if admitted_total > 0 else 0.0,
        )
        add(
            POOL + name,
            Metric.THROTTLED_RATE,
            100 * (offered_total - admitted_total) / offered_total if offered_total > 0 else 0.0,
        )
        add(POOL + name, Metric.UTILISATION, min(demand[name], 1.0))
        add(POOL + name, Metric.REPLICAS, float(pool.replicas))
    return samples


def _overload_errors(u: float) -> float:
    """5xx fraction caused by load: a rise from the knee to full capacity, then shedding."""
    if math.isinf(u):
        return 1.0
    shed = max(0.0, 1 - 1 / u) if u > 1 else 0.0
    knee = min(1.0, max(0.0, (u - KNEE) / (1 - KNEE))) ** 2 * KNEE_ERROR
    return shed + (1 - shed) * knee


def _p95(base_ms: float, u: float) -> float:
    """Base latency stretched by queueing; at or over capacity, the timeout."""
    if u >= 1:
        return TIMEOUT_MS
    return min(TIMEOUT_MS, base_ms * (1 + u / (2 * (1 - u))))


def _weighted_percentile(values: list[tuple[float, float]], q: float) -> float:
    """The ``q`` quantile of ``(value, weight)`` pairs: a pool's p95 from its routes' p95s."""
    ordered = sorted(values)
    total = sum(w for _, w in ordered)
    running = 0.0
    for value, weight in ordered:
        running += weight
        if running >= q * total:
            return value
    return ordered[-1][0]


def _hours(at: datetime) -> float:
    return at.hour + at.minute / 60 + at.second / 3600


def _unit(*parts: str) -> float:
    """A stable number in [0, 1) from ``parts`` (not ``hash()``, which changes per process)."""
    digest = hashlib.blake2b("|".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64
