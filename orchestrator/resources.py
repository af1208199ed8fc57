"""The ``apx/v1`` schema of every resource kind, and readable messages for its errors.

:mod:`orchestrator.intent` checks only the envelope and keeps each ``spec`` a
plain mapping; this module says what a valid ``spec`` of each kind is. The
schema validator (:mod:`validators.schema`) calls :func:`validate_spec` on every
resource an intent changes, and a failure there is a recorded ``rejected``
decision, not bad input. The models are also the typed view that other checks
(blast radius, constraints input) may read through :func:`typed_spec`.

Models are frozen, ``extra="forbid"`` (a misspelt field is an error, never
silently ignored) and strict (``replicas: "4"`` is an error, not a 4: the data
plane reads the document as written, so what we accept must already be right).

:func:`field_problems` turns a pydantic ``ValidationError`` into one message per
problem, ``path.to[0].field: what is wrong``, without pydantic's URLs; the
parser of intents uses it too, so both speak the same way. Messages made for
decisions never echo string values (a secret pasted into a field must not
reappear in a recorded decision); numbers are echoed because they explain.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import re
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from orchestrator.intent import KINDS, NAME_MAX, NAME_RE

Loc = tuple[str | int, ...]


class SpecFieldError(ValueError):
    """A cross-field rule failed; ``loc`` (relative to the model raising it) names the field to blame.

    Pydantic gives errors raised in a model validator the model's own location;
    :func:`field_problems` appends ``loc`` so the message names the field instead.
    """

    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.loc = loc


# --- field value checks (messages never echo the rejected string) -------------------------------

_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
_HOST_RE = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*")
_DURATION_RE = re.compile(r"([1-9][0-9]*)(s|m|h)")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}
_SEMVER_RE = re.compile(
    r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-((?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)
_TOKEN_RE = re.compile(r"[a-z][a-z0-9-]{0,62}")
_PII_FIELD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")
_PATH_FORBIDDEN = re.compile(r"[\s?#\x00-\x1f\x7f]")
PATH_MAX = 1024


def _name(value: str) -> str:
    if len(value) > NAME_MAX or not NAME_RE.fullmatch(value):
        raise ValueError(
            f"must be a name of at most {NAME_MAX} lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def _hostname(value: str) -> str:
    if len(value) > 253 or not _HOST_RE.fullmatch(value):
        raise ValueError(
            "must be a lowercase DNS hostname like 'api.example.com' (dot-separated labels of "
            "a-z, 0-9 and '-', each at most 63 characters; an optional leading '*.')"
        )
    if value.rsplit(".", 1)[-1].isdigit():
        raise ValueError("must be a DNS hostname, not an IP address")
    return value


def _route_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("must start with '/'")
    if len(value) > PATH_MAX:
        raise ValueError(f"must be at most {PATH_MAX} characters, got {len(value)}")
    if _PATH_FORBIDDEN.search(value):
        raise ValueError("must not contain whitespace, control characters, '?' or '#'")
    if "//" in value or any(seg in (".", "..") for seg in value.split("/")):
        raise ValueError("must not contain empty, '.' or '..' segments")
    return value


def _duration(value: str) -> str:
    if not _DURATION_RE.fullmatch(value):
        raise ValueError("must be a duration like '1s', '30s', '1m' or '1h'")
    return value


def _semver(value: str) -> str:
    if not _SEMVER_RE.fullmatch(value):
        raise ValueError("must be a semantic version like '1.4.0' (MAJOR.MINOR.PATCH, see semver.org)")
    return value


def _token(value: str) -> str:
    if not _TOKEN_RE.fullmatch(value):
        raise ValueError("must be a lowercase code like 'eu' or 'eu-west-1'")
    return value


def _pii_field(value: str) -> str:
    if not _PII_FIELD_RE.fullmatch(value):
        raise ValueError("must be a field name like 'email' or 'card.number'")
    return value


def _cidr(value: str) -> str:
    if "/" not in value:
        raise ValueError("must be a network in CIDR notation like '10.0.0.0/8' (the '/prefix' is missing)")
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError("must be an IPv4 or IPv6 network in CIDR notation like '10.0.0.0/8'") from None
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError:
        # Host bits set usually means a typo in the prefix or the address; guessing which
        # one the author meant could widen the rule, so name the network and let them choose.
        network = ipaddress.ip_network(value, strict=False)
        raise ValueError(f"{value} has host bits set; the network is {network}") from None
    return value


def _unique(items: Sequence[Any], field: str, what: str) -> None:
    first: dict[Any, int] = {}
    for i, item in enumerate(items):
        if item in first:
            raise SpecFieldError((field, i), f"duplicate {what} {item!r}; {field}[{first[item]}] has it too")
        first[item] = i


Name = Annotated[str, AfterValidator(_name)]
Hostname = Annotated[str, AfterValidator(_hostname)]
RoutePath = Annotated[str, AfterValidator(_route_path)]
Duration = Annotated[str, AfterValidator(_duration)]
SemVer = Annotated[str, AfterValidator(_semver)]
Token = Annotated[str, AfterValidator(_token)]
PiiField = Annotated[str, AfterValidator(_pii_field)]
Cidr = Annotated[str, AfterValidator(_cidr)]
Port = Annotated[int, Field(ge=1, le=65535)]


def duration_seconds(value: str) -> int:
    """Seconds in a duration string accepted by the schema (``'1m'`` → 60)."""
    match = _DURATION_RE.fullmatch(value)
    if not match:
        raise ValueError(f"not a duration: {value!r}")
    return int(match.group(1)) * _DURATION_UNITS[match.group(2)]


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


# --- Product ------------------------------------------------------------------------------------


class RateLimit(_Spec):
    """How fast one consumer of a plan may call: a token bucket of ``rps`` plus ``burst``."""

    rps: int = Field(gt=0, description="Sustained rate allowed, in requests per second.")
    burst: int = Field(
        ge=0, description="Requests allowed above `rps` in a short spike (extra bucket size); 0 = no burst."
    )
    window: Duration = Field(
        description="Window over which the rate is measured, a duration like '1s', '30s', '1m' or '1h'."
    )

    @property
    def window_seconds(self) -> int:
        return duration_seconds(self.window)


class Plan(_Spec):
    """One way to buy a product: its limits and how isolated its traffic is."""

    name: Name = Field(description="Plan name, unique within the product, e.g. 'free', 'pro'.")
    rateLimit: RateLimit = Field(description="Per-consumer request rate limit.")
    quota: int = Field(gt=0, description="Requests allowed per consumer per day.")
    isolation: Literal["shared", "namespace", "dedicated"] = Field(
        description="Where the plan's traffic runs: shared workers, its own namespace, or dedicated workers."
    )


class ProductSpec(_Spec):
    plans: list[Plan] = Field(min_length=1, description="The plans on offer; at least one, names unique.")
    residency: Token = Field(
        description="Jurisdiction the product's data must stay in, a lowercase code like 'eu' or 'us'."
    )
    regionAffinity: list[Token] = Field(
        default_factory=list,
        description="Regions to run in, in order of preference, e.g. ['eu-west-1']; empty = any region.",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> ProductSpec:
        first: dict[str, int] = {}
        for i, plan in enumerate(self.plans):
            if plan.name in first:
                raise SpecFieldError(
                    ("plans", i, "name"),
                    f"duplicate plan name {plan.name!r}; plans[{first[plan.name]}] has it",
                )
            first[plan.name] = i
        _unique(self.regionAffinity, "regionAffinity", "region")
        return self

    def plan(self, name: str) -> Plan | None:
        return next((p for p in self.plans if p.name == name), None)


# --- Route --------------------------------------------------------------------------------------


class Canary(_Spec):
    weight: int = Field(
        default=0, ge=0, le=100, description="Percent of the route's traffic sent to the canary; 0 = none."
    )


class RouteSpec(_Spec):
    host: Hostname = Field(description="DNS hostname the route answers on, e.g. 'api.acme.example'.")
    path: RoutePath = Field(description="URL path prefix, starting with '/', e.g. '/v1/refunds'.")
    product: Name = Field(description="Name of the Product (in the same environment) this route serves.")
    auth: Literal["required", "none"] = Field(
        description="Whether callers must authenticate ('none' only for public probes and docs)."
    )
    canary: Canary = Field(default_factory=Canary, description="Canary traffic split; default none.")
    plan: Name | None = Field(
        default=None,
        description="A plan of the product whose limits apply on this route; default: the caller's plan.",
    )


# --- PolicyBundle -------------------------------------------------------------------------------


class BundleRateLimit(_Spec):
    algorithm: Literal["token_bucket", "sliding_window", "fixed_window"] = Field(
        description="How the data plane counts requests against rate limits."
    )


class Observability(_Spec):
    sampleRate: float = Field(
        ge=0, le=1, allow_inf_nan=False, description="Fraction of requests traced, 0.0 (none) to 1.0 (all)."
    )
    piiSafe: bool = Field(
        description="True when telemetry must be free of PII: the `piiFields` are redacted."
    )
    piiFields: list[PiiField] = Field(
        default_factory=list, description="Request/response fields that hold PII, e.g. ['email']."
    )

    @model_validator(mode="after")
    def _unique_fields(self) -> Observability:
        _unique(self.piiFields, "piiFields", "field")
        return self


class PolicyBundleSpec(_Spec):
    version: SemVer = Field(description="Semantic version of the bundle, MAJOR.MINOR.PATCH.")
    compat: Literal["backward", "breaking"] = Field(
        description="Whether this version keeps accepting what the previous one accepted."
    )
    rateLimit: BundleRateLimit = Field(description="Rate-limiting behaviour of the data plane.")
    observability: Observability = Field(description="Tracing and PII handling.")


# --- WorkerPool ---------------------------------------------------------------------------------


class WorkerPoolSpec(_Spec):
    replicas: int = Field(ge=0, description="Workers to run now (count).")
    minReplicas: int = Field(ge=0, description="Fewest workers the autoscaler may run (count).")
    maxReplicas: int = Field(ge=0, description="Most workers the autoscaler may run (count).")
    accelerator: Literal["none", "gpu"] = Field(description="Hardware accelerator per worker.")
    spot: bool = Field(description="Run on spot/preemptible capacity (cheaper, may be reclaimed).")

    @model_validator(mode="after")
    def _bounds(self) -> WorkerPoolSpec:
        if self.minReplicas > self.maxReplicas:
            raise SpecFieldError(
                ("minReplicas",), f"must be ≤ maxReplicas ({self.maxReplicas}), got {self.minReplicas}"
            )
        if self.replicas > self.maxReplicas:
            raise SpecFieldError(
                ("replicas",), f"must be ≤ maxReplicas ({self.maxReplicas}), got {self.replicas}"
            )
        if self.replicas < self.minReplicas:
            raise SpecFieldError(
                ("replicas",), f"must be ≥ minReplicas ({self.minReplicas}), got {self.replicas}"
            )
        return self


# --- NetworkPolicy ------------------------------------------------------------------------------


class IngressRule(_Spec):
    cidr: Cidr = Field(
        description="Source network allowed in, CIDR notation without host bits, e.g. '10.0.0.0/8'."
    )
    ports: list[Port] = Field(min_length=1, description="Destination TCP ports allowed, 1-65535, unique.")

    @model_validator(mode="after")
    def _unique_ports(self) -> IngressRule:
        _unique(self.ports, "ports", "port")
        return self

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.cidr)


class NetworkPolicySpec(_Spec):
    ingress: list[IngressRule] = Field(
        description="Allowed inbound traffic; anything not listed is denied (an empty list denies all)."
    )


SpecModel = ProductSpec | RouteSpec | PolicyBundleSpec | WorkerPoolSpec | NetworkPolicySpec

SPEC_MODELS: dict[str, type[SpecModel]] = {
    "Product": ProductSpec,
    "Route": RouteSpec,
    "PolicyBundle": PolicyBundleSpec,
    "WorkerPool": WorkerPoolSpec,
    "NetworkPolicy": NetworkPolicySpec,
}


def typed_spec(kind: str, spec: object) -> SpecModel:
    """The spec as its kind's model; raises ``KeyError`` (unknown kind) or pydantic's ``ValidationError``."""
    return SPEC_MODELS[kind].model_validate(spec)


def validate_spec(kind: str, spec: object) -> list[str]:
    """Every problem of ``spec`` as a ``kind``, one message each (``spec.replicas: …``); empty when valid."""
    model = SPEC_MODELS.get(kind)
    if model is None:
        return [f"kind: unknown kind; expected one of {', '.join(KINDS)}"]
    if spec is None:
        return ["spec: required field is missing"]
    try:
        model.model_validate(spec)
    except ValidationError as exc:
        return [str(p) for p in field_problems(exc, model=model, prefix=("spec",))]
    return []


# --- readable pydantic errors -------------------------------------------------------------------


@dataclass(frozen=True)
class FieldProblem:
    """One validation problem: where (``loc``, for locating it in a source file) and what."""

    loc: Loc
    message: str

    @property
    def path(self) -> str:
        return format_loc(self.loc)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.loc else self.message


def format_loc(loc: Sequence[str | int]) -> str:
    """``('spec', 'plans', 1, 'rps')`` → ``spec.plans[1].rps``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


