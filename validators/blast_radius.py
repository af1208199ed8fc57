"""Blast radius: how much of production one intent would move, as numbers a policy can judge.

The constraints bundle does not read specs; it reads this. :func:`compute` turns
the environment before and after an intent into counts and factors (routes
touched, how far each plan's quota and rate limit move, replica changes, which
tenants and environments, whether network exposure changed and whether it now
admits the whole internet). The pipeline attaches :meth:`BlastRadius.as_dict`
to the decision, so a reviewer sees what the policy saw, and passes
:meth:`BlastRadius.policy_input` to the Rego policy. :class:`BlastRadiusValidator`
puts a one-line summary in the check list and never fails: judging the numbers
is the policy's job, so the limits live in one versioned place.

Pure and defensive: documents may be hand-written YAML or specs the schema
validator is about to reject, so a missing or mistyped field is "unknown" (a
count of 0, a factor of 1.0) and never an exception. The schema check reports
the field; a crash here would hide that report.

Factor rules, chosen to fail closed where the policy sets limits:

* a new plan, or a plan whose old value is unknown, moves by 1.0 (there is no
  baseline to multiply; the plan's absolute limits are the schema's business);
* a limit that was 0 and becomes n moves by n (``burst: 0 → 20`` is a factor of 20), the
  same rule as replicas, so adding capacity from nothing is never a free pass;
* removed plans are not listed: removing capacity is not a raise.
"""

from __future__ import annotations

import ipaddress
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.decision import Check
from validators.base import ValidationContext

Document = Mapping[str, Any]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Factors are finite so the decision stays valid JSON; a ratio too large for a float is this.
MAX_FACTOR = sys.float_info.max
#: IPv4 as seen by a dual-stack listener: a rule covering this covers every IPv4 address.
_V4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_TIMES = "\N{MULTIPLICATION SIGN}"


@dataclass(frozen=True, kw_only=True)
class PlanChange:
    """One plan whose limits an intent sets: before and after, and how far each limit moves."""

    product: str
    plan: str
    quota_before: int | float | None
    quota_after: int | float | None
    quota_factor: float
    rps_factor: float
    burst_factor: float

    @property
    def rate_limit_factor(self) -> float:
        return max(self.rps_factor, self.burst_factor)

    def as_dict(self) -> dict[str, Any]:
        return {
            "product": self.product,
            "plan": self.plan,
            "quota_before": self.quota_before,
            "quota_after": self.quota_after,
            "quota_factor": self.quota_factor,
            "rps_factor": self.rps_factor,
            "burst_factor": self.burst_factor,
        }


@dataclass(frozen=True, kw_only=True)
class PoolChange:
    """A WorkerPool the intent creates, resizes or deletes (0 stands for absent or unknown)."""

    name: str
    replicas_before: int
    replicas_after: int


@dataclass(frozen=True, kw_only=True)
class NetworkChange:
    """How the intent changes who may connect in."""

    #: Some NetworkPolicy's ingress differs (rules, CIDRs or ports; created or deleted too).
    changed: bool = False
    #: After the change, a changed policy admits every IPv4 or every IPv6 address.
    opens_world: bool = False
    #: Smallest prefix length among added CIDRs (the widest new opening); None when none was added.
    widest_prefix: int | None = None
    added_cidrs: tuple[str, ...] = ()
    removed_cidrs: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "opens_world": self.opens_world,
            "widest_prefix": self.widest_prefix,
            "added_cidrs": list(self.added_cidrs),
            "removed_cidrs": list(self.removed_cidrs),
        }


