"""The schema and references validators, over the seeded environment with one change applied."""

from __future__ import annotations

from typing import Any

import yaml

from orchestrator.intent import Intent
from orchestrator.seed import seed_files
from validators.base import ValidationContext
from validators.schema import ReferenceValidator, SchemaValidator


def seeded() -> dict[str, dict[str, Any]]:
    return {path: yaml.safe_load(text) for path, text in seed_files().items()}


def document(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "apx/v1", "kind": kind, "metadata": {"name": name, "tenant": "acme"}, "spec": spec}


def route(name: str, **spec: Any) -> dict[str, Any]:
    defaults = {
        "host": "api.acme.example",
        "path": f"/v2/{name}",
        "product": "payments-api",
        "auth": "required",
    }
    return document("Route", name, defaults | spec)


def context(before: dict[str, dict[str, Any]], *changes: tuple[str, dict[str, Any]]) -> ValidationContext:
    """Apply ``(action, resource document)`` changes to ``before`` as the pipeline would."""
    intent = Intent.model_validate(
        {
            "apiVersion": "apx/v1",
            "kind": "Intent",
            "metadata": {"tenant": "acme"},
            "spec": {"environment": "dev", "changes": [{"action": a, "resource": r} for a, r in changes]},
        }
    )
    after = dict(before)
    for change in intent.spec.changes:
        path = change.resource.key.path
        if change.action == "delete":
            after.pop(path, None)
        else:
            after[path] = change.resource.document()
    changed = frozenset(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    return ValidationContext(intent=intent, agent="builder", before=before, after=after, changed=changed)


def test_a_valid_change_passes_both() -> None:
    ctx = context(seeded(), ("create", route("refunds-search", path="/v1/refunds/search")))
    assert SchemaValidator().check(ctx).passed
    assert ReferenceValidator().check(ctx).passed


def test_a_changed_invalid_resource_fails_schema_naming_it() -> None:
    pool = document(
        "WorkerPool",
        "checkout",
        {"replicas": 150, "minReplicas": 2, "maxReplicas": 20, "accelerator": "none", "spot": False},
    )
    check = SchemaValidator().check(context(seeded(), ("update", pool)))
    assert check.name == "schema"
    assert not check.passed
    assert check.messages == ["WorkerPool/checkout: spec.replicas: must be ≤ maxReplicas (20), got 150"]


def test_schema_checks_only_changed_resources() -> None:
    before = seeded()
    before["WorkerPool/legacy.yaml"] = document("WorkerPool", "legacy", {"replicas": "many"})
    ctx = context(before, ("create", route("refunds-search", path="/v1/refunds/search")))
    assert SchemaValidator().check(ctx).passed


def test_a_deleted_resource_is_not_schema_checked() -> None:
    ctx = context(seeded(), ("delete", document("WorkerPool", "checkout", {})))
    assert SchemaValidator().check(ctx).passed


def test_schema_reports_every_changed_resource() -> None:
    bad_route = route("x", path="no-slash", auth="maybe")
    bad_policy = document("NetworkPolicy", "edge", {"ingress": [{"cidr": "0.0.0.1/0", "ports": [443]}]})
    check = SchemaValidator().check(context(seeded(), ("create", bad_route), ("update", bad_policy)))
    assert check.messages == [
        "NetworkPolicy/edge: spec.ingress[0].cidr: 0.0.0.1/0 has host bits set; the network is 0.0.0.0/0",
        "Route/x: spec.path: must start with '/'",
        "Route/x: spec.auth: Input should be 'required' or 'none'",
    ]


def test_a_route_naming_a_missing_product_fails_references() -> None:
    ctx = context(seeded(), ("create", route("ledger", product="ledger-api")))
    check = ReferenceValidator().check(ctx)
    assert check.name == "references"
    assert not check.passed
    assert check.messages == [
        "Route/ledger: spec.product names Product 'ledger-api', which does not exist in dev"
    ]


def test_a_route_may_not_serve_another_tenants_product() -> None:
    """Found by the decision fuzz: a globex Route serving acme's Product was applied."""
    theirs = route("ledger", host="api.globex.example")
    theirs["metadata"]["tenant"] = "globex"
    intent = Intent.model_validate(
        {
            "apiVersion": "apx/v1",
            "kind": "Intent",
            "metadata": {"tenant": "globex"},
            "spec": {"environment": "dev", "changes": [{"action": "create", "resource": theirs}]},
        }
    )
    before = seeded()
    ctx = ValidationContext(
        intent=intent,
        agent="builder",
        before=before,
        after={**before, "Route/ledger.yaml": theirs},
        changed=frozenset({"Route/ledger.yaml"}),
    )
    check = ReferenceValidator().check(ctx)
    assert check.messages == [
        "Route/ledger: spec.product names Product 'payments-api', which is not tenant 'globex''s; "
        "a Route serves only its own tenant's Products"
    ]


def test_deleting_a_product_strands_its_routes() -> None:
    ctx = context(seeded(), ("delete", document("Product", "payments-api", {})))
    check = ReferenceValidator().check(ctx)
    assert not check.passed
    assert len(check.messages) == 60
    assert "Route/payments-healthz: spec.product names Product 'payments-api'" in check.messages[0]


def test_a_route_naming_a_plan_its_product_lacks_fails_references() -> None:
    check = ReferenceValidator().check(context(seeded(), ("create", route("gold", plan="gold"))))
    assert check.messages == [
        "Route/gold: spec.plan 'gold' is not a plan of Product 'payments-api' "
        "(its plans: free, pro, enterprise)"
    ]


def test_two_routes_on_the_same_host_and_path_fail_references() -> None:
    ctx = context(seeded(), ("create", route("refunds-again", path="/v1/refunds")))
    check = ReferenceValidator().check(ctx)
    assert not check.passed
    assert check.messages == [
        "Route/payments-v1-refunds and Route/refunds-again both serve api.acme.example/v1/refunds; "
        "a host+path may have only one Route"
    ]


def test_the_same_path_on_another_host_is_fine() -> None:
    ctx = context(seeded(), ("create", route("refunds-eu", host="eu.acme.example", path="/v1/refunds")))
    assert ReferenceValidator().check(ctx).passed


def test_problems_that_existed_before_do_not_block_an_unrelated_change() -> None:
    before = seeded()
    before["Route/dangling.yaml"] = route("dangling", product="gone")
    ctx = context(before, ("create", route("refunds-search", path="/v1/refunds/search")))
    assert ReferenceValidator().check(ctx).passed
    strict = ReferenceValidator(only_new=False).check(ctx)
    assert strict.messages == [
        "Route/dangling: spec.product names Product 'gone', which does not exist in dev"
    ]


def test_malformed_documents_do_not_crash_the_reference_check() -> None:
    before = seeded()
    before["Route/odd.yaml"] = {"kind": "Route", "metadata": "nope", "spec": ["not", "a", "mapping"]}
    before["Product/odd.yaml"] = {"kind": "Product", "metadata": {"name": "odd"}, "spec": {"plans": "x"}}
    ctx = context(before, ("create", route("odd-plan", product="odd", plan="pro")))
    assert ReferenceValidator().check(ctx).passed
