"""The policy layer against real regopy: the shipped bundle's rules, modes, waivers,
failure modes (fail closed, never open), the compiled-bundle cache, lint and the
bundle's own unit tests.

Bundles under test are copies of the shipped one in ``tmp_path`` with one thing
changed, so each test states exactly what differs from the default.
"""

from __future__ import annotations

import copy
import json
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from constraints.bundle import DEFAULT_BUNDLE, bundle_sha256, lint, load_bundle, run_tests
from validators.policy import POLICY_ERROR_RULE, PolicyLoadError, PolicyResult, example_input
from validators.rego import RegoPyEngine, check_bundle

NOW_NS = example_input()["now_ns"]  # 2025-06-01T12:00:00Z
WAIVER = {"rule": "max-replicas", "reason": "load test", "ticket": "OPS-42"}

CIDR_RULE = """package apx.rules.cidr

import rego.v1

# net.cidr_contains does not exist in regopy: this rule can never fire there.
violation contains {"rule": "internal-only", "effect": "deny", "msg": "ingress outside 10/8"} if {
\tsome cidr in input.blast.network.added_cidrs
\tnot net.cidr_contains("10.0.0.0/8", cidr)
}
"""


def policy_input(**sections: Any) -> dict[str, Any]:
    """The example input with some of its sections' fields replaced (one level deep)."""
    document = example_input()
    for name, fields in sections.items():
        if isinstance(document.get(name), dict):
            document[name] = {**document[name], **fields}
        else:
            document[name] = fields
    return document


def with_network(**fields: Any) -> dict[str, Any]:
    blast = example_input()["blast"]
    return {**blast, "network": {**blast["network"], **fields}}


def rules(violations: list[Any]) -> list[str]:
    return sorted(v.rule for v in violations)


@pytest.fixture(scope="module")
def engine() -> RegoPyEngine:
    """The shipped bundle, built the way production builds it (checked in a child process first)."""
    return RegoPyEngine(load_bundle(None), budget_ms=10_000)


