"""Blast radius: what the policy is told an intent touches, computed from the seeded environment."""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.intent import Intent
from orchestrator.seed import seed_files
from validators.base import ValidationContext
from validators.blast_radius import BlastRadius, BlastRadiusValidator, compute

Env = dict[str, dict[str, Any]]

PRODUCT = "Product/payments-api.yaml"
POOL = "WorkerPool/checkout.yaml"
EDGE = "NetworkPolicy/edge.yaml"


def seeded() -> Env:
    return {path: yaml.safe_load(text) for path, text in seed_files().items()}


def document(kind: str, name: str, spec: dict[str, Any], tenant: str = "acme") -> dict[str, Any]:
    return {"apiVersion": "apx/v1", "kind": kind, "metadata": {"name": name, "tenant": tenant}, "spec": spec}


def radius(before: Env, after: Env) -> BlastRadius:
    changed = frozenset(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    return compute(before=before, after=after, changed=changed, tenant="acme", environment="dev")


def plan(after: Env, name: str) -> dict[str, Any]:
    plans: list[dict[str, Any]] = after[PRODUCT]["spec"]["plans"]
    return next(p for p in plans if p["name"] == name)


def with_ingress(env: Env, *cidrs: str) -> Env:
    out = copy.deepcopy(env)
    out[EDGE]["spec"]["ingress"] = [{"cidr": c, "ports": [443]} for c in cidrs]
    return out


# --- routes ----------------------------------------------------------------------------------------


def test_routes_created_updated_and_deleted_are_all_counted() -> None:
    before = seeded()
    after = copy.deepcopy(before)
    after["Route/payments-v1-refunds-search.yaml"] = document(
        "Route",
        "payments-v1-refunds-search",
        {
            "host": "api.acme.example",
            "path": "/v1/refunds/search",
            "product": "payments-api",
            "auth": "required",
        },
    )
    after["Route/payments-v1-charges.yaml"]["spec"]["canary"] = {"weight": 10}
    del after["Route/payments-v1-coupons.yaml"]

    result = radius(before, after)

    assert result.routes_touched == 3
    assert result.tenants == ("acme",)
    assert result.environments == ("dev",)


def test_nothing_changed_is_a_zero_radius_with_neutral_factors() -> None:
    env = seeded()
    result = radius(env, env)
    assert result.policy_input() == {
        "routes_touched": 0,
        "quota_factor": 1.0,
        "rate_limit_factor": 1.0,
        "replicas_after_max": 0,
        "replica_delta": 0,
        "replica_factor": 1.0,
        "tenants": [],
        "environments": ["dev"],
        "network": {
            "changed": False,
            "opens_world": False,
            "widest_prefix": None,
            "added_cidrs": [],
            "removed_cidrs": [],
        },
    }


# --- plans -----------------------------------------------------------------------------------------


def test_a_quota_raise_reports_its_factor_per_plan() -> None:
    before = seeded()
    after = copy.deepcopy(before)
    plan(after, "pro")["quota"] = 2_500_000

    result = radius(before, after)

    assert result.quota_factor == 2.5
    assert result.rate_limit_factor == 1.0
    assert [p.as_dict() for p in result.plans] == [
        {
            "product": "payments-api",
            "plan": "pro",
            "quota_before": 1_000_000,
            "quota_after": 2_500_000,
            "quota_factor": 2.5,
            "rps_factor": 1.0,
            "burst_factor": 1.0,
        }
    ]


def test_the_rate_limit_factor_is_the_larger_of_rps_and_burst_over_plans() -> None:
    before = seeded()
    after = copy.deepcopy(before)
    plan(after, "free")["rateLimit"] = {"rps": 15, "burst": 60, "window": "1s"}  # x1.5, x3
    plan(after, "pro")["rateLimit"] = {"rps": 200, "burst": 200, "window": "1s"}  # x2

    result = radius(before, after)

    assert result.rate_limit_factor == 3.0
    assert result.quota_factor == 1.0


def test_a_new_plan_counts_as_factor_one() -> None:
    before = seeded()
    after = copy.deepcopy(before)
    after[PRODUCT]["spec"]["plans"].append(
        {
            "name": "gold",
            "rateLimit": {"rps": 5000, "burst": 0, "window": "1s"},
            "quota": 10**9,
            "isolation": "dedicated",
        }
    )

    result = radius(before, after)

    assert [(p.plan, p.quota_before, p.quota_factor, p.rps_factor) for p in result.plans] == [
        ("gold", None, 1.0, 1.0)
    ]
    assert (result.quota_factor, result.rate_limit_factor) == (1.0, 1.0)


def test_a_decrease_is_a_factor_below_one() -> None:
    before = seeded()
    after = copy.deepcopy(before)
    plan(after, "enterprise")["quota"] = 25_000_000

    assert radius(before, after).quota_factor == 0.5


def test_burst_from_zero_counts_as_the_new_value() -> None:
    before = seeded()
    plan(before, "free")["rateLimit"]["burst"] = 0
    after = copy.deepcopy(before)
    plan(after, "free")["rateLimit"]["burst"] = 20

    assert radius(before, after).rate_limit_factor == 20.0


def test_unchanged_plans_of_a_changed_product_are_not_listed() -> None:
    before = seeded()
    after = copy.deepcopy(before)
    after[PRODUCT]["spec"]["residency"] = "us"

    result = radius(before, after)

    assert result.plans == ()
    assert result.quota_factor == 1.0


# --- worker pools ----------------------------------------------------------------------------------


def test_replica_delta_factor_and_max_after() -> None:
    before = seeded()
    after = copy.deepcopy(before)
    after[POOL]["spec"]["replicas"] = 6
    after["WorkerPool/refunds.yaml"] = document(
        "WorkerPool",
        "refunds",
        {"replicas": 3, "minReplicas": 1, "maxReplicas": 10, "accelerator": "none", "spot": True},
    )

    result = radius(before, after)

    assert result.replica_delta == 2 + 3
    assert result.replicas_after_max == 6
    # checkout 4 → 6 is x1.5; the new pool has no replicas before, so its factor is its count, 3.
    assert result.replica_factor == 3.0
    assert "replicas 4→9 (+5)" in result.summary()


def test_deleting_a_pool_is_a_negative_delta() -> None:
    before = seeded()
    after = copy.deepcopy(before)
    del after[POOL]

    result = radius(before, after)

    assert (result.replica_delta, result.replicas_after_max, result.replica_factor) == (-4, 0, 0.0)


# --- network ---------------------------------------------------------------------------------------


def test_adding_0_0_0_0_slash_0_opens_the_world() -> None:
    before = seeded()
    after = with_ingress(before, "10.0.0.0/8", "192.168.0.0/16", "0.0.0.0/0")

    network = radius(before, after).network

    assert network.changed and network.opens_world
    assert network.added_cidrs == ("0.0.0.0/0",)
    assert network.widest_prefix == 0


def test_adding_ipv6_any_opens_the_world() -> None:
    before = seeded()
    network = radius(before, with_ingress(before, "10.0.0.0/8", "::/0")).network
    assert network.opens_world
    assert network.added_cidrs == ("::/0",)
    assert network.removed_cidrs == ("192.168.0.0/16",)


def test_the_world_split_in_halves_still_opens_it() -> None:
    before = seeded()
    network = radius(before, with_ingress(before, "0.0.0.0/1", "128.0.0.0/1")).network
    assert network.opens_world
    assert network.widest_prefix == 1


def test_a_private_range_does_not_open_the_world() -> None:
    before = with_ingress(seeded(), "192.168.0.0/16")
    network = radius(before, with_ingress(before, "10.0.0.0/8")).network
    assert network.changed
    assert not network.opens_world
    assert network.added_cidrs == ("10.0.0.0/8",)
    assert network.widest_prefix == 8


def test_removing_a_cidr_only_is_a_change_that_opens_nothing() -> None:
    before = seeded()
    network = radius(before, with_ingress(before, "10.0.0.0/8")).network
    assert network.changed
    assert not network.opens_world
    assert network.added_cidrs == ()
    assert network.removed_cidrs == ("192.168.0.0/16",)
    assert network.widest_prefix is None


def test_a_port_change_is_a_network_change() -> None:
    before = seeded()
    after = copy.deepcopy(before)
    after[EDGE]["spec"]["ingress"][0]["ports"] = [443, 80]
    network = radius(before, after).network
    assert network.changed
    assert (network.added_cidrs, network.removed_cidrs) == ((), ())


def test_cidrs_are_compared_as_networks() -> None:
    before = with_ingress(seeded(), "10.0.0.0/8")
    network = radius(before, with_ingress(before, "10.0.0.1/8")).network  # same network, host bits set
    assert (network.added_cidrs, network.removed_cidrs) == ((), ())


# --- outputs ---------------------------------------------------------------------------------------


def test_policy_input_has_exactly_the_keys_the_policy_reads() -> None:
    before = seeded()
    after = with_ingress(before, "0.0.0.0/0")
    plan(after, "pro")["quota"] = 1_500_000
    result = radius(before, after)

    policy = result.policy_input()
    assert set(policy) == {
        "routes_touched",
        "quota_factor",
        "rate_limit_factor",
        "replicas_after_max",
        "replica_delta",
        "replica_factor",
        "tenants",
        "environments",
        "network",
    }
    assert set(policy["network"]) == {
        "changed",
        "opens_world",
        "widest_prefix",
        "added_cidrs",
        "removed_cidrs",
    }
    full = result.as_dict()
    assert json.loads(json.dumps(full, allow_nan=False)) == full
    assert full["plans"][0]["plan"] == "pro"


def test_the_validator_always_passes_with_a_summary() -> None:
    before = seeded()
    after = copy.deepcopy(before)
    plan(after, "pro")["quota"] = 1_500_000
    after[POOL]["spec"]["replicas"] = 6
    for name in ("payments-v1-charges", "payments-v1-refunds", "payments-v1-payouts"):
        after[f"Route/{name}.yaml"]["spec"]["canary"] = {"weight": 5}
    changed = frozenset(p for p in after if before.get(p) != after.get(p))
    intent = Intent.model_validate(
        {
            "apiVersion": "apx/v1",
            "kind": "Intent",
            "metadata": {"tenant": "acme"},
            "spec": {
                "environment": "dev",
                "changes": [{"action": "update", "resource": after[POOL]}],
            },
        }
    )
    ctx = ValidationContext(intent=intent, agent="optimizer", before=before, after=after, changed=changed)

    check = BlastRadiusValidator().check(ctx)

    assert check.name == "blast_radius"
    assert check.passed
    times = "\N{MULTIPLICATION SIGN}"
    assert check.messages == [
        f"3 routes, quota {times}1.5 (payments-api/pro), replicas 4→6 (+2), tenants: acme"
    ]


def test_an_unreadable_tenant_falls_back_to_the_intents() -> None:
    before = seeded()
    after = copy.deepcopy(before)
    after["Route/odd.yaml"] = {"kind": "Route", "metadata": "not a mapping", "spec": None}
    after["Route/other.yaml"] = document("Route", "other", {}, tenant="globex")

    result = radius(before, after)

    assert result.tenants == ("acme", "globex")
    assert result.routes_touched == 2


# --- robustness ------------------------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["0.0.0.0/0", "::/0", "10.0.0.0/8", "10.0.0.1/8", "fe80::/10", "1.2.3.4", "x/0", ""])
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "plans",
                    "name",
                    "quota",
                    "rateLimit",
                    "rps",
                    "burst",
                    "replicas",
                    "ingress",
                    "cidr",
                    "ports",
                    "x",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)
_documents = st.one_of(
    _json,
    st.fixed_dictionaries(
        {
            "kind": st.sampled_from(["Route", "Product", "WorkerPool", "NetworkPolicy", "Other"]) | _scalars,
            "metadata": _json,
            "spec": _json,
        }
    ),
)
_paths = st.sampled_from([PRODUCT, POOL, EDGE, "Route/a.yaml", "Route/b.yaml", "Other/c.yaml"])
_environments = st.dictionaries(_paths, _documents, max_size=4)


@settings(max_examples=300, deadline=None)
@given(before=_environments, after=_environments)
def test_compute_never_raises_and_stays_json(before: dict[str, Any], after: dict[str, Any]) -> None:
    changed = frozenset(before.keys() | after.keys())
    result = compute(before=before, after=after, changed=changed, tenant="acme", environment="dev")
    text = json.dumps(result.as_dict(), allow_nan=False)
    assert json.loads(text)["environments"] == ["dev"]
    assert result.summary()
