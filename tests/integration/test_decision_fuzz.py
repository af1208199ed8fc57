"""Fuzz the whole decision path: arbitrary intent-shaped input through the real orchestrator.

The parser is fuzzed on its own (``tests/unit/test_parsing.py``) and so are single
validators; this drives what a user submits through everything after it, on one real
home (SQLite, a signed git config repo, regopy): envelope checks, admission, the secret
scan, sequencing and the dry run of the whole environment, the schema and reference
checks, blast radius, the Rego policy, and the route to a commit or a PR branch.

Examples start from the seeded environment's real resources and mutate them (wrong
types, missing and extra fields, huge, negative and NaN-ish values, path tricks in
names, unknown kinds and tenants, open CIDRs, dangling Route→Product references,
many changes at once), so a good share get past the schema to the dry run and Rego.
Each goes in either as text through :func:`parse_intent` (the CLI and API path) or
as a Python mapping through ``Intent.model_validate`` (the in-process client path,
which may carry values JSON cannot: NaN, huge integers).

What a user relies on, checked on every example: only bad-input errors for a
malformed envelope; never a ``failed`` decision; a rejection says why and which check
failed; an applied change is a verified signed commit whose branch still reads as
valid resources; a refusal leaves every branch where it was; a planted secret never
comes back in the decision, the intent log or the log file.
"""

from __future__ import annotations

import copy
import json
import random
import string
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from orchestrator.bootstrap import App, build
from orchestrator.decision import Decision, Status
from orchestrator.errors import BadInput
from orchestrator.home import init_home
from orchestrator.intent import Intent, ResourceKey
from orchestrator.parsing import parse_intent, parse_resource_document
from orchestrator.resources import validate_spec
from orchestrator.seed import seed_files
from orchestrator.settings import load_settings
from orchestrator.testing import FrozenClock

#: Examples of the one fuzz test: enough to reach every validator with junk, few enough
#: that the module stays within a few seconds' share of the CI budget.
EXAMPLES = 120

SEED: dict[str, dict[str, Any]] = {path: yaml.safe_load(text) for path, text in seed_files().items()}
ROUTES = sorted(p for p in SEED if p.startswith("Route/"))
#: A few of each kind to start from (all 60 Routes only in the bulk change).
STARTS = [
    "Product/payments-api.yaml",
    "WorkerPool/checkout.yaml",
    "NetworkPolicy/edge.yaml",
    "PolicyBundle/default.yaml",
    "Route/payments-healthz.yaml",
    "Route/payments-v1-charges.yaml",
    "Route/payments-v1-invoices.yaml",
]
SPARE_ROUTES = [p for p in ROUTES if p not in STARTS]
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

# --- values -------------------------------------------------------------------------------------

