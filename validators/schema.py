"""Schema and reference checks: is every changed resource a valid ``apx/v1`` document, and does the
environment still hang together after the change?

The intent parser only checks envelopes; a spec that breaks its kind's schema
is caught here, after admission, so the refusal is a recorded ``rejected``
decision that names the resource and the field. :class:`ReferenceValidator`
looks at the whole environment after the change (Routes pointing at Products,
Routes colliding on host and path), because a change to one resource can break
another: deleting a Product strands every Route that serves it.

Both read ``ctx.after`` defensively: documents may be arbitrary YAML a human
committed by hand, and a validator reports, it never crashes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.decision import Check
from orchestrator.resources import validate_spec
from validators.base import ValidationContext


def _label(path: str) -> str:
    """``Route/x.yaml`` → ``Route/x``: how users name resources (``KIND/NAME``)."""
    return path.removesuffix(".yaml")


class SchemaValidator:
    """Every resource the intent creates or updates must match its kind's ``apx/v1`` schema."""

    name = "schema"

    def check(self, ctx: ValidationContext) -> Check:
        messages: list[str] = []
        for path in sorted(ctx.changed):
            document = ctx.after.get(path)
            if document is None:  # deleted: nothing left to validate
                continue
            label = _label(path)
            if not isinstance(document, Mapping):
                messages.append(f"{label}: the document must be a mapping")
                continue
            kind = document.get("kind")
            messages.extend(f"{label}: {m}" for m in validate_spec(str(kind), document.get("spec")))
        return Check(name=self.name, passed=not messages, messages=messages)


class ReferenceValidator:
    """Routes must serve an existing Product of their own tenant (and one of its plans), and no
    two may share host+path.

    With ``only_new`` (the default) a problem already present before the change
    is not held against it: a dangling Route committed by hand must not block
    every unrelated intent, while a change that strands or duplicates a Route is
    still refused.
    """

    name = "references"

    def __init__(self, *, only_new: bool = True) -> None:
        self.only_new = only_new

    def check(self, ctx: ValidationContext) -> Check:
        problems = _problems(ctx.after, ctx.intent.environment)
        if self.only_new:
            existing = set(_problems(ctx.before, ctx.intent.environment))
            problems = [p for p in problems if p not in existing]
        return Check(name=self.name, passed=not problems, messages=problems)


def _problems(environment: Mapping[str, Mapping[str, Any]], env_name: str) -> list[str]:
    products: dict[str, list[str] | None] = {}
    owners: dict[str, object] = {}
    routes: list[tuple[str, object, Mapping[str, Any]]] = []
    for path in sorted(environment):
        document = environment[path]
        if not isinstance(document, Mapping):
            continue
        kind, name, spec = document.get("kind"), _name(document), document.get("spec")
        if kind == "Product" and name is not None:
            products[name] = _plan_names(spec)
            owners[name] = _tenant(document)
        elif kind == "Route" and isinstance(spec, Mapping):
            routes.append((_label(path), _tenant(document), spec))

    messages: list[str] = []
    served: dict[tuple[str, str], list[str]] = {}
    for label, tenant, spec in routes:
        product, plan = spec.get("product"), spec.get("plan")
        if isinstance(product, str):
            if product not in products:
                messages.append(
                    f"{label}: spec.product names Product {product!r}, which does not exist in {env_name}"
                )
            elif isinstance(owners[product], str) and owners[product] != tenant:
                # Said without naming the owner: one tenant learns nothing about another's.
                messages.append(
                    f"{label}: spec.product names Product {product!r}, which is not tenant {tenant!r}'s; "
                    "a Route serves only its own tenant's Products"
                )
            elif isinstance(plan, str) and (plans := products[product]) is not None and plan not in plans:
                messages.append(
                    f"{label}: spec.plan {plan!r} is not a plan of Product {product!r} "
                    f"(its plans: {', '.join(plans) or 'none'})"
                )
        host, route_path = spec.get("host"), spec.get("path")
        if isinstance(host, str) and isinstance(route_path, str):
            served.setdefault((host, route_path), []).append(label)
    for (host, route_path), labels in served.items():
        if len(labels) > 1:
            who = f"{', '.join(labels[:-1])} and {labels[-1]} {'both' if len(labels) == 2 else 'all'}"
            messages.append(f"{who} serve {host}{route_path}; a host+path may have only one Route")
    return messages


def _tenant(document: Mapping[str, Any]) -> object:
    metadata = document.get("metadata")
    return metadata.get("tenant") if isinstance(metadata, Mapping) else None


def _name(document: Mapping[str, Any]) -> str | None:
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return name if isinstance(name, str) else None


def _plan_names(spec: object) -> list[str] | None:
    """The product's plan names, or None when its spec is too broken to say (schema reports that)."""
    plans = spec.get("plans") if isinstance(spec, Mapping) else None
    if not isinstance(plans, list):
        return None
    return [p["name"] for p in plans if isinstance(p, Mapping) and isinstance(p.get("name"), str)]