_COMPARISONS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "multiple_of"}
_MAPPING_TYPES = {"model_type", "model_attributes_type", "dict_type"}
_STRING_ECHO_MAX = 40


def field_problems(
    exc: ValidationError,
    *,
    model: type[BaseModel] | None = None,
    prefix: Loc = (),
    echo_strings: bool = False,
) -> list[FieldProblem]:
    """One :class:`FieldProblem` per pydantic error, in pydantic's order.

    ``model`` (the validated class) lets an unknown field's message list the
    known ones; ``prefix`` is prepended to every location (``('spec',)`` for a
    spec validated on its own). ``echo_strings`` allows quoting short rejected
    strings, for messages that go back only to whoever sent them.
    """
    problems: list[FieldProblem] = []
    for err in exc.errors():
        loc: Loc = tuple(p for p in err["loc"] if p != "[key]")
        kind = err["type"]
        value = err.get("input")
        ctx = err.get("ctx") or {}
        cause = ctx.get("error")
        if kind in ("value_error", "assertion_error") and isinstance(cause, BaseException):
            message = str(cause)
            if isinstance(cause, SpecFieldError):
                loc += cause.loc
        elif kind == "missing":
            message = "required field is missing"
        elif kind == "extra_forbidden":
            message = _unknown_field(model, loc)
        elif kind in ("too_short", "too_long") and "actual_length" in ctx:
            bound = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
            items = "item" if bound == 1 else "items"
            most = "least" if kind == "too_short" else "most"
            message = f"must have at {most} {bound} {items}, got {ctx['actual_length']}"
        elif kind in _MAPPING_TYPES:
            message = f"must be a mapping, got {_describe(value, echo_strings=echo_strings)}"
        elif kind.endswith(("_type", "_parsing")) or kind == "literal_error":
            message = err["msg"]
            if not (kind == "literal_error" and isinstance(value, str) and not echo_strings):
                message += f", got {_describe(value, echo_strings=echo_strings)}"
        elif kind in _COMPARISONS and isinstance(value, int | float) and not isinstance(value, bool):
            message = f"{err['msg']}, got {_describe(value, echo_strings=False)}"
        else:
            message = err["msg"]
        if "[key]" in err["loc"]:
            message = f"(a key) {message}"
        problems.append(FieldProblem(loc=prefix + loc, message=" ".join(message.split())))
    return problems


def _describe(value: Any, *, echo_strings: bool) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return json.dumps(value)
    if isinstance(value, float):
        return json.dumps(value) if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        if echo_strings and len(value) <= _STRING_ECHO_MAX:
            return repr(value)
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _unknown_field(model: type[BaseModel] | None, loc: Loc) -> str:
    fields = _fields_at(model, loc[:-1]) if model is not None else None
    if not fields:
        return "unknown field"
    field = str(loc[-1]) if loc else ""
    close = difflib.get_close_matches(field, fields, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown field; {hint}expected one of: {', '.join(fields)}"


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str] | None:
    """Field names of the model found by following ``loc`` through annotations, if it leads to one."""
    annotation: Any = model
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(part, str) and isinstance(annotation, type) and issubclass(annotation, BaseModel):
            info = annotation.model_fields.get(part)
            if info is None:
                return None
            annotation = info.annotation
        elif isinstance(part, int) and get_origin(annotation) in (list, tuple):
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) in (dict, Mapping):
            annotation = get_args(annotation)[1]
        else:
            return None
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return None


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated[...]`` and ``X | None`` to the type that holds the fields."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation
