"""The apx/v1 spec schema: valid documents pass, every constraint names its field."""

# The constraint table reads best as one case per line, messages whole.
# ruff: noqa: E501

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.intent import KINDS
from orchestrator.resources import (
    SPEC_MODELS,
    WorkerPoolSpec,
    duration_seconds,
    typed_spec,
    validate_spec,
)
from orchestrator.seed import seed_files


def seed_spec(path: str) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(seed_files()[path])["spec"]
    return spec


VALID: dict[str, dict[str, Any]] = {
    "Product": seed_spec("Product/payments-api.yaml"),
    "Route": seed_spec("Route/payments-v1-refunds.yaml"),
    "PolicyBundle": seed_spec("PolicyBundle/default.yaml"),
    "WorkerPool": seed_spec("WorkerPool/checkout.yaml"),
    "NetworkPolicy": seed_spec("NetworkPolicy/edge.yaml"),
}


def test_every_kind_has_a_spec_model() -> None:
    assert set(SPEC_MODELS) == set(KINDS)


@pytest.mark.parametrize("kind", sorted(VALID))
def test_valid_example_of_every_kind_passes(kind: str) -> None:
    assert validate_spec(kind, VALID[kind]) == []


def test_every_seeded_resource_is_valid() -> None:
    for path, text in seed_files().items():
        document = yaml.safe_load(text)
        assert validate_spec(document["kind"], document["spec"]) == [], path


def test_optional_fields_take_their_defaults() -> None:
    route = typed_spec("Route", {"host": "a.example", "path": "/", "product": "p", "auth": "none"})
    assert route.model_dump() == {
        "host": "a.example",
        "path": "/",
        "product": "p",
        "auth": "none",
        "canary": {"weight": 0},
        "plan": None,
    }


