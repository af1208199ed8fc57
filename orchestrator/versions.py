"""Older ``apiVersion``\\s of the resource kinds, and how each is upgraded to ``apx/v1`` (schema evolution).

The platform rule: a version is deprecated with an announcement, dual-supported
for two releases, and broken only in a major release. So apx keeps *reading*
``apx/v1alpha1`` — every resource is upgraded to ``apx/v1`` as it is read, and a
deprecation warning says so — while everything apx *writes* (commits, PR
branches, dedupe keys) is ``apx/v1``. Callers:

* :class:`orchestrator.intent.Resource` upgrades an old resource's ``spec`` when
  an intent is parsed, so the schema validator, the changeset planner and
  dedupe only ever see ``apx/v1``; :meth:`~orchestrator.intent.Intent.deprecations`
  gives the warnings for the decision.
* :func:`orchestrator.changeset.parse_environment` upgrades old files read from
  the config repo; :func:`orchestrator.changeset.environment_deprecations` names them.
* :func:`orchestrator.schema_tools.migrate_environment` (``apx migrate``) rewrites
  a branch with :func:`upgrade`; :func:`orchestrator.schema_tools.export_json_schemas`
  (``apx schema export``) exports :data:`SPEC_MODELS` of every version.

What changed from ``apx/v1alpha1`` to ``apx/v1`` (see ``docs/reference/api-versions.md``):
WorkerPool's ``instances`` + ``autoscale: {min, max}`` became ``replicas``,
``minReplicas``, ``maxReplicas`` and ``gpu: bool`` became ``accelerator: gpu|none``;
Route's ``auth: bool`` became ``auth: required|none`` and ``canaryPercent`` became
``canary: {weight}``. v1 also made the fields v1alpha1 defaulted explicit
(``auth``, ``accelerator``, ``spot``), so nobody exposes a route or buys GPUs by
omission; the upgrade writes the old defaults out. The other kinds did not change.

:func:`upgrade` is total on mappings and never drops data: a value it cannot
translate (``gpu: "yes"``, an ``autoscale`` that is not a mapping, ``instances``
next to ``replicas``) is left where it is, so the ``apx/v1`` schema rejects it by
name rather than the upgrade guessing. Schema errors therefore name the
*upgraded* (``apx/v1``) field, e.g. ``spec.maxReplicas`` for ``spec.autoscale.max``;
:data:`FIELD_CHANGES` is the table to read them back.

Pure: no I/O, no clock. :mod:`orchestrator.intent` imports this module lazily,
inside the functions that need it, because this module needs
:mod:`orchestrator.resources`, which needs :mod:`orchestrator.intent`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.intent import API_VERSION, KINDS
from orchestrator.resources import (
    Hostname,
    Name,
    NetworkPolicySpec,
    PolicyBundleSpec,
    ProductSpec,
    RoutePath,
    RouteSpec,
    SpecFieldError,
    WorkerPoolSpec,
)

V1ALPHA1 = "apx/v1alpha1"
#: Every version apx reads, oldest first; the last one is what apx writes.
VERSIONS = (V1ALPHA1, API_VERSION)


@dataclass(frozen=True)
class Deprecation:
    """When a version was announced as deprecated and the first release that stops reading it.

    ``removed_in`` must be a major release at least two releases after
    ``deprecated_in`` (the platform rule; a unit test holds it to that).
    """

    api_version: str
    deprecated_in: str
    removed_in: str


#: apx 0.1 is the release that made ``apx/v1`` current. Two releases of dual support
#: (0.2, 0.3), then the next major: 1.0.
DEPRECATIONS: dict[str, Deprecation] = {
    V1ALPHA1: Deprecation(api_version=V1ALPHA1, deprecated_in="0.1", removed_in="1.0"),
}


class UnknownApiVersion(ValueError):
    """The document's apiVersion (or its kind at that version) is not one apx reads."""


# --- apx/v1alpha1 models ------------------------------------------------------------------------
# Only what differs from v1 is modelled anew; unchanged kinds reuse the v1 spec models.
# They are what `apx schema export` publishes for v1alpha1; reading goes through `upgrade`.


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Autoscale(_Spec):
    """apx/v1alpha1 autoscaler bounds; apx/v1 flattened them into `minReplicas` and `maxReplicas`."""

    min: int = Field(ge=0, description="Fewest workers the autoscaler may run (count).")
    max: int = Field(ge=0, description="Most workers the autoscaler may run (count).")