@pytest.fixture
def bundle_copy(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Copy the shipped bundle, then change its data.json's apx section and add or replace files."""

    def make(*, data: Mapping[str, Any] | None = None, files: Mapping[str, str] | None = None) -> Path:
        target = tmp_path / f"bundle{len(list(tmp_path.iterdir()))}"
        shutil.copytree(DEFAULT_BUNDLE, target)
        if data:
            document = json.loads((target / "data.json").read_text())
            document["apx"].update(data)
            (target / "data.json").write_text(json.dumps(document, indent=2))
        for relative, text in (files or {}).items():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            (target / relative).write_text(text)
        return target

    yield make


def engine_for(path: Path, **kwargs: Any) -> RegoPyEngine:
    # A generous budget: these tests are about decisions, and a loaded CI machine
    # must not turn them into timing tests (the budget has its own test below).
    kwargs.setdefault("budget_ms", 10_000)
    return RegoPyEngine(load_bundle(path), isolate=False, **kwargs)


# -- the default rules, each both ways -------------------------------------------------------------

FIRES_AND_NOT = [
    # rule, effect, input that fires it, the closest input that does not
    (
        "max-routes-per-intent",
        "deny",
        policy_input(blast={"routes_touched": 51}),
        policy_input(blast={"routes_touched": 50}),
    ),
    (
        "max-routes-per-hour",
        "deny",
        policy_input(cumulative={"routes": 51, "intents": ["in-1", "in-2"]}),
        policy_input(cumulative={"routes": 50, "intents": ["in-1", "in-2"]}),
    ),
    (
        "max-quota-factor",
        "deny",
        policy_input(blast={"quota_factor": 2.5}),
        policy_input(blast={"quota_factor": 2}),
    ),
    (
        "max-quota-factor",
        "deny",
        policy_input(blast={"rate_limit_factor": 3}),
        policy_input(blast={"rate_limit_factor": 2}),
    ),
    (
        "max-replicas",
        "deny",
        policy_input(blast={"replicas_after_max": 101}),
        policy_input(blast={"replicas_after_max": 100}),
    ),
    (
        "no-world-ingress",
        "deny",
        policy_input(blast=with_network(changed=True, opens_world=True, added_cidrs=["0.0.0.0/0"])),
        policy_input(blast=with_network(changed=True, opens_world=False, added_cidrs=["10.0.0.0/8"])),
    ),
    (
        "prod-needs-approval",
        "require_approval",
        policy_input(intent={"environment": "prod", "mode": "pr"}),
        policy_input(intent={"environment": "dev"}),
    ),
    (
        "network-change-needs-approval",
        "require_approval",
        policy_input(blast=with_network(changed=True, added_cidrs=["10.1.0.0/16"])),
        policy_input(blast=with_network(changed=False)),
    ),
]


@pytest.mark.parametrize(
    ("rule", "effect", "firing", "quiet"),
    FIRES_AND_NOT,
    ids=[f"{case[0]}-{i}" for i, case in enumerate(FIRES_AND_NOT)],
)
def test_each_default_rule_fires_above_its_limit_and_not_at_it(
    engine: RegoPyEngine, rule: str, effect: str, firing: dict[str, Any], quiet: dict[str, Any]
) -> None:
    fired = engine.evaluate(firing)
    assert fired.error is None
    assert rule in rules(getattr(fired, effect))
    assert all(v.effect == effect for v in getattr(fired, effect))

    calm = engine.evaluate(quiet)
    assert calm.error is None
    assert rule not in rules([*calm.deny, *calm.require_approval, *calm.warn, *calm.dryrun])


def test_the_example_input_passes_every_default_rule(engine: RegoPyEngine) -> None:
    result = engine.evaluate(example_input())
    assert result == PolicyResult(
        deny=[], require_approval=[], warn=[], dryrun=[], waived=[], elapsed_ms=result.elapsed_ms
    )
    assert result.allowed and not result.needs_approval


def test_the_hourly_route_limit_names_the_count_and_the_earlier_intents(engine: RegoPyEngine) -> None:
    result = engine.evaluate(
        policy_input(cumulative={"window": "1h", "routes": 62, "intents": ["in-1", "in-2"]})
    )
    assert [v.message for v in result.deny] == [
        "with this intent the agent has touched 62 distinct routes within 1h (limit 50); "
        "earlier intents counted: in-1, in-2"
    ]


def test_a_rule_still_fires_when_the_fields_its_message_reads_are_missing(engine: RegoPyEngine) -> None:
    """The sprintf-on-a-missing-field pitfall: optional fields must not make a rule undefined."""
    document = policy_input(cumulative={"routes": 51}, blast=with_network(changed=True, opens_world=True))
    del document["cumulative"]["intents"], document["cumulative"]["window"]
    del document["blast"]["network"]["added_cidrs"], document["blast"]["network"]["removed_cidrs"]
    result = engine.evaluate(document)
    assert rules(result.deny) == ["max-routes-per-hour", "no-world-ingress"]
    assert rules(result.require_approval) == ["network-change-needs-approval"]


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (
            lambda d: d["blast"].pop("routes_touched"),
            "input.blast.routes_touched must be a number, got nothing",
        ),
        (
            lambda d: d["blast"].update(replicas_after_max="101"),
            "input.blast.replicas_after_max must be a number",
        ),
        (
            lambda d: d["blast"]["network"].pop("opens_world"),
            "input.blast.network.opens_world must be a boolean",
        ),
        (lambda d: d.pop("now_ns"), "input.now_ns must be an integer"),
        (lambda d: d["changes"][0].pop("name"), "input.changes[0].name must be a string"),
        (
            lambda d: d["blast"].update(routes_touched=True),
            "input.blast.routes_touched must be a number, not a boolean",
        ),
    ],
    ids=["missing", "mistyped", "missing-nested", "no-clock", "unnamed-change", "bool-for-number"],
)
def test_an_incomplete_input_fails_closed_naming_the_field(
    engine: RegoPyEngine, damage: Callable[[dict[str, Any]], object], named: str
) -> None:
    document = example_input()
    damage(document)
    result = engine.evaluate(document)
    assert rules(result.deny) == [POLICY_ERROR_RULE]
    assert result.error is not None and named in result.error


