"""The policy port: what the pipeline asks a policy engine, and what it gets back.

The pipeline builds one *policy input* per intent (shape in
``constraints/README.md``; :func:`example_input` is the smallest complete one)
and asks a :class:`PolicyEngine` to evaluate the bundle's decision,
``data.apx.decision``. Two adapters implement the port:
:class:`validators.rego.RegoPyEngine` (in-process, the default) and
:class:`validators.opa_server.OpaServerEngine` (when ``policy.opa_url`` is set).
Both hand back a :class:`PolicyResult`; :meth:`PolicyResult.from_decision` is
the one place a decision document is read, so the two cannot disagree about
what a well-formed decision is.

Everything here fails closed. An engine that errors, runs past its budget, or
returns a decision that is missing or ill-typed yields
:meth:`PolicyResult.failed_closed` — a single denial with rule
``policy-error`` — never an empty (passing) result.

Pure: no regopy, no HTTP. :mod:`constraints.bundle` loads a :class:`Bundle`
from disk; the adapters compile or push it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from orchestrator.errors import BadInput, InternalError

#: The rule id of the denial an engine failure turns into.
POLICY_ERROR_RULE = "policy-error"
#: Where the decision lives in the bundle (``data.apx.decision``), as a ref and as a path.
DECISION_REF = "data.apx.decision"
DECISION_PATH = "apx/decision"

Effect = Literal["deny", "require_approval"]
_EFFECTS: frozenset[str] = frozenset({"deny", "require_approval"})
_LISTS = ("deny", "require_approval", "warn", "dryrun")


class PolicyLoadError(BadInput):
    """The policy bundle cannot be loaded.

    Raised when a bundle is read or compiled (a bad manifest, data that breaks
    its schema, Rego that does not compile), never during evaluation. ``errors``
    holds one ``file:line: message`` per problem. The caller keeps the bundle
    already in force.
    """

    code = "policy_load"

    def __init__(
        self, message: str | None = None, *, errors: list[str] | None = None, intent_id: str | None = None
    ) -> None:
        super().__init__(message, intent_id=intent_id)
        self.errors = list(errors or [])


class PolicyServerUnavailable(InternalError):
    """The OPA server could not be reached to load the policy bundle."""

    code = "policy_server_unavailable"
    retryable = True


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BundleInfo(_Value):
    """Which bundle decided: what every decision records as its policy version."""

    name: str
    #: Semantic version from the bundle's manifest.
    version: str
    #: sha256 over every file of the bundle (relative path and bytes, in path order).
    sha256: str
    #: Where it was loaded from.
    path: str

    @property
    def label(self) -> str:
        """``apx-default@1.0.0+1a2b3c4d5e6f``: short, and still names the exact content."""
        return f"{self.name}@{self.version}+{self.sha256[:12]}"


@dataclass(frozen=True, kw_only=True)
class Bundle:
    """A loaded policy bundle, ready for an engine to compile or push.

    ``modules`` and ``tests`` map a path relative to the bundle root (used as
    the file name in error messages) to Rego source. ``data`` is the bundle's
    ``data.json`` after the loader's checks, with each waiver's ``expires_ns``
    computed from its RFC 3339 ``expires`` and ``apx.rule_packages`` listed.
    """

    info: BundleInfo
    compat: Literal["backward", "breaking"]
    modules: Mapping[str, str]
    data: Mapping[str, Any]
    tests: Mapping[str, str] = field(default_factory=dict)

    @property
    def has_waivers(self) -> bool:
        """Whether any waiver is configured (only then does the decision read ``input.scope``)."""
        apx = self.data.get("apx")
        return isinstance(apx, Mapping) and bool(apx.get("waivers"))

    @cached_property
    def input_keys(self) -> frozenset[str] | None:
        """The top-level input fields the policies can read, or None for "any of them".

        Found in the modules' code (comments and strings blanked out):
        ``input.<key>`` references. A bare ``input``, ``input[...]`` or
        ``import input`` could read anything, so it means None. Engines send
        only these fields: regopy's cost grows with the input even when no
        rule reads the extra fields (~5 ms to set the 60 changes of a
        60-route intent that the default rules never look at).
        """
        keys: set[str] = set()
        for source in self.modules.values():
            code = code_only(source)
            if _ANY_INPUT.search(code):
                return None
            keys.update(_INPUT_KEY.findall(code))
        return frozenset(keys)


class Violation(_Value):
    """One rule that fired. ``effect`` is what it does when enforced (for warn and
    dry-run items: what it *would* do)."""

    rule: str
    message: str
    effect: Effect


class WaiverUse(_Value):
    """A violation a live waiver set aside; every use is recorded on the decision."""

    rule: str
    message: str
    ticket: str
    reason: str
    #: RFC 3339, as written in the waiver.
    expires: str
    #: ``tenant acme, resource WorkerPool/checkout`` or ``everywhere``.
    scope: str
    tenant: str | None = None
    resource: str | None = None


class PolicyResult(_Value):
    """What the policy decided about one intent.

    ``deny`` rejects, ``require_approval`` routes to a human (a PR even in an
    auto environment), ``warn`` is shown, ``dryrun`` records what a rule in
    dry-run mode would have done. ``error`` is set only when the engine failed,
    in which case ``deny`` holds the ``policy-error`` denial.
    """

    deny: list[Violation]
    require_approval: list[Violation]
    warn: list[Violation]
    dryrun: list[Violation]
    waived: list[WaiverUse]
    error: str | None = None
    elapsed_ms: float = 0.0

    @property
    def allowed(self) -> bool:
        """Nothing denies the intent (it may still need approval)."""
        return not self.deny

    @property
    def needs_approval(self) -> bool:
        return bool(self.require_approval)

    def messages(self) -> list[str]:
        """One line per item, for a decision's check: denials first, then approvals,
        warnings, dry-run findings and waiver uses."""
        lines = [f"{v.message} [{v.rule}]" for v in self.deny]
        lines += [f"needs approval: {v.message} [{v.rule}]" for v in self.require_approval]
        lines += [f"warning: {v.message} [{v.rule}]" for v in self.warn]
        lines += [f"dry-run, would {_verb(v.effect)}: {v.message} [{v.rule}]" for v in self.dryrun]
        lines += [
            f"waived by {w.ticket} ({w.reason}; {w.scope}; until {w.expires}): {w.message} [{w.rule}]"
            for w in self.waived
        ]
        return lines

    @classmethod
    def failed_closed(cls, reason: str, *, elapsed_ms: float = 0.0) -> PolicyResult:
        """The result of an engine that could not decide: one denial, naming why."""
        message = f"the policy could not be evaluated, so the intent is refused: {reason}"
        return cls(
            deny=[Violation(rule=POLICY_ERROR_RULE, message=message, effect="deny")],
            require_approval=[],
            warn=[],
            dryrun=[],
            waived=[],
            error=reason,
            elapsed_ms=elapsed_ms,
        )

    @classmethod
    def from_decision(cls, decision: object, *, elapsed_ms: float) -> PolicyResult:
        """Read a ``data.apx.decision`` document, or fail closed saying what is wrong with it.

        The five lists are required (an engine that drops one would otherwise
        pass silently); extra keys are ignored so a bundle may add its own.
        Items are sorted, so equal decisions compare equal whatever order the
        engine produced them in.
        """
        try:
            return _parse_decision(decision, elapsed_ms=elapsed_ms)
        except _IllFormed as exc:
            return cls.failed_closed(f"the decision is ill-formed: {exc}", elapsed_ms=elapsed_ms)


class PolicyEngine(Protocol):
    """Evaluates one bundle's decision for a policy input. Implementations are
    thread-safe and never raise from :meth:`evaluate`: failures fail closed."""

    @property
    def bundle(self) -> BundleInfo: ...

    def evaluate(self, input: Mapping[str, Any]) -> PolicyResult: ...


def example_input() -> dict[str, Any]:
    """The smallest complete policy input: a one-change dev intent that no default rule objects to.

    ``constraints.bundle.lint`` smoke-evaluates bundles with it, and tests start
    from it. The pipeline builds the real one (contract in ``constraints/README.md``).
    """
    return {
        "intent": {
            "id": "in-example",
            "agent": "builder",
            "tenant": "acme",
            "environment": "dev",
            "mode": "auto",
        },
        "changes": [{"action": "update", "kind": "WorkerPool", "name": "checkout", "tenant": "acme"}],
        "blast": {
            "routes_touched": 0,
            "quota_factor": 1,
            "rate_limit_factor": 1,
            "replicas_after_max": 6,
            "replica_delta": 2,
            "replica_factor": 1.5,
            "tenants": ["acme"],
            "environments": ["dev"],
            "network": {
                "changed": False,
                "opens_world": False,
                "widest_prefix": None,
                "added_cidrs": [],
                "removed_cidrs": [],
            },
        },
        "cumulative": {"window": "1h", "routes": 0, "intents": []},
        "now": "2025-06-01T12:00:00Z",
        "now_ns": 1_748_779_200_000_000_000,
    }


def check_input(input: Mapping[str, Any]) -> list[str]:
    """What is wrong with a policy input, field by field (empty when it meets the contract).

    The engines refuse (fail closed on) an input with problems before asking
    the policy: a rule that reads a missing field is silently undefined, and
    ``scope`` is derived from ``changes``. Fields beyond the contract are
    allowed; documented optional ones are type-checked when present.
    """
    problems: list[str] = []

    def need(path: str, value: object, kind: type | tuple[type, ...], *, optional: bool = False) -> None:
        if value is None and optional:
            return
        if isinstance(value, bool) and kind in ((int, float), int):
            problems.append(f"input.{path} must be a number, not a boolean")
        elif not isinstance(value, kind):
            problems.append(f"input.{path} must be {_NAMES.get(kind, str(kind))}, got {_kind(value)}")

    intent, blast, cumulative = input.get("intent"), input.get("blast"), input.get("cumulative")
    need("intent", intent, Mapping)
    if isinstance(intent, Mapping):
        for key in ("tenant", "environment"):
            need(f"intent.{key}", intent.get(key), str)
        for key in ("id", "agent", "mode"):
            need(f"intent.{key}", intent.get(key), str, optional=True)
    changes = input.get("changes")
    need("changes", changes, list)
    for index, change in enumerate(changes if isinstance(changes, list) else []):
        need(f"changes[{index}]", change, Mapping)
        if isinstance(change, Mapping):
            for key in ("kind", "name"):
                need(f"changes[{index}].{key}", change.get(key), str)
            for key in ("action", "tenant"):
                need(f"changes[{index}].{key}", change.get(key), str, optional=True)
    need("blast", blast, Mapping)
    if isinstance(blast, Mapping):
        for key in ("routes_touched", "quota_factor", "rate_limit_factor", "replicas_after_max"):
            need(f"blast.{key}", blast.get(key), (int, float))
        for key in ("replica_delta", "replica_factor"):
            need(f"blast.{key}", blast.get(key), (int, float), optional=True)
        for key in ("tenants", "environments"):
            need(f"blast.{key}", blast.get(key), list, optional=True)
        network = blast.get("network")
        need("blast.network", network, Mapping)
        if isinstance(network, Mapping):
            for key in ("changed", "opens_world"):
                need(f"blast.network.{key}", network.get(key), bool)
            need("blast.network.widest_prefix", network.get("widest_prefix"), int, optional=True)
            for key in ("added_cidrs", "removed_cidrs"):
                need(f"blast.network.{key}", network.get(key), list, optional=True)
    need("cumulative", cumulative, Mapping)
    if isinstance(cumulative, Mapping):
        need("cumulative.routes", cumulative.get("routes"), (int, float))
        need("cumulative.intents", cumulative.get("intents"), list, optional=True)
        need("cumulative.window", cumulative.get("window"), str, optional=True)
    need("now_ns", input.get("now_ns"), int)
    need("now", input.get("now"), str, optional=True)
    return problems


def policy_document(
    input: Mapping[str, Any], *, scope: bool = True, keys: frozenset[str] | None = None
) -> dict[str, Any]:
    """The input as the engines send it: the caller's fields plus ``scope``, derived here.

    ``scope.tenants`` (the intent's tenant and every change's) and
    ``scope.resources`` (``{kind: ["Kind/name", ...]}``) are what waiver
    scoping needs. Deriving them in Rego means iterating ``changes``, which
    regopy does at ~0.1 ms per object: most of a 60-route evaluation. Engines
    pass ``scope=False`` for a bundle without waivers (nothing reads it), and
    ``keys`` (:attr:`Bundle.input_keys`) to send only the fields the policies
    can read. Call :func:`check_input` first.
    """
    document = dict(input) if keys is None else {k: v for k, v in input.items() if k in keys}
    if not scope:
        return document
    changes = [c for c in input.get("changes", []) if isinstance(c, Mapping)]
    tenants = {str(input["intent"]["tenant"])} | {
        c["tenant"] for c in changes if isinstance(c.get("tenant"), str)
    }
    resources: dict[str, set[str]] = {}
    for change in changes:
        resources.setdefault(str(change["kind"]), set()).add(f"{change['kind']}/{change['name']}")
    document["scope"] = {
        "tenants": sorted(tenants),
        "resources": {k: sorted(v) for k, v in sorted(resources.items())},
    }
    return document


def code_only(source: str) -> str:
    """Rego source with strings and comments blanked out (offsets and line breaks kept),
    for checks that must only see code."""
    return _STRING_OR_COMMENT.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), source)


_STRING_OR_COMMENT = re.compile(r'"(?:\\.|[^"\\\n])*"|`[^`]*`|#[^\n]*')
_INPUT_KEY = re.compile(r"\binput\s*\.\s*([A-Za-z_]\w*)")
_ANY_INPUT = re.compile(r"\binput\b(?!\s*\.)|^\s*import\s+input\b", re.MULTILINE)

_NAMES: dict[Any, str] = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    (int, float): "a number",
    list: "a list",
    Mapping: "an object",
}


def _verb(effect: Effect) -> str:
    return "deny" if effect == "deny" else "require approval"


class _IllFormed(Exception):
    pass


def _parse_decision(decision: object, *, elapsed_ms: float) -> PolicyResult:
    if not isinstance(decision, Mapping):
        raise _IllFormed(f"expected an object with {', '.join((*_LISTS, 'waived'))}, got {_kind(decision)}")
    lists: dict[str, list[Violation]] = {}
    for key in _LISTS:
        items = _items(decision, key)
        lists[key] = sorted(
            (_violation(item, key=key, index=i) for i, item in enumerate(items)),
            key=lambda v: (v.rule, v.message, v.effect),
        )
    waived = sorted(
        (_waiver_use(item, index=i) for i, item in enumerate(_items(decision, "waived"))),
        key=lambda w: (w.rule, w.message, w.ticket),
    )
    return PolicyResult(
        deny=lists["deny"],
        require_approval=lists["require_approval"],
        warn=lists["warn"],
        dryrun=lists["dryrun"],
        waived=waived,
        elapsed_ms=elapsed_ms,
    )


def _items(decision: Mapping[Any, Any], key: str) -> list[Any]:
    if key not in decision:
        raise _IllFormed(f"it has no {key!r} list")
    items = decision[key]
    if not isinstance(items, list):
        raise _IllFormed(f"{key!r} must be a list, got {_kind(items)}")
    return items


def _violation(item: object, *, key: str, index: int) -> Violation:
    where = f"{key}[{index}]"
    obj = _object(item, where)
    effect: str
    if key in _EFFECTS:
        effect = key
    else:
        # warn and dry-run items say what they would do; an unknown or missing effect
        # is reported as a denial, the reading that cannot hide a blocking rule.
        raw = obj.get("effect", "deny")
        effect = raw if isinstance(raw, str) and raw in _EFFECTS else "deny"
    return Violation(
        rule=_text(obj, "rule", where),
        message=_text(obj, "msg", where),
        effect="deny" if effect == "deny" else "require_approval",
    )


def _waiver_use(item: object, *, index: int) -> WaiverUse:
    where = f"waived[{index}]"
    obj = _object(item, where)
    tenant, resource = _optional_text(obj, "tenant", where), _optional_text(obj, "resource", where)
    parts = [f"tenant {tenant}"] if tenant else []
    parts += [f"resource {resource}"] if resource else []
    return WaiverUse(
        rule=_text(obj, "rule", where),
        message=_text(obj, "msg", where),
        ticket=_text(obj, "ticket", where),
        reason=_text(obj, "reason", where),
        expires=_text(obj, "expires", where),
        scope=", ".join(parts) or "everywhere",
        tenant=tenant,
        resource=resource,
    )


def _object(item: object, where: str) -> Mapping[str, Any]:
    if not isinstance(item, Mapping):
        raise _IllFormed(f"{where} must be an object, got {_kind(item)}")
    return item


def _text(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise _IllFormed(f"{where}.{key} must be a string, got {_kind(value)}")
    return value


def _optional_text(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _IllFormed(f"{where}.{key} must be a string or null, got {_kind(value)}")
    return value


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