#: Names that break the envelope (path tricks, too long, not DNS labels).
BAD_NAMES = ["../x", "a/b", "..", ".hidden", "x" * 64, "ünïcode", "Upper", "-lead", "", "new\nline"]
KIND_NAMES = ["Product", "Route", "WorkerPool", "PolicyBundle", "NetworkPolicy"]
CIDRS = [
    "10.0.0.0/8",
    "10.1.0.0/16",
    "0.0.0.0/0",
    "::/0",
    "0.0.0.0/1",
    "128.0.0.0/1",
    "::ffff:0:0/96",
    "10.0.0.1/8",
    "10.0.0.0",
    "300.0.0.0/8",
    "2001:db8::/32",
    "10.0.0.0/33",
    " 10.0.0.0/8",
]
#: Values that fit the field's type, some valid and some only nearly: by field name.
STRINGS: dict[str, list[str]] = {
    "host": [
        "api.acme.example",
        "*.acme.example",
        "API.acme.example",
        "10.0.0.1",
        "a" * 64 + ".example",
        "ex ample",
    ],
    "path": [
        "/v1/new",
        "/v1/charges",
        "/",
        "/../etc",
        "//x",
        "/a/./b",
        "no-slash",
        "/x?y",
        "/" + "a" * 1100,
        "/ünï",
    ],
    "product": ["payments-api", "payments-api", "missing-product", "../x", "Payments-API"],
    "plan": ["free", "pro", "enterprise", "platinum"],
    "name": ["free", "pro", "enterprise", "new-plan", "Free"],
    "cidr": CIDRS,
    "window": ["1s", "30s", "1m", "1h", "0s", "1d", "-1s", "1 s"],
    "version": ["1.0.1", "2.0.0", "1.0.0", "1.0", "v1.0.0", "1.0.0-rc.1+build.5", "01.0.0"],
    "residency": ["eu", "us", "EU", "eu-west-1", "e"],
    "isolation": ["shared", "namespace", "dedicated", "none"],
    "auth": ["required", "none", "optional"],
    "accelerator": ["none", "gpu", "tpu"],
    "algorithm": ["token_bucket", "sliding_window", "leaky_bucket"],
    "compat": ["backward", "breaking", "forward"],
}
INTS = [0, 1, 2, 3, 4, 5, 10, 19, 20, 21, 50, 99, 100, 101, 150, 443, 8443, 65535, 65536]
BIG_INTS = [10_000, 20_000, 20_001, 1_000_000, 3_000_000, 50_000_000, 2**31, 2**53 - 1, -1, -100]
#: Anything JSON text can carry (integers within the parser's ±2**53), but for a lone
#: surrogate (``"\ud800"``), which is pinned by its own test below.
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        ["NaN", "nan", "Infinity", "-inf", "1e309", "", " ", "0x10", "4", "true", "\x00", "\u202e"]
    ),
    st.text(max_size=12),
    st.lists(st.integers(min_value=-5, max_value=5), max_size=3),
    st.dictionaries(st.sampled_from(["a", "spec", "replicas", "$ref"]), st.integers(0, 3), max_size=2),
)
#: Only for the in-process path (``Intent.model_validate``): values JSON text cannot hold.
PYTHON_ONLY = st.sampled_from([float("nan"), float("inf"), -float("inf"), 10**400, -(10**30), 2**64])
EXTRA_KEYS = ["replica", "Replicas", "extra", "spec", "plans ", "ingress", "$schema", "__proto__"]


def _secret(rng: random.Random) -> str:
    """A credential of a real shape with a random body (built here, so no file holds one)."""
    alnum = string.ascii_letters + string.digits
    upper = string.ascii_uppercase + string.digits
    shapes = [
        lambda: "AKIA" + "".join(rng.choice(upper) for _ in range(16)),
        lambda: "ghp" + "_" + "".join(rng.choice(alnum) for _ in range(36)),
        lambda: "sk" + "_live_" + "".join(rng.choice(alnum) for _ in range(24)),
    ]
    return rng.choice(shapes)()


# --- strategies ---------------------------------------------------------------------------------