@dataclass(frozen=True, kw_only=True)
class BlastRadius:
    """What an intent touches and by how much. Build it with :func:`compute`."""

    routes_touched: int = 0
    plans: tuple[PlanChange, ...] = ()
    #: Largest quota factor over :attr:`plans`; 1.0 when no plan's limits change.
    quota_factor: float = 1.0
    #: Largest rps or burst factor over :attr:`plans`; 1.0 when no plan's limits change.
    rate_limit_factor: float = 1.0
    pools: tuple[PoolChange, ...] = ()
    replicas_after_max: int = 0
    replica_delta: int = 0
    #: Largest after/before over :attr:`pools` (before 0: after); 1.0 when no pool changes.
    replica_factor: float = 1.0
    tenants: tuple[str, ...] = ()
    environments: tuple[str, ...] = ()
    network: NetworkChange = field(default_factory=NetworkChange)

    def policy_input(self) -> dict[str, Any]:
        """The ``blast_radius`` the Rego policy reads; keep in step with ``constraints/``."""
        return {
            "routes_touched": self.routes_touched,
            "quota_factor": self.quota_factor,
            "rate_limit_factor": self.rate_limit_factor,
            "replicas_after_max": self.replicas_after_max,
            "replica_delta": self.replica_delta,
            "replica_factor": self.replica_factor,
            "tenants": list(self.tenants),
            "environments": list(self.environments),
            "network": self.network.as_dict(),
        }

    def as_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready, for the decision: the policy input plus per-plan and per-pool detail."""
        return {
            **self.policy_input(),
            "plans": [p.as_dict() for p in self.plans],
            "pools": [
                {"name": p.name, "replicas_before": p.replicas_before, "replicas_after": p.replicas_after}
                for p in self.pools
            ],
        }

    def summary(self) -> str:
        """One line for a human, such as (with a multiplication sign for the x):
        ``3 routes, quota x1.5 (payments-api/pro), replicas 4→6 (+2), tenants: acme``."""
        parts: list[str] = []
        if self.routes_touched:
            parts.append(f"{self.routes_touched} route{'' if self.routes_touched == 1 else 's'}")
        if self.quota_factor != 1.0:
            top = max(self.plans, key=lambda p: p.quota_factor)
            parts.append(f"quota {_TIMES}{_fmt(self.quota_factor)} ({top.product}/{top.plan})")
        if self.rate_limit_factor != 1.0:
            top = max(self.plans, key=lambda p: p.rate_limit_factor)
            parts.append(f"rate limit {_TIMES}{_fmt(self.rate_limit_factor)} ({top.product}/{top.plan})")
        if self.plans and self.quota_factor == self.rate_limit_factor == 1.0:
            names = ", ".join(f"{p.product}/{p.plan}" for p in self.plans)
            parts.append(f"plans set: {names}")
        if self.pools:
            before = sum(p.replicas_before for p in self.pools)
            after = sum(p.replicas_after for p in self.pools)
            parts.append(f"replicas {before}→{after} ({self.replica_delta:+d})")
        net = self.network
        if net.changed:
            moved = [f"+{c}" for c in net.added_cidrs[:3]] + [f"-{c}" for c in net.removed_cidrs[:3]]
            more = len(net.added_cidrs) + len(net.removed_cidrs) - len(moved)
            detail = ", ".join(moved) + (f" and {more} more" if more > 0 else "")
            parts.append(f"ingress changed{': ' + detail if detail else ''}")
            if net.opens_world:
                parts.append("ingress open to the whole internet")
        if not parts:
            parts.append("no routes, plans, worker pools or network policies changed")
        if self.tenants:
            parts.append(f"tenants: {', '.join(self.tenants)}")
        return ", ".join(parts)


def compute(
    *,
    before: Mapping[str, Document],
    after: Mapping[str, Document],
    changed: frozenset[str] | set[str],
    tenant: str,
    environment: str,
) -> BlastRadius:
    """The blast radius of going from ``before`` to ``after`` (path → document, as in
    :class:`~validators.base.ValidationContext`), looking only at ``changed`` paths.

    ``tenant`` stands in for a changed resource whose own ``metadata.tenant`` is unreadable.
    """
    routes = 0
    plans: list[PlanChange] = []
    pools: list[PoolChange] = []
    tenants: set[str] = set()
    net_changed = opens_world = False
    added: set[str] = set()
    removed: set[str] = set()
    added_prefixes: list[int] = []

    for path in sorted(changed):
        old, new = _mapping(before.get(path)), _mapping(after.get(path))
        if old is None and new is None:
            continue
        kinds = {_kind(path, old), _kind(path, new)}
        tenants.add(_tenant(new) or _tenant(old) or tenant)
        if "Route" in kinds:
            routes += 1
        if "Product" in kinds:
            plans.extend(_plan_changes(_name(path, new or old), old, new))
        if "WorkerPool" in kinds:
            pools.append(
                PoolChange(
                    name=_name(path, new or old),
                    replicas_before=_count(_spec(old).get("replicas")) or 0,
                    replicas_after=_count(_spec(new).get("replicas")) or 0,
                )
            )
        if "NetworkPolicy" in kinds:
            ingress_old, ingress_new = _spec(old).get("ingress"), _spec(new).get("ingress")
            if ingress_old != ingress_new or (old is None) != (new is None):
                net_changed = True
            cidrs_old, cidrs_new = _cidrs(ingress_old), _cidrs(ingress_new)
            for text in cidrs_new.keys() - cidrs_old.keys():
                added.add(text)
                if (network := cidrs_new[text]) is not None:
                    added_prefixes.append(network.prefixlen)
            removed |= cidrs_old.keys() - cidrs_new.keys()
            if new is not None and _covers_world([n for n in cidrs_new.values() if n is not None]):
                opens_world = True

    return BlastRadius(
        routes_touched=routes,
        plans=tuple(plans),
        quota_factor=max((p.quota_factor for p in plans), default=1.0),
        rate_limit_factor=max((p.rate_limit_factor for p in plans), default=1.0),
        pools=tuple(pools),
        replicas_after_max=max((p.replicas_after for p in pools), default=0),
        replica_delta=sum(p.replicas_after - p.replicas_before for p in pools),
        replica_factor=max((_factor(p.replicas_before, p.replicas_after) for p in pools), default=1.0),
        tenants=tuple(sorted(tenants)),
        environments=(environment,),
        network=NetworkChange(
            changed=net_changed,
            opens_world=opens_world,
            widest_prefix=min(added_prefixes, default=None),
            added_cidrs=tuple(sorted(added)),
            removed_cidrs=tuple(sorted(removed)),
        ),
    )


def from_context(ctx: ValidationContext) -> BlastRadius:
    """:func:`compute` for the intent a validator is looking at."""
    return compute(
        before=ctx.before,
        after=ctx.after,
        changed=ctx.changed,
        tenant=ctx.intent.tenant,
        environment=ctx.intent.environment,
    )


class BlastRadiusValidator:
    """Always passes; its message is the one-line summary a reviewer reads first."""

    name = "blast_radius"

    def check(self, ctx: ValidationContext) -> Check:
        return Check(name=self.name, passed=True, messages=[from_context(ctx).summary()])


# --- reading documents that may be broken ------------------------------------------------------


def _mapping(value: object) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def _spec(document: Mapping[str, Any] | None) -> Mapping[str, Any]:
    spec = document.get("spec") if document is not None else None
    return spec if isinstance(spec, Mapping) else {}


def _kind(path: str, document: Mapping[str, Any] | None) -> str | None:
    if document is None:
        return None
    kind = document.get("kind")
    return kind if isinstance(kind, str) else path.partition("/")[0]


def _metadata(document: Mapping[str, Any] | None, key: str) -> str | None:
    metadata = document.get("metadata") if document is not None else None
    value = metadata.get(key) if isinstance(metadata, Mapping) else None
    return value if isinstance(value, str) else None


def _tenant(document: Mapping[str, Any] | None) -> str | None:
    return _metadata(document, "tenant")


def _name(path: str, document: Mapping[str, Any] | None) -> str:
    return _metadata(document, "name") or path.rpartition("/")[2].removesuffix(".yaml")


def _number(value: object) -> int | float | None:
    """A non-negative finite number, or None (unknown) for anything else, including ``True``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if value >= 0 else None


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _ratio(after: float, before: float) -> float:
    try:
        ratio = after / before
    except OverflowError:
        return MAX_FACTOR
    return min(ratio, MAX_FACTOR)