def test_strings_with_quotes_and_backslashes_survive_the_round_trip(engine: RegoPyEngine) -> None:
    """regopy returns strings set through its Input objects unescaped; JSON input keeps them intact."""
    odd = 'in-"1"\\x\n'
    result = engine.evaluate(policy_input(cumulative={"routes": 51, "intents": [odd]}))
    assert result.error is None
    assert result.deny[0].message.endswith(f"earlier intents counted: {odd}")


# -- enforcement modes and waivers ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["warn", "dryrun"])
def test_an_enforcement_mode_reroutes_a_denial(bundle_copy: Callable[..., Path], mode: str) -> None:
    engine = engine_for(bundle_copy(data={"enforcement": {"max-replicas": mode}}))
    result = engine.evaluate(policy_input(blast={"replicas_after_max": 150}))
    assert result.allowed
    assert [(v.rule, v.effect) for v in getattr(result, mode)] == [("max-replicas", "deny")]
    assert "would deny" in " ".join(result.messages()) or mode == "warn"


def test_an_approval_rule_in_dryrun_records_what_it_would_require(bundle_copy: Callable[..., Path]) -> None:
    engine = engine_for(bundle_copy(data={"enforcement": {"prod-needs-approval": "dryrun"}}))
    result = engine.evaluate(policy_input(intent={"environment": "prod"}))
    assert not result.needs_approval
    assert [(v.rule, v.effect) for v in result.dryrun] == [("prod-needs-approval", "require_approval")]


def test_a_live_waiver_sets_a_denial_aside_and_is_recorded(bundle_copy: Callable[..., Path]) -> None:
    engine = engine_for(bundle_copy(data={"waivers": [{**WAIVER, "expires": "2025-06-02T00:00:00Z"}]}))
    result = engine.evaluate(policy_input(blast={"replicas_after_max": 150}))
    assert result.allowed
    [use] = result.waived
    assert (use.rule, use.ticket, use.reason, use.expires, use.scope) == (
        "max-replicas",
        "OPS-42",
        "load test",
        "2025-06-02T00:00:00Z",
        "everywhere",
    )
    assert "replicas to 150" in use.message


def test_an_expired_waiver_does_not_apply(bundle_copy: Callable[..., Path]) -> None:
    engine = engine_for(bundle_copy(data={"waivers": [{**WAIVER, "expires": "2025-06-01T12:00:00Z"}]}))
    result = engine.evaluate(policy_input(blast={"replicas_after_max": 150}))  # now == expiry
    assert rules(result.deny) == ["max-replicas"]
    assert result.waived == []


def test_an_expiry_with_an_offset_is_compared_in_absolute_time(bundle_copy: Callable[..., Path]) -> None:
    # 13:00+02:00 is 11:00Z, an hour before the input's now.
    engine = engine_for(bundle_copy(data={"waivers": [{**WAIVER, "expires": "2025-06-01T13:00:00+02:00"}]}))
    assert not engine.evaluate(policy_input(blast={"replicas_after_max": 150})).allowed


@pytest.mark.parametrize(
    ("scope", "intent_tenant", "change", "applies"),
    [
        ({"tenant": "acme"}, "acme", {"kind": "WorkerPool", "name": "checkout", "tenant": "acme"}, True),
        ({"tenant": "acme"}, "globex", {"kind": "WorkerPool", "name": "checkout", "tenant": "globex"}, False),
        ({"resource": "WorkerPool/checkout"}, "acme", {"kind": "WorkerPool", "name": "checkout"}, True),
        ({"resource": "WorkerPool/checkout"}, "acme", {"kind": "WorkerPool", "name": "batch"}, False),
    ],
    ids=["own-tenant", "other-tenant", "own-resource", "other-resource"],
)
def test_a_scoped_waiver_applies_only_within_its_scope(
    bundle_copy: Callable[..., Path],
    scope: dict[str, str],
    intent_tenant: str,
    change: dict[str, str],
    applies: bool,
) -> None:
    waiver = {**WAIVER, **scope, "expires": "2025-07-01T00:00:00Z"}
    engine = engine_for(bundle_copy(data={"waivers": [waiver]}))
    result = engine.evaluate(
        policy_input(
            intent={"tenant": intent_tenant},
            changes=[{"action": "update", **change}],
            blast={"replicas_after_max": 150},
        )
    )
    assert result.allowed is applies
    assert len(result.waived) == int(applies)


