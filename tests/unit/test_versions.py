"""Schema evolution: apx/v1alpha1 resources are read as apx/v1, with a deprecation warning."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

import orchestrator
from orchestrator.canonical import dedupe_key
from orchestrator.changeset import Plan, environment_deprecations, parse_environment, plan, render
from orchestrator.errors import IntentFormatError
from orchestrator.intent import API_VERSION, KINDS, READABLE_API_VERSIONS, Intent
from orchestrator.parsing import parse_intent, parse_resource_document
from orchestrator.resources import validate_spec
from orchestrator.seed import seed_files
from orchestrator.versions import (
    DEPRECATIONS,
    FIELD_CHANGES,
    SPEC_MODELS,
    V1ALPHA1,
    VERSIONS,
    UnknownApiVersion,
    WorkerPoolSpecV1Alpha1,
    deprecation,
    upgrade,
)
from validators.base import ValidationContext
from validators.schema import SchemaValidator

DOCS = Path(__file__).parents[2] / "docs" / "reference" / "api-versions.md"
WARNING = (
    "WorkerPool apx/v1alpha1 is deprecated since apx 0.1: read as apx/v1; "
    "rewrite with `apx migrate --env dev`; support ends in apx 1.0"
)


def resource(
    kind: str, spec: dict[str, Any] | None, *, version: str = V1ALPHA1, name: str = "x"
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "apiVersion": version,
        "kind": kind,
        "metadata": {"name": name, "tenant": "acme"},
    }
    if spec is not None:
        document["spec"] = spec
    return document


def old_pool(**spec: Any) -> dict[str, Any]:
    base = {"instances": 4, "autoscale": {"min": 2, "max": 20}, "gpu": False, "spot": False}
    return resource("WorkerPool", {**base, **spec}, name="checkout")


def new_pool(**spec: Any) -> dict[str, Any]:
    base = {"replicas": 4, "minReplicas": 2, "maxReplicas": 20, "accelerator": "none", "spot": False}
    return resource("WorkerPool", {**base, **spec}, version=API_VERSION, name="checkout")


def intent_of(*resources: dict[str, Any], action: str = "update", rationale: str = "") -> Intent:
    return Intent.model_validate(
        {
            "apiVersion": "apx/v1",
            "kind": "Intent",
            "metadata": {"tenant": "acme"},
            "spec": {
                "environment": "dev",
                "rationale": rationale,
                "changes": [{"action": action, "resource": r} for r in resources],
            },
        }
    )


def seeded_documents() -> dict[str, dict[str, Any]]:
    return {path: yaml.safe_load(text) for path, text in seed_files().items()}


# --- upgrade, per kind ----------------------------------------------------------------------------


def test_a_v1alpha1_worker_pool_becomes_replicas_and_bounds() -> None:
    upgraded = upgrade(old_pool(gpu=True, spot=True))
    assert upgraded == new_pool(accelerator="gpu", spot=True)
    assert list(upgraded["spec"]) == ["replicas", "minReplicas", "maxReplicas", "accelerator", "spot"]


def test_a_worker_pool_without_autoscale_is_a_fixed_size_pool_and_old_defaults_are_written_out() -> None:
    upgraded = upgrade(resource("WorkerPool", {"instances": 3}, name="checkout"))
    assert upgraded["spec"] == {
        "replicas": 3,
        "minReplicas": 3,
        "maxReplicas": 3,
        "accelerator": "none",
        "spot": False,
    }
    assert validate_spec("WorkerPool", upgraded["spec"]) == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ({"auth": True, "canaryPercent": 10}, {"auth": "required", "canary": {"weight": 10}}),
        ({"auth": False}, {"auth": "none"}),
        ({}, {"auth": "required"}),  # v1alpha1 defaulted to authenticated; v1 says so explicitly
    ],
)
def test_a_v1alpha1_route_gets_auth_as_a_word_and_a_canary_weight(
    old: dict[str, Any], new: dict[str, Any]
) -> None:
    base = {"host": "api.acme.example", "path": "/v1/charges", "product": "payments-api"}
    upgraded = upgrade(resource("Route", {**base, **old}))
    assert upgraded["spec"] == {**base, **new}
    assert validate_spec("Route", upgraded["spec"]) == []


@pytest.mark.parametrize("kind", ["Product", "NetworkPolicy", "PolicyBundle"])
def test_unchanged_kinds_only_change_their_api_version(kind: str) -> None:
    current = next(d for d in seeded_documents().values() if d["kind"] == kind)
    assert upgrade({**current, "apiVersion": V1ALPHA1}) == current


def test_upgrade_leaves_its_input_alone() -> None:
    document = old_pool()
    before = copy.deepcopy(document)
    upgraded = upgrade(document)
    upgraded["spec"]["replicas"] = 99
    assert document == before


def test_a_delete_at_v1alpha1_needs_no_spec() -> None:
    assert upgrade(resource("Route", None)) == resource("Route", None, version=API_VERSION)


def test_values_the_upgrade_cannot_translate_are_kept_for_the_schema_to_name() -> None:
    # Nothing is guessed and nothing is dropped: the v1 schema rejects what is left, by name.
    upgraded = upgrade(old_pool(gpu="yes", replicas=6))
    assert upgraded["spec"]["instances"] == 4 and upgraded["spec"]["replicas"] == 6
    assert upgraded["spec"]["accelerator"] == "yes"
    problems = validate_spec("WorkerPool", upgraded["spec"])
    assert any(p.startswith("spec.accelerator: Input should be 'none' or 'gpu'") for p in problems)
    assert any(p.startswith("spec.instances: unknown field") for p in problems)


def test_an_unknown_api_version_or_kind_is_still_an_error() -> None:
    with pytest.raises(UnknownApiVersion, match="unknown apiVersion 'apx/v2'"):
        upgrade(resource("WorkerPool", {}, version="apx/v2"))
    with pytest.raises(UnknownApiVersion, match="apx/v1alpha1 has no kind 'Gadget'"):
        upgrade(resource("Gadget", {}))


def test_every_readable_version_has_models_and_every_old_one_a_deprecation() -> None:
    assert set(READABLE_API_VERSIONS) == set(VERSIONS) == set(SPEC_MODELS)
    assert VERSIONS[-1] == API_VERSION
    assert set(DEPRECATIONS) == set(VERSIONS[:-1])
    assert all(set(models) == set(KINDS) for models in SPEC_MODELS.values())


# --- deprecation -----------------------------------------------------------------------------------


def test_the_deprecation_warning_says_how_to_fix_it_and_when_support_ends() -> None:
    assert deprecation(V1ALPHA1, "WorkerPool", environment="dev") == WARNING
    assert deprecation(V1ALPHA1, "Route") == (
        "Route apx/v1alpha1 is deprecated since apx 0.1: read as apx/v1; submit apx/v1 instead "
        "(field mapping: docs/reference/api-versions.md); support ends in apx 1.0"
    )
    assert deprecation(API_VERSION, "Route") is None
    with pytest.raises(UnknownApiVersion):
        deprecation("apx/v2", "Route")


def _release(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def test_support_ends_only_in_a_major_release_at_least_two_releases_after_the_announcement() -> None:
    for info in DEPRECATIONS.values():
        announced, ends = _release(info.deprecated_in), _release(info.removed_in)
        assert ends[1] == 0 and ends[0] > announced[0], "support may only end in a major release"
        # The two releases of dual support are the next two minors of the announcing series.
        assert (announced[0], announced[1] + 2) < ends
        # Releasing the version that ends support means removing the old version first.
        assert _release(orchestrator.__version__) < ends


def test_the_docs_list_every_field_change() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for changes in FIELD_CHANGES.values():
        for change in changes:
            row = f"| {change.kind} | `{change.old}` | `{change.new}` | {change.how} |"
            assert row in text


# --- reading intents ----------------------------------------------------------------------------


OLD_INTENT = """\
apiVersion: apx/v1
kind: Intent
metadata: {tenant: acme}
spec:
  environment: dev
  rationale: "p95 over SLO for 5m"
  changes:
    - action: update
      resource:
        apiVersion: apx/v1alpha1
        kind: WorkerPool
        metadata: {name: checkout, tenant: acme}
        spec: {instances: 6, autoscale: {min: 2, max: 20}, gpu: false, spot: false}
