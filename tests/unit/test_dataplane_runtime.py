"""The simulated runtime, pure: what a commit serves, and the metrics it shows at an instant."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.changeset import parse_environment
from orchestrator.dataplane.metrics import Sample, summarise, weighted_error_rate
from orchestrator.dataplane.runtime import Runtime, changes, observe, reconcile
from orchestrator.seed import HOST, seed_files

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SEED = seed_files()
POOL_FILE = "WorkerPool/checkout.yaml"


def edited(path: str, edit: Callable[[dict[str, Any]], None]) -> dict[str, str]:
    """The seeded environment with one resource changed in place by ``edit(document)``."""
    document = yaml.safe_load(SEED[path])
    edit(document)
    return {**SEED, path: yaml.safe_dump(document, sort_keys=False)}


def with_replicas(replicas: int) -> dict[str, str]:
    def scale(document: dict[str, Any]) -> None:
        document["spec"].update(
            replicas=replicas, minReplicas=min(replicas, 2), maxReplicas=max(replicas, 20)
        )

    return edited(POOL_FILE, scale)


def runtime(files: dict[str, str], commit: str = "c" * 40) -> Runtime:
    return reconcile(parse_environment(files), commit=commit)


def pool(files: dict[str, str], at: datetime = T0) -> Any:
    (summary,) = summarise(observe(runtime(files), environment="dev", at=at))
    return summary


def metric(samples: list[Sample], scope: str, name: str) -> float:
    (value,) = [s.value for s in samples if s.scope == scope and s.metric == name]
    return value


def test_the_seeded_environment_serves_its_60_routes_on_the_checkout_pool() -> None:
    rt = runtime(SEED)
    assert len(rt.routes) == 60 and rt.skipped == ()
    assert {r.pool for r in rt.routes.values()} == {"checkout"}
    assert rt.pools["checkout"].replicas == 4
    # Longest path prefix wins; unauthenticated probes are served as written.
    assert rt.serve(HOST, "/v1/charges/capture/ch_123").name == "payments-v1-charges-capture"  # type: ignore[union-attr]
    assert rt.serve(HOST, "/v1/charges").name == "payments-v1-charges"  # type: ignore[union-attr]
    assert rt.serve(HOST, "/v1/chargesx") is None
    assert rt.serve("other.example", "/healthz") is None
    healthz = rt.routes["payments-healthz"]
    assert (healthz.auth, healthz.canary_weight, healthz.product) == ("none", 0, "payments-api")
    # Rate limits come from the route's plan, else the product's first plan.
    assert rt.routes["payments-v1-reports-runs"].rate_limit_rps == 100
    assert rt.routes["payments-v1-charges"].rate_limit_rps == 10


def test_the_same_commit_at_the_same_instant_gives_the_same_samples() -> None:
    first = observe(runtime(SEED), environment="dev", at=T0)
    again = observe(runtime(dict(SEED)), environment="dev", at=T0)
    assert first == again
    assert {s.commit for s in first} == {"c" * 40} and {s.at for s in first} == {T0}
    # 60 routes x 4 metrics + one pool x 6.
    assert len(first) == 246
    later = observe(runtime(SEED), environment="dev", at=T0 + timedelta(minutes=1))
    assert [s.value for s in later] != [s.value for s in first]


def test_the_healthy_seed_has_a_low_error_rate_and_room_to_spare() -> None:
    checkout = pool(SEED)
    assert 0.1 < checkout.error_rate < 0.3
    assert 0.3 < checkout.utilisation < 0.5
    assert checkout.throttled_rate == 0
    assert checkout.p95_ms < 150


@pytest.mark.parametrize("hour", range(24))
def test_scaling_checkout_down_to_one_replica_raises_its_error_rate_by_more_than_5_points(hour: int) -> None:
    at = T0.replace(hour=hour)
    before, after = pool(SEED, at), pool(with_replicas(1), at)
    assert after.error_rate > before.error_rate + 5
    assert after.utilisation == 1.0
    assert after.replicas == 1


def test_scaling_checkout_up_lowers_p95_latency_and_utilisation() -> None:
    four, eight = pool(SEED), pool(with_replicas(8))
    assert eight.p95_ms < four.p95_ms
    assert eight.utilisation == pytest.approx(four.utilisation / 2)
    assert eight.rps == four.rps
    samples_4 = observe(runtime(SEED), environment="dev", at=T0)
    samples_8 = observe(runtime(with_replicas(8)), environment="dev", at=T0)
    for name in runtime(SEED).routes:
        assert metric(samples_8, f"route/{name}", "p95_ms") < metric(samples_4, f"route/{name}", "p95_ms")


def test_a_removed_route_stops_being_served_and_measured() -> None:
    files = dict(SEED)
    del files["Route/payments-healthz.yaml"]
    before, after = runtime(SEED), runtime(files, commit="d" * 40)

    assert "payments-healthz" not in after.routes
    assert after.serve(HOST, "/healthz") is None
    assert not [s for s in observe(after, environment="dev", at=T0) if s.scope == "route/payments-healthz"]
    assert changes(before, after).routes_removed == ("payments-healthz",)
    assert changes(before, after).as_fields() == {"routes_removed": ["payments-healthz"]}


def test_changes_name_the_pools_scaled_and_nothing_else() -> None:
    moved = changes(runtime(SEED), runtime(with_replicas(1)))
    assert moved.pools_scaled == {"checkout": (4, 1)}
    assert moved.as_fields() == {"pools_scaled": {"checkout": "4→1"}}
    assert not changes(runtime(SEED), runtime(SEED, commit="e" * 40))
    assert changes(None, runtime(SEED)).routes_added == tuple(sorted(runtime(SEED).routes))


def test_requests_over_a_rate_limit_are_throttled_not_counted_as_errors() -> None:
    def strict_free_plan(document: dict[str, Any]) -> None:
        document["spec"]["plans"][0]["rateLimit"]["rps"] = 1

    files = edited("Product/payments-api.yaml", strict_free_plan)
    base, strict = (
        observe(runtime(SEED), environment="dev", at=T0),
        observe(runtime(files), environment="dev", at=T0),
    )
    free_route, pro_route = "route/payments-v1-charges", "route/payments-v1-reports-runs"

    assert metric(strict, free_route, "throttled_rate") > 50
    assert metric(strict, free_route, "error_rate") < metric(base, free_route, "error_rate")
    assert metric(strict, pro_route, "throttled_rate") == 0
    assert metric(strict, "pool/checkout", "rps") < metric(base, "pool/checkout", "rps")
    assert metric(strict, "pool/checkout", "throttled_rate") > 0


def test_a_route_whose_product_is_missing_is_not_served_and_says_why() -> None:
    def other_product(document: dict[str, Any]) -> None:
        document["spec"]["product"] = "billing"

    rt = runtime(edited("Route/payments-v1-refunds.yaml", other_product))
    assert "payments-v1-refunds" not in rt.routes
    assert rt.skipped == ("Route/payments-v1-refunds: product 'billing' does not exist",)


def test_an_invalid_pool_is_not_run_and_its_routes_fail_with_503s() -> None:
    def below_minimum(document: dict[str, Any]) -> None:
        document["spec"]["replicas"] = 1  # minReplicas stays 2

    files = edited(POOL_FILE, below_minimum)
    rt = runtime(files)
    assert rt.pools == {}
    assert rt.skipped == ("WorkerPool/checkout: spec.replicas: must be ≥ minReplicas (2), got 1",)
    samples = observe(rt, environment="dev", at=T0)
    assert metric(samples, "route/payments-v1-charges", "error_rate") == 100
    assert weighted_error_rate(samples) is None  # no pool measured at all


def test_routes_run_on_the_pool_named_like_their_product() -> None:
    files = dict(SEED)
    files["WorkerPool/payments-api.yaml"] = SEED[POOL_FILE].replace("name: checkout", "name: payments-api")
    rt = runtime(files)
    assert {r.pool for r in rt.routes.values()} == {"payments-api"}
    idle = [s for s in observe(rt, environment="dev", at=T0) if s.scope == "pool/checkout"]
    assert {s.metric: s.value for s in idle}["rps"] == 0
    assert "p95_ms" not in {s.metric for s in idle}  # no requests, no latency


def test_the_error_rate_is_weighted_by_requests() -> None:
    def sample(scope: str, name: str, value: float) -> Sample:
        return Sample(T0, "dev", "c" * 40, scope, name, value)

    samples = [
        sample("pool/a", "rps", 900),
        sample("pool/a", "error_rate", 1.0),
        sample("pool/b", "rps", 100),
        sample("pool/b", "error_rate", 11.0),
        sample("route/x", "error_rate", 99.0),  # routes are not counted twice
    ]
    assert weighted_error_rate(samples) == pytest.approx(2.0)
    assert weighted_error_rate(samples[4:]) is None


def test_a_sample_refuses_a_naive_time_and_keeps_utc() -> None:
    with pytest.raises(ValueError, match="naive"):
        Sample(datetime(2025, 6, 1, 12), "dev", "c" * 40, "pool/a", "rps", 1.0)
    with pytest.raises(ValueError, match="finite"):
        Sample(T0, "dev", "c" * 40, "pool/a", "rps", float("nan"))


@settings(max_examples=40, deadline=None)
@given(
    replicas=st.integers(min_value=1, max_value=40),
    more=st.integers(min_value=1, max_value=40),
    minute=st.integers(min_value=0, max_value=24 * 60 - 1),
)
def test_more_replicas_never_make_things_worse(replicas: int, more: int, minute: int) -> None:
    at = T0.replace(hour=0) + timedelta(minutes=minute)
    small, large = pool(with_replicas(replicas), at), pool(with_replicas(replicas + more), at)
    assert large.error_rate <= small.error_rate
    assert large.p95_ms <= small.p95_ms
    assert large.utilisation <= small.utilisation
    for summary in (small, large):
        assert 0 <= summary.error_rate <= 100 and 0 <= summary.utilisation <= 1 and summary.p95_ms > 0