def test_a_resource_waiver_does_not_cover_an_intent_changing_two_such_resources(
    bundle_copy: Callable[..., Path],
) -> None:
    waiver = {**WAIVER, "resource": "WorkerPool/checkout", "expires": "2025-07-01T00:00:00Z"}
    engine = engine_for(bundle_copy(data={"waivers": [waiver]}))
    changes = [
        {"action": "update", "kind": "WorkerPool", "name": "checkout", "tenant": "acme"},
        {"action": "update", "kind": "WorkerPool", "name": "batch", "tenant": "acme"},
    ]
    result = engine.evaluate(policy_input(changes=changes, blast={"replicas_after_max": 150}))
    assert rules(result.deny) == ["max-replicas"]


# -- failing closed ---------------------------------------------------------------------------------


def test_a_bundle_that_does_not_compile_is_refused_with_file_and_line(
    engine: RegoPyEngine, bundle_copy: Callable[..., Path], tmp_path: Path
) -> None:
    before = engine.evaluate(policy_input(blast={"replicas_after_max": 150}))
    broken = bundle_copy(
        files={"apx/rules/broken.rego": "package apx.rules.broken\n\nimport rego.v1\n\nx if {\n\t1 ==\n}\n"}
    )
    cache = tmp_path / "cache"

    with pytest.raises(PolicyLoadError) as refused:
        RegoPyEngine(load_bundle(broken), cache_dir=cache)

    assert "apx/rules/broken.rego:6:" in refused.value.message
    assert refused.value.errors and refused.value.errors[0].startswith("apx/rules/broken.rego:6: ")
    assert not cache.exists() or not any(cache.iterdir())  # nothing cached for a broken bundle
    # The engine already in force is untouched.
    after = engine.evaluate(policy_input(blast={"replicas_after_max": 150}))
    assert after.model_copy(update={"elapsed_ms": 0}) == before.model_copy(update={"elapsed_ms": 0})
    assert rules(after.deny) == ["max-replicas"]


def test_rego_that_would_crash_regopy_is_refused_at_load_not_run(bundle_copy: Callable[..., Path]) -> None:
    crashing = (
        "package apx.rules.mock\n\nimport rego.v1\n\n"
        'violation contains "x" if {\n\tdata.apx.decision with input as {}\n}\n'
    )
    path = bundle_copy(files={"apx/rules/mock.rego": crashing})
    with pytest.raises(PolicyLoadError, match=r"apx/rules/mock\.rego:6: `with input as`"):
        RegoPyEngine(load_bundle(path))


def test_an_unsupported_builtin_in_a_deny_rule_fails_closed(bundle_copy: Callable[..., Path]) -> None:
    engine = engine_for(bundle_copy(files={"apx/rules/cidr.rego": CIDR_RULE}))
    result = engine.evaluate(policy_input(blast=with_network(changed=True, added_cidrs=["8.8.8.8/32"])))
    assert not result.allowed
    assert rules(result.deny) == [POLICY_ERROR_RULE]
    assert result.error is not None and "apx.rules.cidr.violation (apx/rules/cidr.rego)" in result.error


def test_an_ill_typed_decision_fails_closed(bundle_copy: Callable[..., Path]) -> None:
    path = bundle_copy(
        files={"apx/decision.rego": 'package apx\n\nimport rego.v1\n\ndecision := {"deny": "no"}\n'}
    )
    result = engine_for(path).evaluate(example_input())
    assert rules(result.deny) == [POLICY_ERROR_RULE]
    assert result.error is not None and "ill-formed" in result.error


def test_a_missing_decision_fails_closed(bundle_copy: Callable[..., Path]) -> None:
    path = bundle_copy(files={"apx/decision.rego": "package apx\n\nimport rego.v1\n\nverdict := {}\n"})
    result = engine_for(path).evaluate(example_input())
    assert result.error is not None and "undefined" in result.error
    assert not result.allowed