def _set(spec: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``spec`` with the dotted ``path`` (list indices as numbers) set, or removed for ``...``."""
    out = copy.deepcopy(spec)
    parts: list[Any] = [int(p) if p.isdigit() else p for p in path.split(".")]
    target = out
    for part in parts[:-1]:
        target = target[part]
    if value is ...:
        del target[parts[-1]]
    else:
        target[parts[-1]] = value
    return out


CASES = [
    # kind, field to set, value, the one message expected
    ("WorkerPool", "replicas", 150, "spec.replicas: must be ≤ maxReplicas (20), got 150"),
    ("WorkerPool", "replicas", 1, "spec.replicas: must be ≥ minReplicas (2), got 1"),
    ("WorkerPool", "minReplicas", 30, "spec.minReplicas: must be ≤ maxReplicas (20), got 30"),
    ("WorkerPool", "maxReplicas", -1, "spec.maxReplicas: Input should be greater than or equal to 0, got -1"),
    ("WorkerPool", "replicas", "6", "spec.replicas: Input should be a valid integer, got a string"),
    ("WorkerPool", "replicas", 6.5, "spec.replicas: Input should be a valid integer, got 6.5"),
    ("WorkerPool", "spot", "no", "spec.spot: Input should be a valid boolean, got a string"),
    ("WorkerPool", "accelerator", "tpu", "spec.accelerator: Input should be 'none' or 'gpu'"),
    ("WorkerPool", "accelerator", ..., "spec.accelerator: required field is missing"),
    ("Product", "plans.1.rateLimit.rps", 0, "spec.plans[1].rateLimit.rps: Input should be greater than 0, got 0"),
    ("Product", "plans.0.rateLimit.burst", -5, "spec.plans[0].rateLimit.burst: Input should be greater than or equal to 0, got -5"),
    ("Product", "plans.0.rateLimit.window", "1 second", "spec.plans[0].rateLimit.window: must be a duration like '1s', '30s', '1m' or '1h'"),
    ("Product", "plans.2.quota", 0, "spec.plans[2].quota: Input should be greater than 0, got 0"),
    ("Product", "plans.0.isolation", "private", "spec.plans[0].isolation: Input should be 'shared', 'namespace' or 'dedicated'"),
    ("Product", "plans.2.name", "free", "spec.plans[2].name: duplicate plan name 'free'; plans[0] has it"),
    ("Product", "plans", [], "spec.plans: must have at least 1 item, got 0"),
    ("Product", "residency", "EU", "spec.residency: must be a lowercase code like 'eu' or 'eu-west-1'"),
    ("Product", "regionAffinity", "eu-west-1", "spec.regionAffinity: Input should be a valid list, got a string"),
    ("Route", "host", "API.acme.example", "spec.host: must be a lowercase DNS hostname like 'api.example.com' (dot-separated labels of a-z, 0-9 and '-', each at most 63 characters; an optional leading '*.')"),
    ("Route", "host", "10.0.0.1", "spec.host: must be a DNS hostname, not an IP address"),
    ("Route", "path", "v1/refunds", "spec.path: must start with '/'"),
    ("Route", "path", "/v1/../admin", "spec.path: must not contain empty, '.' or '..' segments"),
    ("Route", "product", "Payments_API", "spec.product: must be a name of at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"),
    ("Route", "auth", "optional", "spec.auth: Input should be 'required' or 'none'"),
    ("Route", "canary.weight", 101, "spec.canary.weight: Input should be less than or equal to 100, got 101"),
    ("Route", "canary", 10, "spec.canary: must be a mapping, got 10"),
    ("PolicyBundle", "version", "1.0", "spec.version: must be a semantic version like '1.4.0' (MAJOR.MINOR.PATCH, see semver.org)"),
    ("PolicyBundle", "compat", "forward", "spec.compat: Input should be 'backward' or 'breaking'"),
    ("PolicyBundle", "rateLimit.algorithm", "leaky_bucket", "spec.rateLimit.algorithm: Input should be 'token_bucket', 'sliding_window' or 'fixed_window'"),
    ("PolicyBundle", "observability.sampleRate", 1.5, "spec.observability.sampleRate: Input should be less than or equal to 1, got 1.5"),
    ("PolicyBundle", "observability.piiSafe", "yes", "spec.observability.piiSafe: Input should be a valid boolean, got a string"),
    ("PolicyBundle", "observability.piiFields", ["email", "email"], "spec.observability.piiFields[1]: duplicate field 'email'; piiFields[0] has it too"),
    ("NetworkPolicy", "ingress.0.cidr", "10.0.0.1/8", "spec.ingress[0].cidr: 10.0.0.1/8 has host bits set; the network is 10.0.0.0/8"),
    ("NetworkPolicy", "ingress.0.cidr", "10.0.0.0", "spec.ingress[0].cidr: must be a network in CIDR notation like '10.0.0.0/8' (the '/prefix' is missing)"),
    ("NetworkPolicy", "ingress.1.cidr", "192.168.0.0/33", "spec.ingress[1].cidr: must be an IPv4 or IPv6 network in CIDR notation like '10.0.0.0/8'"),
    ("NetworkPolicy", "ingress.0.ports", [], "spec.ingress[0].ports: must have at least 1 item, got 0"),
    ("NetworkPolicy", "ingress.1.ports", [443, 70000], "spec.ingress[1].ports[1]: Input should be less than or equal to 65535, got 70000"),
    ("NetworkPolicy", "ingress.1.ports", [443, 443], "spec.ingress[1].ports[1]: duplicate port 443; ports[0] has it too"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "field", "value", "expected"), CASES)
def test_each_constraint_names_the_field(kind: str, field: str, value: Any, expected: str) -> None:
    assert validate_spec(kind, _set(VALID[kind], field, value)) == [expected]


def test_a_misspelt_field_is_an_error_that_suggests_the_right_one() -> None:
    spec = _set(VALID["WorkerPool"], "replicas", ...) | {"replica": 4}
    assert validate_spec("WorkerPool", spec) == [
        "spec.replicas: required field is missing",
        "spec.replica: unknown field; did you mean 'replicas'? "
        "expected one of: replicas, minReplicas, maxReplicas, accelerator, spot",
    ]


def test_unknown_nested_field_lists_that_models_fields() -> None:
    spec = _set(VALID["Product"], "plans.0.rateLimit.rpm", 600)
    assert validate_spec("Product", spec) == [
        "spec.plans[0].rateLimit.rpm: unknown field; did you mean 'rps'? expected one of: rps, burst, window"
    ]


def test_every_problem_is_reported_not_only_the_first() -> None:
    spec = {"host": "a.example", "path": "nope", "product": "p", "auth": "maybe", "canary": {"weight": -1}}
    assert len(validate_spec("Route", spec)) == 3


def test_a_spec_that_is_not_a_mapping_or_missing_or_of_unknown_kind() -> None:
    assert validate_spec("WorkerPool", [1, 2]) == ["spec: must be a mapping, got a list"]
    assert validate_spec("WorkerPool", None) == ["spec: required field is missing"]
    assert validate_spec("Widget", {}) == [
        "kind: unknown kind; expected one of Product, Route, WorkerPool, NetworkPolicy, PolicyBundle"
    ]


def test_messages_never_echo_a_rejected_string() -> None:
    secret = "sk_live_0123456789abcdefghijklmnop"
    for field in ("host", "path", "product", "auth", "plan"):
        for message in validate_spec("Route", _set(VALID["Route"], field, secret)):
            assert secret not in message


def test_ipv6_networks_are_accepted() -> None:
    spec = {"ingress": [{"cidr": "2001:db8::/32", "ports": [443]}]}
    assert validate_spec("NetworkPolicy", spec) == []


def test_durations_convert_to_seconds() -> None:
    assert [duration_seconds(d) for d in ("1s", "30s", "1m", "2h")] == [1, 30, 60, 7200]


@st.composite
def worker_pool_specs(draw: st.DrawFn) -> dict[str, Any]:
    low, mid, high = sorted(draw(st.lists(st.integers(0, 10_000), min_size=3, max_size=3)))
    return {
        "replicas": mid,
        "minReplicas": low,
        "maxReplicas": high,
        "accelerator": draw(st.sampled_from(["none", "gpu"])),
        "spot": draw(st.booleans()),
    }


@given(worker_pool_specs())
def test_worker_pool_spec_round_trips(spec: dict[str, Any]) -> None:
    model = WorkerPoolSpec.model_validate(spec)
    dumped = model.model_dump(mode="json")
    assert dumped == spec
    assert WorkerPoolSpec.model_validate(dumped) == model
    assert validate_spec("WorkerPool", dumped) == []


@given(worker_pool_specs(), st.integers(1, 1000))
def test_replicas_above_max_is_always_refused(spec: dict[str, Any], excess: int) -> None:
    spec = spec | {"replicas": spec["maxReplicas"] + excess}
    assert validate_spec("WorkerPool", spec) == [
        f"spec.replicas: must be ≤ maxReplicas ({spec['maxReplicas']}), got {spec['replicas']}"
    ]
