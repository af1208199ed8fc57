"""The Builder: turns a human request into a new Route, proposed through the pipeline.

Its deterministic planner reads a small grammar (case-insensitive; clauses
after the product in any order, separated by commas, ``and`` or ``with``)::

    expose PATH on PRODUCT [CLAUSE ...]

    CLAUSE := "with auth" | "auth" | "auth required" | "authenticated"      → auth: required
            | "without auth" | "no auth" | "public"                         → auth: none
            | N "% canary" | "canary" N "%"                                 → canary: {weight: N}
            | "as" NAME                                                     → metadata.name
            | "at" HOST                                                     → spec.host
            | "plan" NAME | "on the" NAME "plan"                            → spec.plan

    expose /v2/refunds on payments-api with auth, 5% canary

It also sizes a WorkerPool when a human asks for capacity (a launch, an event)::

    size checkout at 10 replicas        (or: scale checkout to 10 replicas)

within the pool's ``minReplicas..maxReplicas``. Such a request often undoes what
the Optimizer just did: when the newest change to the pool in the last
``agents.builder.react_within`` was another agent's, the proposal names it as
``causedBy``, so a Builder↔Optimizer tug of war is visible in the log, flagged as
an oscillation by the pipeline, and stopped by the breaker.

Auth defaults to ``required`` (secure unless asked otherwise); the canary to 0.
The host is the one the product's existing routes use (the most common, ties
by name) unless ``at HOST`` says otherwise; the name is the product's name
without ``-api`` plus the path's segments (``payments-v2-refunds``) unless
``as NAME`` says otherwise. Anything the grammar does not read is refused with
the words it could not read, rather than guessed at or dropped: a request that
says more than the Builder understood must not become a route that does less.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agents.base import Observation, Proposal
from agents.graph import Agent, Nothing, Scope
from orchestrator.intent import API_VERSION

if TYPE_CHECKING:
    from agents.client import Client
    from agents.settings import AgentsSettings

NAME = "builder"

INSTRUCTIONS = """\
You are the Builder agent of APX. You turn one human request into configuration
resources (usually a Route for an existing Product) for the tenant and environment
you are given. Propose only what the request asks for; reuse the host of the
product's existing routes; authentication is required unless the request says the
route is public; a canary weight is a percentage 0-100. Never change other
resources, never another tenant's. If the request is unclear or names a product
that does not exist, propose nothing and say why in one sentence."""

GRAMMAR = (
    "expose /PATH on PRODUCT [with auth | without auth] [, N% canary] [as NAME] [at HOST]"
    " | size POOL at N replicas"
)
_SIZE = re.compile(
    r"^\s*(?:size|scale)\s+(?P<pool>[a-z0-9][-a-z0-9]*)\s+(?:at|to)\s+(?P<n>\d+)\s+replicas?\s*$", re.I
)

_HEAD = re.compile(r"^\s*expose\s+(?P<path>/\S*)\s+on\s+(?P<product>[a-z0-9][-a-z0-9]*)\b(?P<rest>.*)$", re.I)
#: Clause patterns, tried at the start of what is left; each consumes its words.
_CLAUSES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("auth_none", re.compile(r"^(?:without\s+auth(?:entication)?|no\s+auth(?:entication)?|public)\b", re.I)),
    (
        "auth_required",
        re.compile(r"^(?:auth(?:entication)?(?:\s+required)?|authenticated|required\s+auth)\b", re.I),
    ),
    ("canary", re.compile(r"^(?:(?P<n1>\d+)\s*%\s*canary|canary\s+(?:of\s+)?(?P<n2>\d+)\s*%)", re.I)),
    ("name", re.compile(r"^as\s+(?P<name>[a-z0-9][-a-z0-9]*)\b", re.I)),
    ("host", re.compile(r"^at\s+(?:host\s+)?(?P<host>[a-z0-9][-a-z0-9.]*[a-z0-9])\b", re.I)),
    ("plan", re.compile(r"^(?:on\s+the\s+(?P<p1>[-a-z0-9]+)\s+plan|plan\s+(?P<p2>[-a-z0-9]+))\b", re.I)),
)
#: Words that join clauses and mean nothing by themselves.
_JOINERS = re.compile(r"^(?:[,;]|and\b|with\b|\s)+", re.I)


@dataclass(frozen=True, kw_only=True)
class RouteRequest:
    """What a request asked for, as the grammar read it."""

    path: str
    product: str
    auth: str = "required"
    canary: int = 0
    name: str | None = None
    host: str | None = None
    plan: str | None = None


def parse_request(text: str) -> RouteRequest | str:
    """The request, or one sentence saying what could not be read."""
    head = _HEAD.match(text.strip())
    if head is None:
        return f"cannot read the request {text.strip()!r}; expected: {GRAMMAR}"
    found: dict[str, Any] = {"path": head["path"].rstrip("/") or "/", "product": head["product"].lower()}
    rest = head["rest"]
    while True:
        rest = _JOINERS.sub("", rest)
        if not rest:
            break
        for kind, pattern in _CLAUSES:
            match = pattern.match(rest)
            if match is None:
                continue
            if kind in ("auth_none", "auth_required"):
                found["auth"] = "none" if kind == "auth_none" else "required"
            elif kind == "canary":
                found["canary"] = int(match["n1"] or match["n2"])
            elif kind == "name":
                found["name"] = match["name"].lower()
            elif kind == "host":
                found["host"] = match["host"].lower()
            else:
                found["plan"] = (match["p1"] or match["p2"]).lower()
            rest = rest[match.end() :]
            break
        else:
            return f"cannot read {rest.strip()!r} in the request; expected: {GRAMMAR}"
    if found.get("canary", 0) > 100:
        return f"a canary weight is a percentage of traffic (0-100), not {found['canary']}%"
    return RouteRequest(**found)


def route_name(product: str, path: str) -> str:
    """``payments-api`` + ``/v2/refunds`` → ``payments-v2-refunds``, as the seeded routes are named."""
    segments = [re.sub(r"[^a-z0-9-]+", "-", s.lower()).strip("-") for s in path.split("/")]
    return "-".join([product.removesuffix("-api"), *(s for s in segments if s)])[:63].rstrip("-")


class BuilderPlanner:
    """The Builder's deterministic planner: the grammar above, checked against the environment."""

    name = "builder-grammar"

    def plan(self, observation: Observation) -> Proposal | None:
        answer = self.assess(observation)
        return answer if isinstance(answer, Proposal) else None

    def assess(self, observation: Observation) -> Proposal | Nothing:
        if not observation.request:
            return Nothing(f"no request given; say what to build, e.g. {GRAMMAR!r}")
        sized = _SIZE.match(observation.request)
        if sized is not None:
            return self._size(observation, sized["pool"].lower(), int(sized["n"]))
        asked = parse_request(observation.request)
        if isinstance(asked, str):
            return Nothing(asked)
        resources = observation.resources
        product = resources.get(f"Product/{asked.product}")
        if product is None:
            known = sorted(k.removeprefix("Product/") for k in resources if k.startswith("Product/"))
            return Nothing(
                f"product {asked.product!r} does not exist in {observation.environment} "
                f"(products: {', '.join(known) or 'none'})"
            )
        plans = {p.get("name") for p in (product.get("spec") or {}).get("plans", [])}
        if asked.plan is not None and asked.plan not in plans:
            offered = ", ".join(sorted(str(p) for p in plans))
            return Nothing(f"product {asked.product!r} has no plan {asked.plan!r} (plans: {offered})")
        host = asked.host or _usual_host(resources, asked.product)
        if host is None:
            return Nothing(f"product {asked.product!r} has no routes to take a host from; add 'at HOST'")
        for key, doc in sorted(resources.items()):
            seen = doc.get("spec") or {}
            if key.startswith("Route/") and seen.get("host") == host and seen.get("path") == asked.path:
                return Nothing(f"{host}{asked.path} is already served by {key}")
        name = asked.name or route_name(asked.product, asked.path)
        if f"Route/{name}" in resources:
            return Nothing(f"Route/{name} already exists; name the new route with 'as NAME'")
        spec: dict[str, Any] = {
            "host": host,
            "path": asked.path,
            "product": asked.product,
            "auth": asked.auth,
            "canary": {"weight": asked.canary},
        }
        if asked.plan is not None:
            spec["plan"] = asked.plan
        resource = {
            "apiVersion": API_VERSION,
            "kind": "Route",
            "metadata": {"name": name, "tenant": observation.tenant},
            "spec": spec,
        }
        canary = f", {asked.canary}% canary" if asked.canary else ""
        return Proposal(
            summary=(
                f"expose {asked.path} on {asked.product} as Route/{name} ({host}, auth {asked.auth}{canary})"
            ),
            changes=[{"action": "create", "resource": resource}],
        )

    def _size(self, observation: Observation, pool: str, replicas: int) -> Proposal | Nothing:
        key = f"WorkerPool/{pool}"
        document = observation.resources.get(key)
        if document is None:
            known = sorted(k.removeprefix("WorkerPool/") for k in observation.resources if "Pool/" in k)
            return Nothing(f"no WorkerPool {pool!r} in {observation.environment} (pools: {', '.join(known)})")
        spec = document.get("spec") or {}
        low, high = spec.get("minReplicas", 1), spec.get("maxReplicas", replicas)
        if not low <= replicas <= high:
            return Nothing(f"{key} runs {low}..{high} replicas (min..maxReplicas); {replicas} is outside")
        if spec.get("replicas") == replicas:
            return Nothing(f"{key} already runs {replicas} replicas")
        resource = {**document, "spec": {**spec, "replicas": replicas}}
        return Proposal(
            summary=f"size {key} at {replicas} replicas (was {spec.get('replicas')}), as requested",
            changes=[{"action": "update", "resource": resource}],
            caused_by=observation.reacting_to(lambda target: target == key),
        )


def _usual_host(resources: dict[str, dict[str, Any]], product: str) -> str | None:
    hosts = Counter(
        str(doc["spec"]["host"])
        for key, doc in resources.items()
        if key.startswith("Route/")
        and isinstance(doc.get("spec"), dict)
        and doc["spec"].get("product") == product
        and doc["spec"].get("host")
    )
    if not hosts:
        return None
    return min(hosts, key=lambda h: (-hosts[h], h))


def observe(client: Client, scope: Scope, settings: AgentsSettings) -> Observation:
    """The environment as it is now, the request, and what recently landed there."""
    revision, resources = client.environment(scope.environment)
    return Observation(
        agent=NAME,
        tenant=scope.tenant,
        environment=scope.environment,
        at=scope.at,
        revision=revision,
        resources=resources,
        request=scope.request,
        recent=client.recent(scope.environment, scope.at - settings.builder.react_within),
    )


BUILDER = Agent(
    name=NAME,
    instructions=INSTRUCTIONS,
    observe=observe,
    planner=lambda _settings: BuilderPlanner(),
    needs_request=True,
)