def _paths(value: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every path into a spec (mappings and lists), the containers themselves included."""
    if prefix:
        yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*prefix, i))


def _get(spec: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        spec = spec[part]
    return spec


@st.composite
def _plausible(draw: st.DrawFn, path: tuple[str | int, ...], old: Any, *, python: bool) -> Any:
    """A value for ``path``: of its type and often valid, or (one time in five) junk."""
    field = next((p for p in reversed(path) if isinstance(p, str)), "")
    if draw(st.integers(0, 4)) == 0:
        return draw(st.one_of(JUNK, PYTHON_ONLY) if python else JUNK)
    if isinstance(old, bool):
        return draw(st.booleans())
    if isinstance(old, int):
        scale = BIG_INTS if field in ("quota", "rps", "burst") else INTS
        return draw(st.one_of(st.sampled_from(scale), st.integers(min_value=-2, max_value=120)))
    if isinstance(old, float):
        return draw(st.sampled_from([0.0, 0.25, 1.0, 1.5, -0.1, 1e-300]))
    if isinstance(old, str):
        return draw(st.one_of(st.sampled_from(STRINGS.get(field) or [old]), st.text(max_size=8)))
    if isinstance(old, list) and old:
        # Another copy of an item (duplicate plan names, ports, rules), or an open door.
        if field == "ingress" and draw(st.booleans()):
            return [*old, {"cidr": draw(st.sampled_from(CIDRS)), "ports": [443]}]
        return [*old, copy.deepcopy(old[draw(st.integers(0, len(old) - 1))])]
    return draw(JUNK)


@st.composite
def _tuned(draw: st.DrawFn, kind: str, spec: dict[str, Any]) -> None:
    """A valid edit of the kind the policy judges: replicas, limits, ingress, canaries."""
    if kind == "WorkerPool":
        replicas = draw(st.one_of(st.sampled_from([0, 99, 100, 101, 150]), st.integers(1, 60)))
        spec.update(replicas=replicas, minReplicas=min(2, replicas), maxReplicas=max(20, replicas))
    elif kind == "Product":
        plan = spec["plans"][draw(st.integers(0, len(spec["plans"]) - 1))]
        field = draw(st.sampled_from(["quota", "rps", "burst"]))
        factor = draw(st.one_of(st.sampled_from([2, 2.01, 3, 10]), st.floats(0.1, 2)))
        holder = plan if field == "quota" else plan["rateLimit"]
        holder[field] = max(1, int(holder[field] * factor))
    elif kind == "NetworkPolicy":
        opened = draw(
            st.sampled_from([["10.1.0.0/16"], ["0.0.0.0/0"], ["::/0"], ["0.0.0.0/1", "128.0.0.0/1"]])
        )
        spec["ingress"] = [*spec["ingress"], *({"cidr": c, "ports": [443]} for c in opened)]
    elif kind == "Route":
        spec.update(canary={"weight": draw(st.integers(0, 100))})
        spec.update(draw(st.sampled_from([{}, {}, {"auth": "none"}, {"plan": "pro"}, {"product": "fuzz-1"}])))
    elif kind == "PolicyBundle":
        spec.update(
            version=f"1.{draw(st.integers(0, 99))}.0", compat=draw(st.sampled_from(["backward", "breaking"]))
        )


@st.composite
def _mutated_spec(draw: st.DrawFn, kind: str, spec: Any, *, python: bool, junk: bool) -> Any:
    """The spec with a valid edit the policy judges; with ``junk``, also a few fields set
    (plausible or junk), deleted, or joined by unknown ones."""
    spec = copy.deepcopy(spec)
    edits = draw(st.sampled_from([1, 1, 2, 3])) if junk else 0
    if edits == 0 or draw(st.booleans()):
        draw(_tuned(kind, spec))
    for _ in range(edits):
        paths = list(_paths(spec))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, last = _get(spec, path[:-1]), path[-1]
        op = draw(st.sampled_from(["set", "set", "set", "set", "delete", "extra"]))
        if op == "delete":
            del parent[last]
        elif op == "extra" and isinstance(parent, dict):
            parent[draw(st.sampled_from(EXTRA_KEYS))] = draw(JUNK)
        else:
            parent[last] = draw(_plausible(path, parent[last], python=python))
    return spec


def _v1alpha1(document: dict[str, Any]) -> dict[str, Any]:
    """The document as an ``apx/v1alpha1`` client would write it (the upgrade path)."""
    out = copy.deepcopy(document)
    out["apiVersion"] = "apx/v1alpha1"
    spec = out["spec"]
    if out["kind"] == "WorkerPool":
        out["spec"] = {
            "instances": spec["replicas"],
            "autoscale": {"min": spec["minReplicas"], "max": spec["maxReplicas"]},
            "gpu": spec["accelerator"] == "gpu",
            "spot": spec["spot"],
        }
    elif out["kind"] == "Route":
        out["spec"] = {k: v for k, v in spec.items() if k not in ("auth", "canary")}
        out["spec"].update(auth=spec["auth"] == "required", canaryPercent=spec["canary"]["weight"])
    return out


@st.composite
def _change(draw: st.DrawFn, tenant: str, *, python: bool, junk: bool) -> dict[str, Any]:
    """One change to a seeded resource (or a new one made from it), its spec mutated."""
    action = draw(st.sampled_from(["update"] * 5 + ["create"] * 2 + ["delete"]))
    # Mostly new resources are created and deleted again (fuzz-N). A deleted seed resource
    # stays gone for the rest of the module: only Routes the other changes do not start from.
    seed_delete = action == "delete" and draw(st.integers(0, 3)) == 0
    start = draw(st.sampled_from(SPARE_ROUTES if seed_delete else STARTS))
    document = copy.deepcopy(SEED[start])
    document["metadata"]["tenant"] = tenant
    if action == "create" or (action == "delete" and not seed_delete):
        n = draw(st.integers(0, 5))
        names = [f"fuzz-{n}"] if action == "delete" else [f"fuzz-{n}", f"fuzz-{n}", "x" * 63]
        document["metadata"]["name"] = draw(st.sampled_from(names))
        if document["kind"] == "Route":
            document["spec"]["path"] = f"/v2/fuzz-{n}"  # else it collides with the Route it copies
    if document["kind"] in ("WorkerPool", "Route") and draw(st.integers(0, 7)) == 0:
        document = _v1alpha1(document)
    document["spec"] = draw(_mutated_spec(document["kind"], document["spec"], python=python, junk=junk))
    if action == "delete" and draw(st.booleans()):
        del document["spec"]
    return {"action": action, "resource": document}


@st.composite
def _bulk_routes(draw: st.DrawFn, tenant: str) -> list[dict[str, Any]]:
    """Many Routes at once, around the 50-routes-per-intent limit."""
    n = draw(st.sampled_from([2, 49, 50, 51, 60]))
    weight = draw(st.integers(0, 100))
    changes = []
    for path in ROUTES[:n]:
        document = copy.deepcopy(SEED[path])
        document["metadata"]["tenant"] = tenant
        document["spec"]["canary"] = {"weight": weight}
        changes.append({"action": "update", "resource": document})
    return changes


def _break_envelope(document: dict[str, Any], how: str, value: Any) -> None:
    """Break the envelope one way (``how``, from :data:`BREAKS`), with ``value`` where one is needed."""
    change = document["spec"]["changes"][0]
    resource = change["resource"]
    if how == "tenant":
        document["metadata"]["tenant"] = value
        for c in document["spec"]["changes"]:
            c["resource"]["metadata"]["tenant"] = value
    elif how == "other-tenant":
        resource["metadata"]["tenant"] = "globex" if document["metadata"]["tenant"] != "globex" else "acme"
    elif how == "name":
        resource["metadata"]["name"] = value
    elif how == "kind":
        resource["kind"] = value
    elif how == "apiVersion":
        resource["apiVersion"] = value
    elif how == "environment":
        document["spec"]["environment"] = value
    elif how == "rationale":
        document["spec"]["rationale"] = "x" * 2001
    elif how == "twice":
        document["spec"]["changes"].append(copy.deepcopy(change))
    elif how == "no-spec":
        change["action"] = "update"
        resource.pop("spec", None)
    elif how == "action":
        change["action"] = value
    elif how == "baseRevision":
        document["metadata"]["baseRevision"] = value


BREAKS: list[tuple[str, st.SearchStrategy[Any]]] = [
    ("tenant", st.sampled_from(["ACME", "../acme", "", "a" * 64])),
    ("other-tenant", st.none()),
    ("name", st.one_of(st.sampled_from(BAD_NAMES), st.text(max_size=10))),
    ("kind", st.sampled_from(["Secret", "route", "Intent", "", "ConfigMap"])),
    ("apiVersion", st.sampled_from(["apx/v2", "v1", "apx/V1", ""])),
    ("environment", st.sampled_from(["qa", "Dev", "../dev", ""])),
    ("rationale", st.none()),
    ("twice", st.none()),
    ("no-spec", st.none()),
    ("action", st.sampled_from(["patch", "Create", "", None])),
    ("baseRevision", st.sampled_from(["0" * 40, "HEAD~1", "../x", "--output=x", "main"])),
]


@dataclass(frozen=True)
class Example:
    document: dict[str, Any]
    #: "text": JSON through parse_intent; "python": Intent.model_validate on the mapping.
    via: str
    secret: str | None


@st.composite
def intents(draw: st.DrawFn) -> Example:
    """An intent-shaped document: four in five with a sound envelope, whatever their specs hold."""
    python = draw(st.booleans())
    # Half the examples keep their specs valid, so that they reach the dry run and the policy.
    junk = draw(st.booleans())
    tenant = draw(st.sampled_from(["acme"] * 7 + ["globex"]))
    if draw(st.integers(0, 14)) == 0:
        changes = draw(_bulk_routes(tenant))
    else:
        size = draw(st.sampled_from([1, 1, 1, 2, 2, 3]))
        changes = draw(
            st.lists(
                _change(tenant, python=python, junk=junk), min_size=size, max_size=size, unique_by=_target
            )
        )
    # Control characters other than NUL (which is pinned by its own test below).
    rationale = draw(
        st.sampled_from(["", "p95 over SLO for 5m", "tab\there\nIntent-Id: x", "\x1b[31m", "ünï"])
    )
    metadata: dict[str, Any] = {"tenant": tenant}
    if draw(st.integers(0, 9)) == 0:
        metadata["baseRevision"] = "seed"  # what dev was before the fuzz: merges and conflicts
    if draw(st.integers(0, 9)) == 0:
        # One-line values only: a line break here is pinned by its own test below.
        metadata["causedBy"] = draw(st.sampled_from(["in-01jycc0000000000000000000a", "int-builder-1", ""]))
    document: dict[str, Any] = {
        "apiVersion": "apx/v1",
        "kind": "Intent",
        "metadata": metadata,
        "spec": {
            "environment": draw(st.sampled_from(["dev", "dev", "dev", "prod"])),
            "rationale": rationale,
            "changes": changes,
        },
    }
    if draw(st.integers(0, 4)) == 0:
        how, values = draw(st.sampled_from(BREAKS))
        _break_envelope(document, how, draw(values))
    secret = None
    if draw(st.integers(0, 5)) == 0:
        secret = _secret(random.Random(draw(st.integers(0, 2**32))))
        resource = changes[0]["resource"]
        where = draw(st.sampled_from(["rationale", "spec", "label"]))
        if where == "rationale" or not isinstance(resource.get("spec"), dict):
            document["spec"]["rationale"] = f"rotated the key to {secret} after the incident"
        elif where == "spec":
            resource["spec"]["token"] = secret
        else:
            resource["metadata"]["labels"] = {"owner": "payments", "key": secret}
    return Example(document=document, via="python" if python else "text", secret=secret)


def _target(change: dict[str, Any]) -> tuple[str, str]:
    return change["resource"]["kind"], change["resource"]["metadata"]["name"]


# --- the home -----------------------------------------------------------------------------------


@dataclass
class Fuzzed:
    app: App
    clock: FrozenClock
    #: The seeded commit of dev, for intents that say they read it (``baseRevision``).
    seed_commit: str
    log_file: Path


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    home = tmp_path_factory.mktemp("decision-fuzz") / "home"
    init_home(home)
    config = yaml.safe_load((home / "apx.yaml").read_text())
    # Admission must not hold the fuzzed intents: every one should reach the validators.
    config["admission"] = {
        "dedupe_window": "1s",
        "rate_limit": {"deploys": 1_000_000, "per": "1s"},
        "breaker": {"max_deploys": 1_000_000, "window": "1s", "cooldown": "1s", "trip_on_oscillation": False},
    }
    (home / "apx.yaml").write_text(yaml.safe_dump(config))
    clock = FrozenClock(T0)
    app = build(home, settings=load_settings(home), clock=clock)
    seed_commit = app.repo.head("dev")
    assert seed_commit is not None
    try:
        yield Fuzzed(app, clock, seed_commit, home / "logs" / "apx.jsonl")
    finally:
        app.close()


def _git(app: App, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(app.settings.repo_path), *args], capture_output=True, text=True)


def _heads(app: App) -> dict[str, str | None]:
    return {branch: app.repo.head(branch) for branch in ("dev", "prod")} | {
        b: app.repo.head(b) for b in app.repo.branches("apx/")
    }


def _assert_branch_reads(app: App, commit: str, tenant: str, changed: list[str]) -> None:
    """Every file at ``commit`` reads as the resource its path names; the changed ones are valid."""
    for path, text in app.repo.read(commit).files.items():
        if not path.endswith(".yaml"):
            continue
        resource = parse_resource_document(text, source=path, expect=ResourceKey.parse(path))
        if path in changed:
            assert validate_spec(resource.kind, resource.spec) == [], f"{path} landed invalid"
            assert resource.metadata.tenant == tenant


TRAILER_KEYS = {"Intent-Id", "Trace-Id", "Agent", "Tenant", "Caused-By"}


def _trailers(app: App, commit: str) -> list[tuple[str, str]]:
    out = _git(app, "log", "-1", "--format=%(trailers:only,unfold)", commit).stdout
    return [(k, v.strip()) for k, _, v in (line.partition(":") for line in out.splitlines() if line)]


def _assert_signed_with_trailers(app: App, commit: str, decision: Decision) -> None:
    """The commit verifies, and its trailers are apx's own, naming this intent once."""
    assert _git(app, "verify-commit", commit).returncode == 0
    trailers = _trailers(app, commit)
    assert {k for k, _ in trailers} <= TRAILER_KEYS, trailers
    assert [v for k, v in trailers if k == "Intent-Id"] == [decision.intent_id]
    assert [v for k, v in trailers if k == "Trace-Id"] == [decision.trace_id]


def _assert_explained(decision: Decision, targets: list[str]) -> None:
    """A rejection says why, and a failed check names the problem (and the resource, for the schema)."""
    assert decision.reasons, "a rejection without a reason"
    failed = [c for c in decision.checks if not c.passed]
    no_change = decision.reasons[-1].startswith("no change:")
    assert failed or no_change, f"rejected but no check failed: {decision.reasons}"
    for check in failed:
        assert check.messages, f"check {check.name} failed without a message"
        if check.name != "policy":  # (the policy's reasons carry the rule's name too)
            assert all(any(r.endswith(m) for r in decision.reasons) for m in check.messages)
        if check.name == "schema":
            assert all(m.split(":", 1)[0] in targets for m in check.messages), check.messages


def _submit(fuzzed: Fuzzed, example: Example) -> Decision | None:
    """The example through the entry point it uses; None when it is refused as bad input."""
    document = example.document
    if document["metadata"].get("baseRevision") == "seed":
        document = copy.deepcopy(document)
        document["metadata"]["baseRevision"] = fuzzed.seed_commit
    try:
        if example.via == "python":
            intent = Intent.model_validate(document)
        else:
            intent = parse_intent(json.dumps(document), source="intent.json")
    except ValidationError:
        assert example.via == "python"
        return None
    except BadInput as exc:
        assert example.via == "text" and str(exc).startswith("intent.json:") and "\n" not in str(exc)
        return None
    try:
        return fuzzed.app.orchestrator.submit(intent, agent="fuzzer")
    except BadInput as exc:
        message = str(exc)
        assert message and "\n" not in message and "Traceback" not in message
        return None


@given(example=intents())
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
def test_any_intent_gets_an_explained_decision_and_only_accepted_ones_move_a_branch(
    fuzzed: Fuzzed, example: Example
) -> None:
    app = fuzzed.app
    # Past every window (dedupe, rate limit, breaker, cumulative routes, oscillation).
    fuzzed.clock.advance(timedelta(hours=2))
    before = _heads(app)
    log_offset = fuzzed.log_file.stat().st_size if fuzzed.log_file.exists() else 0

    decision = _submit(fuzzed, example)
    # Shown by --hypothesis-show-statistics: how far the examples get, and what stops them.
    event(f"via {example.via}: {decision.status.value if decision else 'bad input'}")
    if decision is not None and decision.status is Status.REJECTED:
        event("failed checks: " + ",".join(sorted({c.name for c in decision.checks if not c.passed})))

    if example.secret is not None:
        logged = fuzzed.log_file.read_bytes()[log_offset:] if fuzzed.log_file.exists() else b""
        assert example.secret.encode() not in logged, "the log file repeats the planted secret"
    if decision is None:
        assert _heads(app) == before
        return
    assert decision.status is not Status.FAILED, decision.reasons
    assert decision.status in (Status.APPLIED, Status.PR_OPEN, Status.REJECTED), decision.summary()
    record = app.store.get(decision.intent_id)
    assert record is not None and record.status is decision.status
    targets = list(record.record.targets)
    after = _heads(app)
    if decision.status is Status.REJECTED:
        _assert_explained(decision, targets)
        assert after == before, "a rejected intent moved a branch"
    elif decision.status is Status.APPLIED:
        assert decision.environment == "dev" and decision.commit is not None
        assert decision.commit == after["dev"]
        assert after == {**before, "dev": decision.commit}
        _assert_signed_with_trailers(app, decision.commit, decision)
        _assert_branch_reads(app, decision.commit, decision.tenant, [f"{t}.yaml" for t in targets])
    else:
        assert decision.pr is not None and decision.pr.head == after[decision.pr.branch]
        assert {b: h for b, h in after.items() if b != decision.pr.branch} == before
        _assert_signed_with_trailers(app, decision.pr.head, decision)
        _assert_branch_reads(app, decision.pr.head, decision.tenant, [f"{t}.yaml" for t in targets])

    if example.secret is not None:
        assert decision.status is Status.REJECTED, "an intent carrying a credential was accepted"
        assert example.secret not in decision.model_dump_json(), "the decision repeats the planted secret"
        stored = json.dumps(record.record.document, default=repr)
        assert example.secret not in stored, "the intent log keeps the planted secret"


def test_the_fuzzed_home_still_verifies(fuzzed: Fuzzed) -> None:
    """Whatever the fuzz submitted, the audit chain is intact and dev is still the seeded tenant's."""
    assert fuzzed.app.audit.verify().ok
    assert "Product/payments-api.yaml" in fuzzed.app.repo.read(fuzzed.app.repo.head("dev") or "").files


# --- found by the fuzz ----------------------------------------------------------------------------


def _new_pool_intent(name: str, **metadata: str) -> dict[str, Any]:
    """Create a WorkerPool no example made: valid, so only what the test plants can stop it."""
    pool = copy.deepcopy(SEED["WorkerPool/checkout.yaml"])
    pool["metadata"]["name"] = name
    return {
        "apiVersion": "apx/v1",
        "kind": "Intent",
        "metadata": {"tenant": "acme", **metadata},
        "spec": {
            "environment": "dev",
            "rationale": "resize",
            "changes": [{"action": "create", "resource": pool}],
        },
    }


def test_a_nul_in_the_rationale_is_bad_input_not_a_failed_decision(fuzzed: Fuzzed) -> None:
    """Found by this fuzz: JSON (unlike YAML) let a NUL into spec.rationale; the intent was
    admitted and then `failed` (git refuses a NUL in a commit message)."""
    fuzzed.clock.advance(timedelta(hours=2))
    document = _new_pool_intent("pinned-nul")
    document["spec"]["rationale"] = "scale\x00up"
    for via in ("text", "python"):
        assert _submit(fuzzed, Example(document=document, via=via, secret=None)) is None


def test_caused_by_cannot_add_trailers_to_the_commit(fuzzed: Fuzzed) -> None:
    """Found by this fuzz: causedBy was free text written as the Caused-By trailer, so a line
    break in it added trailers of the agent's choosing (Approved-By, a second Intent-Id) to a
    commit apx signed. It is refused as bad input now."""
    fuzzed.clock.advance(timedelta(hours=2))
    document = _new_pool_intent("pinned-caused-by", causedBy="in-x\nApproved-By: alice\nIntent-Id: in-forged")
    for via in ("text", "python"):
        assert _submit(fuzzed, Example(document=document, via=via, secret=None)) is None


@pytest.mark.parametrize("via", ["text", "python"])
def test_a_lone_surrogate_in_a_string_is_bad_input(fuzzed: Fuzzed, via: str) -> None:
    """Found by this fuzz: a lone surrogate (JSON '\\ud800') passed the parser, then computing
    the dedupe key raised rfc8785.CanonicalizationError instead of a one-line BadInput."""
    fuzzed.clock.advance(timedelta(hours=2))
    document = _new_pool_intent(f"pinned-surrogate-{via}")
    document["spec"]["changes"][0]["resource"]["metadata"]["labels"] = {"team": "\ud800"}
    assert _submit(fuzzed, Example(document=document, via=via, secret=None)) is None
