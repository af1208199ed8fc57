"""The sample environment ``apx init`` seeds into every branch of a new config repo.

A new installation should be realistic enough to try apx on at once: the
demo, the agents and the acceptance tests all propose changes against this
tenant. Its size is chosen to exercise the limits: 60 Routes is more than the
50-routes-per-intent constraint, so a "touch every route" intent is refused.
The field names are the ``apx/v1`` contract that
:mod:`orchestrator.resources` validates; keep the two in step.
"""

from __future__ import annotations

from typing import Any

import yaml

from orchestrator.intent import API_VERSION

PRODUCT = "payments-api"
HOST = "api.acme.example"

#: (resource group, sub-paths) → Routes ``payments-v1-<group>[-<sub>]`` at
#: ``/v1/<group>[/<sub>]``: 58 API routes plus two health probes = 60.
_API: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("charges", ("", "capture", "refund", "search", "disputes", "receipts")),
    ("customers", ("", "search", "sources", "tax-ids", "balance", "discount")),
    ("payment-intents", ("", "confirm", "cancel", "capture", "search")),
    ("payment-methods", ("", "attach", "detach")),
    ("refunds", ("", "cancel")),
    ("payouts", ("", "cancel", "reverse")),
    ("balance", ("", "transactions")),
    ("invoices", ("", "finalize", "pay", "void", "upcoming", "lines")),
    ("subscriptions", ("", "items", "schedules", "cancel")),
    ("prices", ("",)),
    ("coupons", ("",)),
    ("disputes", ("", "close", "evidence")),
    ("webhooks", ("", "endpoints", "events")),
    ("checkout", ("sessions", "sessions-expire")),
    ("tokens", ("",)),
    ("files", ("", "links")),
    ("reports", ("runs", "types")),
    ("mandates", ("",)),
    ("setup-intents", ("", "confirm", "cancel")),
    ("events", ("",)),
    ("tax-rates", ("",)),
)
#: Heavier or enterprise-facing resources are pinned to the ``pro`` plan's limits.
_PRO_GROUPS = frozenset({"reports", "payouts", "invoices", "subscriptions"})


def _document(kind: str, name: str, tenant: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name, "tenant": tenant},
        "spec": spec,
    }


def _plan(name: str, *, rps: int, burst: int, quota: int, isolation: str) -> dict[str, Any]:
    return {
        "name": name,
        "rateLimit": {"rps": rps, "burst": burst, "window": "1s"},
        "quota": quota,
        "isolation": isolation,
    }


def _product(tenant: str) -> dict[str, Any]:
    return _document(
        "Product",
        PRODUCT,
        tenant,
        {
            "plans": [
                _plan("free", rps=10, burst=20, quota=10_000, isolation="shared"),
                _plan("pro", rps=100, burst=200, quota=1_000_000, isolation="namespace"),
                _plan("enterprise", rps=1000, burst=2000, quota=50_000_000, isolation="dedicated"),
            ],
            "residency": "eu",
            "regionAffinity": ["eu-west-1", "eu-central-1"],
        },
    )


def _route(tenant: str, name: str, path: str, *, auth: str, plan: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "host": HOST,
        "path": path,
        "product": PRODUCT,
        "auth": auth,
        "canary": {"weight": 0},
    }
    if plan is not None:
        spec["plan"] = plan
    return _document("Route", name, tenant, spec)


def _routes(tenant: str) -> list[dict[str, Any]]:
    routes = [
        _route(tenant, "payments-healthz", "/healthz", auth="none", plan=None),
        _route(tenant, "payments-readyz", "/readyz", auth="none", plan=None),
    ]
    for group, subs in _API:
        plan = "pro" if group in _PRO_GROUPS else None
        for sub in subs:
            suffix = f"-{sub}" if sub else ""
            path = f"/v1/{group}/{sub}" if sub else f"/v1/{group}"
            routes.append(_route(tenant, f"payments-v1-{group}{suffix}", path, auth="required", plan=plan))
    return routes


def _worker_pool(tenant: str) -> dict[str, Any]:
    return _document(
        "WorkerPool",
        "checkout",
        tenant,
        {"replicas": 4, "minReplicas": 2, "maxReplicas": 20, "accelerator": "none", "spot": False},
    )


def _network_policy(tenant: str) -> dict[str, Any]:
    return _document(
        "NetworkPolicy",
        "edge",
        tenant,
        {
            "ingress": [
                {"cidr": "10.0.0.0/8", "ports": [443]},
                {"cidr": "192.168.0.0/16", "ports": [443, 8443]},
            ]
        },
    )


def _policy_bundle(tenant: str) -> dict[str, Any]:
    return _document(
        "PolicyBundle",
        "default",
        tenant,
        {
            "version": "1.0.0",
            "compat": "backward",
            "rateLimit": {"algorithm": "token_bucket"},
            "observability": {"sampleRate": 0.1, "piiSafe": True, "piiFields": ["email", "card_number"]},
        },
    )


def _dump(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False, allow_unicode=True)


def seed_files(tenant: str = "acme") -> dict[str, str]:
    """The sample environment for ``tenant`` as ``<Kind>/<name>.yaml`` → YAML text.

    Deterministic (same input, same bytes), so every installation and test
    starts from the same tree and the same commit contents.
    """
    documents = [
        _product(tenant),
        *_routes(tenant),
        _worker_pool(tenant),
        _network_policy(tenant),
        _policy_bundle(tenant),
    ]
    return {f"{d['kind']}/{d['metadata']['name']}.yaml": _dump(d) for d in documents}