"""


def test_a_v1alpha1_intent_parses_and_its_resource_reads_as_v1_with_a_warning() -> None:
    intent = parse_intent(OLD_INTENT, source="intent.yaml")
    res = intent.spec.changes[0].resource
    assert res.apiVersion == V1ALPHA1 and res.upgraded
    assert res.spec == new_pool(replicas=6)["spec"]
    assert res.document() == new_pool(replicas=6)
    assert intent.deprecations() == [
        "WorkerPool apx/v1alpha1 is deprecated since apx 0.1: read as apx/v1; submit apx/v1 instead "
        "(field mapping: docs/reference/api-versions.md); support ends in apx 1.0"
    ]


def test_a_v1_intent_has_no_deprecations() -> None:
    assert intent_of(new_pool()).deprecations() == []


def test_deprecations_are_given_once_per_kind() -> None:
    routes = [
        resource("Route", {"host": "api.acme.example", "path": f"/v1/r{i}", "product": "p"}, name=f"r{i}")
        for i in range(3)
    ]
    intent = intent_of(*routes, old_pool())
    assert [w.split(" ", 1)[0] for w in intent.deprecations()] == ["Route", "WorkerPool"]


def test_the_recorded_intent_keeps_its_version_with_the_upgraded_spec_and_reads_back_the_same() -> None:
    # The log stores what was validated and scanned (so redaction paths match), still marked old.
    intent = parse_intent(OLD_INTENT, source="intent.yaml")
    stored = intent.model_dump(mode="json", exclude_none=True)
    resource = stored["spec"]["changes"][0]["resource"]
    assert resource["apiVersion"] == V1ALPHA1
    assert resource["spec"] == new_pool(replicas=6)["spec"]
    again = Intent.model_validate(stored)
    assert again == intent
    assert again.changes_document() == intent.changes_document()
    assert again.deprecations() == intent.deprecations()


def test_a_v1alpha1_and_a_v1_intent_for_the_same_change_are_duplicates() -> None:
    old = intent_of(old_pool(instances=6), rationale="scale up")
    new = intent_of(new_pool(replicas=6), rationale="p95 over SLO")
    assert old.changes_document() == new.changes_document()
    key = dedupe_key(tenant="acme", environment="dev", changes=old.changes_document())
    assert key == dedupe_key(tenant="acme", environment="dev", changes=new.changes_document())
    assert key != dedupe_key(
        tenant="acme", environment="dev", changes=intent_of(new_pool(replicas=7)).changes_document()
    )


def test_an_invalid_v1alpha1_spec_is_reported_at_its_v1_field() -> None:
    # The schema validator sees the upgraded document, so it names spec.maxReplicas, not
    # spec.autoscale.max; the deprecation warning and the docs' table map one to the other.
    intent = intent_of(old_pool(instances=30))
    before = seeded_documents()
    after = {**before, "WorkerPool/checkout.yaml": intent.spec.changes[0].resource.document()}
    changed = frozenset({"WorkerPool/checkout.yaml"})
    ctx = ValidationContext(intent=intent, agent="optimizer", before=before, after=after, changed=changed)
    check = SchemaValidator().check(ctx)
    assert check.messages == ["WorkerPool/checkout: spec.replicas: must be ≤ maxReplicas (20), got 30"]


OLD_SPEC = "spec: {instances: 6, autoscale: {min: 2, max: 20}, gpu: false, spot: false}"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "name: checkout",
            "name: check_out",
            "12:20: spec.changes[0].resource.metadata.name: name 'check_out'",
        ),
        (OLD_SPEC, "spec: [6]", "13:9: spec.changes[0].resource.spec: must be a mapping, got a list"),
    ],
)
def test_envelope_errors_in_a_v1alpha1_resource_keep_their_line_and_column(
    old: str, new: str, expected: str
) -> None:
    with pytest.raises(IntentFormatError) as info:
        parse_intent(OLD_INTENT.replace(old, new), source="intent.yaml")
    assert str(info.value).startswith(f"intent.yaml:{expected}")


def test_a_v1alpha1_file_of_the_config_repo_parses_as_its_resource() -> None:
    text = render(old_pool())
    res = parse_resource_document(text, source="WorkerPool/checkout.yaml")
    assert res.apiVersion == V1ALPHA1 and res.document() == new_pool()


# --- reading environments -----------------------------------------------------------------------


def test_an_environment_with_a_v1alpha1_file_reads_as_v1_and_names_the_file() -> None:
    files = dict(seed_files())
    files["WorkerPool/checkout.yaml"] = render(old_pool())
    parsed = parse_environment(files)
    assert parsed["WorkerPool/checkout.yaml"] == new_pool()
    assert parsed == parse_environment(seed_files())
    assert environment_deprecations(files, environment="dev") == [
        f"{WARNING} (1 file: WorkerPool/checkout.yaml)"
    ]
    assert environment_deprecations(seed_files(), environment="dev") == []


def test_many_old_files_make_one_warning_per_kind() -> None:
    files = dict(seed_files())
    routes = sorted(p for p in files if p.startswith("Route/"))[:5]
    for path in routes:
        document = yaml.safe_load(files[path])
        files[path] = render({**document, "apiVersion": V1ALPHA1})
    (warning,) = environment_deprecations(files, environment="prod")
    assert warning.startswith("Route apx/v1alpha1 is deprecated since apx 0.1: read as apx/v1; ")
    assert "`apx migrate --env prod`" in warning
    assert warning.endswith(f"(5 files: {', '.join(routes[:3])} and 2 more)")


def test_a_change_to_a_v1alpha1_file_writes_it_back_as_v1() -> None:
    files = {"WorkerPool/checkout.yaml": render(old_pool())}
    environment = parse_environment(files)
    result = plan(intent_of(new_pool(replicas=6)), base=environment, current=environment, current_files=files)
    assert isinstance(result, Plan)
    written = yaml.safe_load(result.files["WorkerPool/checkout.yaml"] or "")
    assert written == new_pool(replicas=6)
    assert "-apiVersion: apx/v1alpha1" in result.diff["WorkerPool/checkout.yaml"]


# --- properties ---------------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
_spec_keys = st.sampled_from(
    [
        "instances",
        "autoscale",
        "gpu",
        "spot",
        "replicas",
        "minReplicas",
        "maxReplicas",
        "accelerator",
        "auth",
        "canaryPercent",
        "canary",
        "host",
        "path",
        "product",
        "plans",
        "ingress",
        "version",
    ]
)
_specs = st.dictionaries(_spec_keys, _json | st.fixed_dictionaries({"min": _json, "max": _json}), max_size=6)


@given(kind=st.sampled_from(KINDS), spec=_specs)
def test_upgrade_is_the_identity_on_v1_documents(kind: str, spec: dict[str, Any]) -> None:
    document = resource(kind, spec, version=API_VERSION)
    assert upgrade(document) == document


@given(kind=st.sampled_from(KINDS), spec=_specs)
def test_upgrade_never_fails_on_an_old_mapping_and_is_idempotent(kind: str, spec: dict[str, Any]) -> None:
    once = upgrade(resource(kind, spec))
    assert once["apiVersion"] == API_VERSION
    assert upgrade(once) == once
    # The intent log stores the upgraded spec under the submitted version; reading that
    # back must upgrade it to the same thing again.
    assert upgrade({**once, "apiVersion": V1ALPHA1}) == once


@given(
    instances=st.integers(0, 200),
    bounds=st.none() | st.tuples(st.integers(0, 200), st.integers(0, 200)),
    gpu=st.booleans(),
    spot=st.booleans(),
)
def test_a_worker_pool_is_valid_at_v1_exactly_when_it_was_valid_at_v1alpha1(
    instances: int, bounds: tuple[int, int] | None, gpu: bool, spot: bool
) -> None:
    spec: dict[str, Any] = {"instances": instances, "gpu": gpu, "spot": spot}
    if bounds is not None:
        spec["autoscale"] = {"min": bounds[0], "max": bounds[1]}
    try:
        WorkerPoolSpecV1Alpha1.model_validate(spec)
        valid_before = True
    except ValueError:
        valid_before = False
    upgraded = upgrade(resource("WorkerPool", spec))["spec"]
    assert (validate_spec("WorkerPool", upgraded) == []) == valid_before
    assert upgraded["replicas"] == instances
    assert upgraded["accelerator"] == ("gpu" if gpu else "none")


def test_warning_text_names_a_release_number() -> None:
    assert re.search(r"support ends in apx \d+\.\d+$", deprecation(V1ALPHA1, "Route") or "")