def test_an_evaluation_over_budget_fails_closed(bundle_copy: Callable[..., Path]) -> None:
    result = engine_for(bundle_copy(), budget_ms=0.000_001).evaluate(example_input())
    assert not result.allowed
    assert result.error is not None and "over its budget" in result.error


def test_an_input_that_is_not_json_fails_closed(engine: RegoPyEngine) -> None:
    result = engine.evaluate(policy_input(blast={"quota_factor": float("nan")}))
    assert result.error is not None and "not JSON" in result.error


def test_concurrent_evaluations_do_not_mix_their_inputs(engine: RegoPyEngine) -> None:
    inputs = [policy_input(blast={"replicas_after_max": 100 + i}) for i in range(8)]
    expected = [rules(engine.evaluate(i).deny) for i in inputs]
    seen: list[list[str]] = [[] for _ in inputs]

    def run(k: int) -> None:
        for _ in range(20):
            seen[k] = rules(engine.evaluate(inputs[k]).deny)
            assert seen[k] == expected[k]

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert seen == expected


# -- the compiled-bundle cache ----------------------------------------------------------------------


def test_a_cached_bundle_gives_the_same_decisions(tmp_path: Path) -> None:
    bundle = load_bundle(None)
    built = RegoPyEngine(bundle, cache_dir=tmp_path, isolate=False, budget_ms=10_000)
    cached = RegoPyEngine(bundle, cache_dir=tmp_path, isolate=False, budget_ms=10_000)
    assert (built.load_stats.source, cached.load_stats.source) == ("built", "cache")
    assert built.load_stats.cache_path is not None and bundle.info.sha256[:16] in built.load_stats.cache_path
    for _, _, firing, quiet in FIRES_AND_NOT:
        for document in (firing, quiet):
            a, b = built.evaluate(document), cached.evaluate(document)
            assert a.model_copy(update={"elapsed_ms": 0}) == b.model_copy(update={"elapsed_ms": 0})


def test_a_corrupt_cache_file_is_rebuilt(tmp_path: Path) -> None:
    bundle = load_bundle(None)
    RegoPyEngine(bundle, cache_dir=tmp_path, isolate=False, budget_ms=10_000)
    [cached] = tmp_path.glob("*.rbb")
    cached.write_bytes(b"not a bundle")
    engine = RegoPyEngine(bundle, cache_dir=tmp_path, isolate=False, budget_ms=10_000)
    assert engine.load_stats.source == "built"
    assert engine.load_stats.cache_error is not None
    assert engine.evaluate(example_input()).error is None