class WorkerPoolSpecV1Alpha1(_Spec):
    """A WorkerPool at apx/v1alpha1: `instances`, an optional `autoscale`, a `gpu` flag."""

    instances: int = Field(ge=0, description="Workers to run now (count). apx/v1: replicas.")
    autoscale: Autoscale | None = Field(
        default=None,
        description="Autoscaler bounds; absent = fixed at `instances`. apx/v1: minReplicas, maxReplicas.",
    )
    gpu: bool = Field(default=False, description="One GPU per worker. apx/v1: accelerator (gpu|none).")
    spot: bool = Field(default=False, description="Run on spot/preemptible capacity.")

    @model_validator(mode="after")
    def _bounds(self) -> WorkerPoolSpecV1Alpha1:
        if self.autoscale is None:
            return self
        low, high = self.autoscale.min, self.autoscale.max
        if low > high:
            raise SpecFieldError(("autoscale", "min"), f"must be ≤ autoscale.max ({high}), got {low}")
        if not low <= self.instances <= high:
            raise SpecFieldError(
                ("instances",), f"must be within autoscale.min..max ({low}..{high}), got {self.instances}"
            )
        return self


class RouteSpecV1Alpha1(_Spec):
    """A Route at apx/v1alpha1: `auth` as a flag and `canaryPercent` as a plain number."""

    host: Hostname = Field(description="DNS hostname the route answers on, e.g. 'api.acme.example'.")
    path: RoutePath = Field(description="URL path prefix, starting with '/', e.g. '/v1/refunds'.")
    product: Name = Field(description="Name of the Product (in the same environment) this route serves.")
    auth: bool = Field(
        default=True, description="Whether callers must authenticate. apx/v1: auth (required|none)."
    )
    canaryPercent: int = Field(
        default=0, ge=0, le=100, description="Percent of traffic sent to the canary. apx/v1: canary.weight."
    )
    plan: Name | None = Field(default=None, description="A plan of the product whose limits apply here.")


#: version → kind → the spec model of that kind at that version.
SPEC_MODELS: dict[str, dict[str, type[BaseModel]]] = {
    V1ALPHA1: {
        "Product": ProductSpec,
        "Route": RouteSpecV1Alpha1,
        "PolicyBundle": PolicyBundleSpec,
        "WorkerPool": WorkerPoolSpecV1Alpha1,
        "NetworkPolicy": NetworkPolicySpec,
    },
    API_VERSION: {
        "Product": ProductSpec,
        "Route": RouteSpec,
        "PolicyBundle": PolicyBundleSpec,
        "WorkerPool": WorkerPoolSpec,
        "NetworkPolicy": NetworkPolicySpec,
    },
}


@dataclass(frozen=True)
class FieldChange:
    """One row of the field mapping between two versions (for the docs and for reading errors back)."""

    kind: str
    old: str
    new: str
    how: str


FIELD_CHANGES: dict[str, tuple[FieldChange, ...]] = {
    V1ALPHA1: (
        FieldChange("WorkerPool", "spec.instances", "spec.replicas", "same value"),
        FieldChange("WorkerPool", "spec.autoscale.min", "spec.minReplicas", "same value"),
        FieldChange("WorkerPool", "spec.autoscale.max", "spec.maxReplicas", "same value"),
        FieldChange(
            "WorkerPool",
            "spec.autoscale (absent)",
            "spec.minReplicas, spec.maxReplicas",
            "both set to `instances` (a fixed-size pool)",
        ),
        FieldChange(
            "WorkerPool", "spec.gpu", "spec.accelerator", "`true` → `gpu`, `false` or absent → `none`"
        ),
        FieldChange("WorkerPool", "spec.spot", "spec.spot", "absent → `false` (required in apx/v1)"),
        FieldChange("Route", "spec.auth", "spec.auth", "`true` or absent → `required`, `false` → `none`"),
        FieldChange("Route", "spec.canaryPercent", "spec.canary.weight", "same value; absent → no `canary`"),
    ),
}


# --- upgrade ------------------------------------------------------------------------------------

_SpecStep = Callable[[dict[str, Any]], dict[str, Any]]