def _factor(before: int | float | None, after: int | float | None) -> float:
    """``after / before``; 1.0 when either is unknown; ``after`` when ``before`` is 0 (see module doc)."""
    if before is None or after is None:
        return 1.0
    if before == 0:
        return 1.0 if after == 0 else _ratio(after, 1)
    return _ratio(after, before)


def _limits(plan: Mapping[str, Any]) -> tuple[int | float | None, int | float | None, int | float | None]:
    rate = plan.get("rateLimit")
    rate = rate if isinstance(rate, Mapping) else {}
    return _number(plan.get("quota")), _number(rate.get("rps")), _number(rate.get("burst"))


def _plans(document: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    plans = _spec(document).get("plans")
    out: dict[str, Mapping[str, Any]] = {}
    if isinstance(plans, list):
        for plan in plans:
            if isinstance(plan, Mapping) and isinstance(name := plan.get("name"), str):
                out.setdefault(name, plan)  # a duplicate name is the schema's to report
    return out


def _plan_changes(
    product: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
) -> list[PlanChange]:
    before = _plans(old)
    changes: list[PlanChange] = []
    for name, plan in _plans(new).items():
        quota_a, rps_a, burst_a = _limits(plan)
        if name in before:
            quota_b, rps_b, burst_b = _limits(before[name])
            if (quota_b, rps_b, burst_b) == (quota_a, rps_a, burst_a):
                continue
        else:
            quota_b = rps_b = burst_b = None
        changes.append(
            PlanChange(
                product=product,
                plan=name,
                quota_before=quota_b,
                quota_after=quota_a,
                quota_factor=_factor(quota_b, quota_a),
                rps_factor=_factor(rps_b, rps_a),
                burst_factor=_factor(burst_b, burst_a),
            )
        )
    return changes


def _cidrs(ingress: object) -> dict[str, Network | None]:
    """Each rule's CIDR, normalised (``10.0.0.1/8`` → ``10.0.0.0/8``) when it parses; as written otherwise."""
    out: dict[str, Network | None] = {}
    if isinstance(ingress, list):
        for rule in ingress:
            cidr = rule.get("cidr") if isinstance(rule, Mapping) else None
            if not isinstance(cidr, str):
                continue
            try:
                network: Network | None = ipaddress.ip_network(cidr.strip(), strict=False)
            except ValueError:
                network = None
            out[str(network) if network is not None else cidr] = network
    return out


def _covers_world(networks: list[Network]) -> bool:
    """True when the networks together admit every IPv4 or every IPv6 address.

    Collapsing first catches a world split in halves (``0.0.0.0/1`` + ``128.0.0.0/1``), and an IPv6
    rule covering ``::ffff:0:0/96`` admits all of IPv4 on a dual-stack listener.
    """
    v4 = [n for n in networks if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in networks if isinstance(n, ipaddress.IPv6Network)]
    if any(n.prefixlen == 0 for n in ipaddress.collapse_addresses(v4)):
        return True
    return any(n.prefixlen == 0 or n.supernet_of(_V4_MAPPED) for n in ipaddress.collapse_addresses(v6))


def _fmt(factor: float) -> str:
    return f"{factor:.2f}".rstrip("0").rstrip(".")


__all__ = [
    "BlastRadius",
    "BlastRadiusValidator",
    "NetworkChange",
    "PlanChange",
    "PoolChange",
    "compute",
    "from_context",
]