def test_a_changed_bundle_is_not_served_from_the_cache(
    bundle_copy: Callable[..., Path], tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    RegoPyEngine(load_bundle(bundle_copy()), cache_dir=cache, isolate=False)
    changed = RegoPyEngine(
        load_bundle(bundle_copy(data={"limits": {"max_replicas": 10}})), cache_dir=cache, isolate=False
    )
    assert changed.load_stats.source == "built"
    assert rules(changed.evaluate(policy_input(blast={"replicas_after_max": 11})).deny) == ["max-replicas"]


# -- the bundle's own tests, and lint ---------------------------------------------------------------


def test_the_shipped_bundle_passes_all_its_unit_tests() -> None:
    report = run_tests(None)
    assert report.passed, report.summary() + "".join(
        f"\n{r.file} {r.name}: {r.message}" for r in report.failures
    )
    tested_files = {r.file for r in report.results}
    assert {
        "apx/decision_test.rego",
        "apx/rules/routes_test.rego",
        "apx/rules/quota_test.rego",
        "apx/rules/replicas_test.rego",
        "apx/rules/network_test.rego",
        "apx/rules/approval_test.rego",
        "apx/rules/guard_test.rego",
    } <= tested_files


def test_a_failing_rego_test_is_reported_with_its_file(bundle_copy: Callable[..., Path]) -> None:
    failing = (
        "package apx_test.extra\n\nimport rego.v1\n\n"
        "test_ten_replicas_are_too_many if {\n"
        '\tcount(data.apx.rules.replicas.violation) == 1 with input.blast as {"replicas_after_max": 10}\n'
        "}\n\n"
        "test_passes if {\n\ttrue\n}\n"
    )
    report = run_tests(bundle_copy(files={"apx/extra_test.rego": failing}))
    assert not report.passed
    [failure] = report.failures
    assert (failure.file, failure.name, failure.outcome) == (
        "apx/extra_test.rego",
        "test_ten_replicas_are_too_many",
        "fail",
    )
    assert any(r.name == "test_passes" and r.passed for r in report.results)


def test_a_bundle_without_tests_does_not_pass(bundle_copy: Callable[..., Path]) -> None:
    path = bundle_copy()
    for test in path.rglob("*_test.rego"):
        test.unlink()
    report = run_tests(path)
    assert not report.passed and report.errors


def test_the_shipped_bundle_lints_clean() -> None:
    assert lint(None) == []


def test_lint_names_an_unsupported_builtin_and_a_compile_error_by_file_and_line(
    bundle_copy: Callable[..., Path],
) -> None:
    path = bundle_copy(files={"apx/rules/cidr.rego": CIDR_RULE})
    [problem] = lint(path)
    assert problem.startswith("apx/rules/cidr.rego:8: net.cidr_contains is not a built-in regopy implements")

    broken = bundle_copy(files={"apx/rules/broken.rego": "package apx.rules.broken\n\nx := [\n"})
    assert any(p.startswith("apx/rules/broken.rego:") for p in lint(broken))


def test_lint_flags_rego_that_regopy_gets_wrong(bundle_copy: Callable[..., Path]) -> None:
    path = bundle_copy(
        files={
            "apx/rules/mock_test.rego": (
                "package apx_test.mock\n\nimport rego.v1\n\n"
                "test_x if {\n\tdata.apx.decision with input as {}\n}\n"
            ),
            "apx/rules/limits.rego": "package apx\n\nimport rego.v1\n\nlimits := {}\n",
            "apx/rules/sorted.rego": (
                'package apx.rules.sorted\n\nimport rego.v1\n\nnames := sort({"b", "a"})\n'
            ),
        }
    )
    problems = "\n".join(lint(path))
    assert "apx/rules/mock_test.rego:6: `with input as`" in problems
    assert (
        "apx/rules/limits.rego:5: rule limits has the path of the data.json key data.apx.limits" in problems
    )
    assert "apx/rules/sorted.rego:5: regopy's sort()" in problems


def test_lint_catches_an_evaluation_error_it_cannot_see_statically(bundle_copy: Callable[..., Path]) -> None:
    conflict = (
        "package apx.rules.conflict\n\nimport rego.v1\n\n"
        "level := 1\n\nlevel := 2 if true\n\nviolation contains level\n"
    )
    path = bundle_copy(files={"apx/rules/conflict.rego": conflict})
    check = check_bundle(load_bundle(path))
    assert check.ok and check.evaluation_error is not None
    assert any("apx.rules.conflict.violation" in p for p in lint(path))


# -- loading and versioning -------------------------------------------------------------------------


def test_the_shipped_bundle_is_versioned() -> None:
    bundle = load_bundle(None)
    assert (bundle.info.name, bundle.info.version, bundle.compat) == ("apx-default", "1.0.0", "backward")
    assert bundle.info.sha256 == bundle_sha256(DEFAULT_BUNDLE)
    assert bundle.info.label == f"apx-default@1.0.0+{bundle.info.sha256[:12]}"
    assert "apx/decision.rego" in bundle.modules and not any(p.endswith("_test.rego") for p in bundle.modules)


def test_the_sha256_follows_the_content(bundle_copy: Callable[..., Path]) -> None:
    a, b = bundle_copy(), bundle_copy()
    assert bundle_sha256(a) == bundle_sha256(b)
    (b / "apx" / "lib.rego").write_text((b / "apx" / "lib.rego").read_text() + "\n")
    assert bundle_sha256(a) != bundle_sha256(b)
    (b / "apx" / "lib.rego").rename(b / "apx" / "lib2.rego")
    assert bundle_sha256(b) != bundle_sha256(a)


def test_a_limit_left_out_of_data_json_keeps_its_default(bundle_copy: Callable[..., Path]) -> None:
    path = bundle_copy()
    document = json.loads((path / "data.json").read_text())
    del document["apx"]["limits"]["max_replicas"]
    (path / "data.json").write_text(json.dumps(document))
    engine = engine_for(path)
    assert rules(engine.evaluate(policy_input(blast={"replicas_after_max": 101})).deny) == ["max-replicas"]


def test_waiver_expiry_is_precomputed_in_nanoseconds(bundle_copy: Callable[..., Path]) -> None:
    path = bundle_copy(data={"waivers": [{**WAIVER, "expires": "2025-06-01T12:00:00.5Z"}]})
    [waiver] = load_bundle(path).data["apx"]["waivers"]
    assert waiver["expires_ns"] == NOW_NS + 500_000_000


def test_a_bundle_yaml_manifest_works_too(bundle_copy: Callable[..., Path]) -> None:
    path = bundle_copy(files={"bundle.yaml": "name: team-policy\nversion: 2.1.0-rc.1\ncompat: breaking\n"})
    (path / ".manifest").unlink()
    bundle = load_bundle(path)
    assert (bundle.info.name, bundle.info.version, bundle.compat) == ("team-policy", "2.1.0-rc.1", "breaking")


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ({"version": "1.0"}, "semantic version"),
        ({"compat": "sideways"}, "compat must be backward or breaking"),
        ({"name": ""}, "name must be a non-empty string"),
    ],
)
def test_a_bad_manifest_is_refused(
    bundle_copy: Callable[..., Path], manifest: dict[str, str], message: str
) -> None:
    path = bundle_copy()
    document = json.loads((path / ".manifest").read_text())
    document["metadata"].update(manifest)
    (path / ".manifest").write_text(json.dumps(document))
    with pytest.raises(PolicyLoadError, match=message):
        load_bundle(path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"limits": {"max_replicas": "100"}}, "apx.limits.max_replicas must be a number"),
        ({"enforcement": {"max-replicas": "off"}}, "must be one of enforce, warn, dryrun"),
        ({"waivers": [{**WAIVER, "expires": "2025-07-01T00:00:00"}]}, "needs a timezone"),
        ({"waivers": [{**WAIVER}]}, "waivers are time-bound"),
        ({"waivers": [{**WAIVER, "expires": "2025-07-01T00:00:00Z", "tenat": "acme"}]}, "unknown keys tenat"),
        ({"waivers": [{**WAIVER, "ticket": "", "expires": "2025-07-01T00:00:00Z"}]}, "ticket must be"),
        ({"waivers": [{**WAIVER, "resource": "checkout", "expires": "2025-07-01T00:00:00Z"}]}, "Kind/name"),
    ],
    ids=["limit", "mode", "naive-expiry", "no-expiry", "typo", "no-ticket", "resource"],
)
def test_data_that_would_fail_open_is_refused_at_load(
    bundle_copy: Callable[..., Path], data: dict[str, Any], message: str
) -> None:
    with pytest.raises(PolicyLoadError, match=message) as refused:
        load_bundle(bundle_copy(data=copy.deepcopy(data)))
    assert all(e.startswith("data.json: ") for e in refused.value.errors)


def test_a_data_json_syntax_error_names_its_line(bundle_copy: Callable[..., Path]) -> None:
    path = bundle_copy()
    (path / "data.json").write_text('{\n  "apx": {\n    "limits": {,\n  }\n}\n')
    with pytest.raises(PolicyLoadError, match=r"data\.json:3: "):
        load_bundle(path)


# -- reading decisions (pure) -----------------------------------------------------------------------


def test_a_decision_missing_a_list_fails_closed() -> None:
    result = PolicyResult.from_decision(
        {"deny": [], "require_approval": [], "warn": [], "dryrun": []}, elapsed_ms=1.0
    )
    assert rules(result.deny) == [POLICY_ERROR_RULE]
    assert result.error == "the decision is ill-formed: it has no 'waived' list"


@pytest.mark.parametrize("decision", [None, [], {"deny": [{"rule": "r"}]}, {"deny": ["text"]}])
def test_any_ill_shaped_decision_fails_closed(decision: object) -> None:
    assert not PolicyResult.from_decision(decision, elapsed_ms=0.0).allowed