def _in_order(spec: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """The model's fields first, in its order, then anything else as it came: small, stable diffs."""
    known = [k for k in model.model_fields if k in spec]
    return {k: spec[k] for k in [*known, *(k for k in spec if k not in model.model_fields)]}


def _worker_pool_v1alpha1(spec: dict[str, Any]) -> dict[str, Any]:
    out = dict(spec)
    # Each rename happens only when its target is free: with both present, the old key stays
    # and apx/v1 rejects it as unknown, rather than one value silently winning.
    if "instances" in out and "replicas" not in out:
        out["replicas"] = out.pop("instances")
        if "autoscale" not in out:
            out.setdefault("minReplicas", out["replicas"])
            out.setdefault("maxReplicas", out["replicas"])
    autoscale = out.get("autoscale")
    if isinstance(autoscale, Mapping) and not {"minReplicas", "maxReplicas"} & out.keys():
        rest = dict(autoscale)
        for old, new in (("min", "minReplicas"), ("max", "maxReplicas")):
            if old in rest:
                out[new] = rest.pop(old)
        if rest:
            out["autoscale"] = rest
        else:
            del out["autoscale"]
    if "accelerator" not in out:
        gpu = out.pop("gpu", False)
        out["accelerator"] = "gpu" if gpu is True else "none" if gpu is False else gpu
    out.setdefault("spot", False)
    return _in_order(out, WorkerPoolSpec)


def _route_v1alpha1(spec: dict[str, Any]) -> dict[str, Any]:
    out = dict(spec)
    auth = out.get("auth", True)
    out["auth"] = "required" if auth is True else "none" if auth is False else auth
    if "canaryPercent" in out and "canary" not in out:
        out["canary"] = {"weight": out.pop("canaryPercent")}
    return _in_order(out, RouteSpec)


#: version → (the version it upgrades to, kind → spec step); kinds not listed keep their spec.
#: A chain, so a future ``apx/v2`` adds one step and older documents walk through every one.
_STEPS: dict[str, tuple[str, dict[str, _SpecStep]]] = {
    V1ALPHA1: (API_VERSION, {"WorkerPool": _worker_pool_v1alpha1, "Route": _route_v1alpha1}),
}


def upgrade(document: Mapping[str, Any]) -> dict[str, Any]:
    """One resource document (``apiVersion``, ``kind``, ``metadata``, ``spec``) as ``apx/v1``.

    Returns a new mapping (the input is not changed); an ``apx/v1`` document
    comes back equal to itself. A ``spec`` that is missing or not a mapping is
    left as it is for the schema to report. Raises :class:`UnknownApiVersion`
    for a version apx does not read, or a kind that version does not have.
    """
    version, kind = document.get("apiVersion"), document.get("kind")
    out = copy.deepcopy(dict(document))
    if version == API_VERSION:
        return out
    if version not in _STEPS:
        raise UnknownApiVersion(f"unknown apiVersion {version!r}; expected one of {', '.join(VERSIONS)}")
    if kind not in KINDS:
        raise UnknownApiVersion(f"{version} has no kind {kind!r}; expected one of {', '.join(KINDS)}")
    while version != API_VERSION:
        version, steps = _STEPS[version]
        step = steps.get(kind)
        spec = out.get("spec")
        if step is not None and isinstance(spec, Mapping):
            out["spec"] = step(dict(spec))
    out["apiVersion"] = API_VERSION
    return out


def upgrade_spec(api_version: str, kind: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Just the ``spec`` of a ``kind`` at ``api_version``, as ``apx/v1``; see :func:`upgrade`."""
    upgraded: dict[str, Any] = upgrade({"apiVersion": api_version, "kind": kind, "spec": spec})["spec"]
    return upgraded


def is_current(api_version: object) -> bool:
    return api_version == API_VERSION


def is_deprecated(api_version: object) -> bool:
    """Read, but upgraded on read: one of :data:`DEPRECATIONS`."""
    return isinstance(api_version, str) and api_version in DEPRECATIONS


def deprecation(api_version: str, kind: str, *, environment: str | None = None) -> str | None:
    """The warning for a ``kind`` read at ``api_version``, or None when that is the current version.

    With ``environment`` (the resource was read from that environment's branch)
    the fix is ``apx migrate``; without it (an agent submitted it in an intent)
    the fix is to submit ``apx/v1``. Raises :class:`UnknownApiVersion` for a
    version apx does not read.
    """
    if api_version == API_VERSION:
        return None
    info = DEPRECATIONS.get(api_version)
    if info is None:
        raise UnknownApiVersion(f"unknown apiVersion {api_version!r}; expected one of {', '.join(VERSIONS)}")
    fix = (
        f"rewrite with `apx migrate --env {environment}`"
        if environment
        else f"submit {API_VERSION} instead (field mapping: docs/reference/api-versions.md)"
    )
    return (
        f"{kind} {api_version} is deprecated since apx {info.deprecated_in}: read as {API_VERSION}; "
        f"{fix}; support ends in apx {info.removed_in}"
    )
