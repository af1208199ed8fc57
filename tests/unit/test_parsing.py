"""Reading intents: good input parses, bad input gives one line naming the file, line:column and field."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.errors import IntentFormatError
from orchestrator.intent import Intent, ResourceKey
from orchestrator.parsing import MAX_DEPTH, locate, parse_intent, parse_resource_document
from orchestrator.seed import seed_files

GOOD = """\
apiVersion: apx/v1
kind: Intent
metadata: {tenant: acme}
spec:
  environment: dev
  rationale: "p95 over SLO for 5m"
  changes:
    - action: update
      resource:
        apiVersion: apx/v1
        kind: WorkerPool
        metadata: {name: checkout, tenant: acme}
        spec:
          replicas: 6
          minReplicas: 2
          maxReplicas: 20
          accelerator: none
          spot: false
"""
SECOND_CHANGE = """\
    - action: create
      resource:
        apiVersion: apx/v1
        kind: Route
        metadata: {name: extra, tenant: acme}
        spec: {host: api.acme.example, path: /x, product: payments-api, auth: none}
"""


def error(text: str | bytes, **kwargs: Any) -> str:
    with pytest.raises(IntentFormatError) as info:
        parse_intent(text, source="intent.yaml", **kwargs)
    message = str(info.value)
    assert "\n" not in message, "errors are one line"
    assert "Traceback" not in message and "errors.pydantic.dev" not in message
    return message


def test_valid_yaml_parses_into_an_intent() -> None:
    intent = parse_intent(GOOD)
    assert intent.tenant == "acme"
    assert intent.environment == "dev"
    assert intent.targets == [ResourceKey(kind="WorkerPool", name="checkout")]
    assert intent.spec.changes[0].resource.spec == {
        "replicas": 6,
        "minReplicas": 2,
        "maxReplicas": 20,
        "accelerator": "none",
        "spot": False,
    }


def test_the_same_intent_as_json_parses_to_an_equal_intent() -> None:
    as_json = json.dumps(yaml.safe_load(GOOD), indent=2)
    assert parse_intent(as_json) == parse_intent(GOOD)
    assert parse_intent(as_json.encode()) == parse_intent(GOOD.encode())


def test_bytes_with_a_utf8_bom_parse() -> None:
    assert parse_intent(b"\xef\xbb\xbf" + GOOD.encode()) == parse_intent(GOOD)


def test_unquoted_dates_stay_strings() -> None:
    intent = parse_intent(GOOD.replace('"p95 over SLO for 5m"', "2024-05-01"))
    assert intent.spec.rationale == "2024-05-01"


ENVELOPE_CASES = [
    # name, replace this, with this, expected message after "intent.yaml:"
    ("unknown kind", "kind: WorkerPool", "kind: Widget",
     "11:9: spec.changes[0].resource.kind: Input should be 'Product', 'Route', 'WorkerPool', "
     "'NetworkPolicy' or 'PolicyBundle', got 'Widget'"),
    ("unknown resource apiVersion", "        apiVersion: apx/v1", "        apiVersion: apx/v2",
     "10:9: spec.changes[0].resource.apiVersion: unknown apiVersion 'apx/v2'; expected one of apx/v1"),
    ("unknown intent apiVersion", "apiVersion: apx/v1\nkind: Intent", "apiVersion: apx/v0\nkind: Intent",
     "1:1: apiVersion: Input should be 'apx/v1', got 'apx/v0'"),
    ("not an intent", "kind: Intent", "kind: Deployment",
     "2:1: kind: Input should be 'Intent', got 'Deployment'"),
    ("name with a slash", "name: checkout", "name: ../../etc/passwd",
     "12:20: spec.changes[0].resource.metadata.name: name '../../etc/passwd' is not a valid name"),
    ("name with dots", "name: checkout", "name: check..out",
     "12:20: spec.changes[0].resource.metadata.name: name 'check..out' is not a valid name"),
    ("tenant mismatch", "{name: checkout, tenant: acme}", "{name: checkout, tenant: globex}",
     "8:7: spec.changes[0] (WorkerPool/checkout) is for tenant 'globex' but the intent is for tenant 'acme'"),
    ("misspelt field", "  rationale:", "  rational:",
     "6:3: spec.rational: unknown field; did you mean 'rationale'? expected one of: environment, "
     "rationale, changes"),
    ("missing field", "  environment: dev\n", "",
     "4:1: spec.environment: required field is missing"),
    ("unknown action", "action: update", "action: upsert",
     "8:7: spec.changes[0].action: Input should be 'create', 'update' or 'delete', got 'upsert'"),
    ("no changes", "  changes:\n", "  changes: []\n  old:\n",
     "7:3: spec.changes: must have at least 1 item, got 0"),
    ("wrong type", "environment: dev", "environment: [dev, prod]",
     "5:3: spec.environment: Input should be a valid string, got a list"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "expected"), [c[1:] for c in ENVELOPE_CASES], ids=[c[0] for c in ENVELOPE_CASES]
)
def test_envelope_errors_name_the_field_and_its_line_and_column(old: str, new: str, expected: str) -> None:
    assert old in GOOD
    assert error(GOOD.replace(old, new, 1)).startswith(f"intent.yaml:{expected}")


def test_a_resource_changed_twice_is_refused_at_the_second_change() -> None:
    second = GOOD[GOOD.index("    - action") :]
    assert error(GOOD + second) == (
        "intent.yaml:19:7: spec.changes[1] changes WorkerPool/checkout a second time; one change per resource"
    )


def test_several_problems_are_counted_on_the_one_line() -> None:
    text = GOOD.replace("kind: WorkerPool", "kind: Widget").replace("environment: dev", "environment: 5")
    assert error(text).endswith("(and 1 more problem)")


def test_json_envelope_errors_have_positions_in_the_json_text() -> None:
    as_json = json.dumps(yaml.safe_load(GOOD), indent=2).replace('"WorkerPool"', '"Widget"')
    line, column = next(
        (i, s.index('"kind"') + 1) for i, s in enumerate(as_json.splitlines(), 1) if "Widget" in s
    )
    assert error(as_json).startswith(f"intent.yaml:{line}:{column}: spec.changes[0].resource.kind:")


SYNTAX_CASES = [
    ("unclosed flow mapping", GOOD.replace("{tenant: acme}", "{tenant: acme"),
     "intent.yaml:4:5: invalid YAML: did not find expected ',' or '}' "
     "(while parsing a flow mapping at 3:11)"),
    ("bad indentation", GOOD.replace("  rationale", " rationale"),
     "intent.yaml:6:2: invalid YAML:"),
    ("tab indentation", GOOD.replace("  environment", "\tenvironment"),
     "intent.yaml:5:1: invalid YAML: found character that cannot start any token"),
    ("json trailing comma", '{"apiVersion": "apx/v1",\n "kind": "Intent",}',
     "intent.yaml:2:19: invalid JSON: Expecting property name enclosed in double quotes"),
    ("json unterminated string", '{"apiVersion": "apx/v1}',
     "intent.yaml:1:16: invalid JSON: Unterminated string"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in SYNTAX_CASES], ids=[c[0] for c in SYNTAX_CASES]
)
def test_syntax_errors_give_source_line_and_column(text: str, expected: str) -> None:
    assert error(text).startswith(expected)


def test_input_over_the_size_limit_is_refused_before_parsing() -> None:
    text = "{{{ not even yaml " + "x" * 2000
    message = error(text, max_bytes=1000)
    assert message == (
        "intent.yaml: the input is 2,018 bytes, over the limit of 1,000 bytes; "
        "split the change into smaller intents"
    )
    assert "1 MiB (1,048,576 bytes)" in error(b"a" * ((1 << 20) + 1))


def test_size_counts_utf8_bytes_not_characters() -> None:
    assert "is 1,002 bytes" in error("é" * 501, max_bytes=1000)


def test_non_utf8_bytes_are_refused_with_their_position() -> None:
    data = GOOD.replace("dev", "d\xe9v").encode("latin-1")
    assert (
        error(data) == "intent.yaml:5:17: not UTF-8 text (invalid continuation byte 0xe9); save it as UTF-8"
    )


NOT_AN_INTENT = "intent.yaml:1:1: expected an Intent (a mapping with apiVersion, kind, metadata, spec), got"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", f"{NOT_AN_INTENT} a list"),
        ("just words", f"{NOT_AN_INTENT} a string"),
        ("~", f"{NOT_AN_INTENT} nothing (null)"),
        ("", "intent.yaml:1:1: the document is empty"),
        ("# only a comment\n", "intent.yaml:1:1: the document is empty"),
    ],
)
def test_a_document_that_is_not_a_mapping_is_refused(text: str, expected: str) -> None:
    assert error(text) == expected


def test_several_yaml_documents_are_refused_at_the_second() -> None:
    assert error(GOOD + "---\n" + GOOD) == (
        "intent.yaml:19:1: a second YAML document starts here; submit one intent per file"
    )


def test_any_yaml_alias_is_refused() -> None:
    text = GOOD.replace("metadata: {tenant: acme}", "metadata: &meta {tenant: acme}").replace(
        "  rationale:", "  labels: *meta\n  rationale:"
    )
    assert (
        error(text) == "intent.yaml:6:11: YAML aliases (*meta) are not allowed; write the value out in full"
    )


def test_billion_laughs_is_refused_quickly() -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    assert "YAML aliases (*a0) are not allowed" in error("\n".join(lines))


@pytest.mark.parametrize(
    "opener", ["a: " + "[" * 200_000, '{"a": ' + "[" * 200_000, "a:\n" + "- " * 5000 + "x"]
)
def test_deep_nesting_is_refused_without_crashing(opener: str) -> None:
    assert f"nested more than {MAX_DEPTH} levels deep" in error(opener)


def test_duplicate_keys_are_refused_not_silently_overwritten() -> None:
    text = GOOD.replace("          replicas: 6\n", "          replicas: 6\n          replicas: 150\n")
    assert error(text) == "intent.yaml:15:11: duplicate key 'replicas' (first on line 14)"


def test_duplicate_keys_in_json_are_refused_with_their_position() -> None:
    text = '{\n  "apiVersion": "apx/v1",\n  "apiVersion": "apx/v2"\n}'
    assert error(text) == "intent.yaml:3:3: duplicate key 'apiVersion' (first on line 2)"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("replicas: 6", "replicas: 123456789012345678901", "intent.yaml:14:21: integer is beyond ±2**53"),
        ("replicas: 6", "replicas: .inf", "intent.yaml:14:21: number is not finite"),
        ("replicas: 6", "replicas: !!binary aGk=", "intent.yaml:14:21: YAML tag !!binary is not supported"),
        ("replicas: 6", "replicas: !!set {a}", "intent.yaml:14:21: YAML tag !!set is not supported"),
        ("replicas: 6", "replicas: !custom 6", "intent.yaml:14:21: YAML tag !custom is not supported"),
        (
            "spot: false",
            "spot: false\n          on: 1",
            "intent.yaml:19:11: mapping key 'on' is not read as a string",
        ),
        (
            "spot: false",
            "spot: false\n          <<: {a: 1}",
            "intent.yaml:19:11: merge keys (<<) are not supported",
        ),
        ("spot: false", "spot: false\n          [a]: 1", "intent.yaml:19:11: mapping keys must be strings"),
        ("dev", "d\x07v", "intent.yaml:5:17: invalid YAML: control characters are not allowed"),
    ],
)
def test_values_json_cannot_hold_are_refused(old: str, new: str, expected: str) -> None:
    assert error(GOOD.replace(old, new, 1)).startswith(expected)


def test_json_nan_and_huge_numbers_are_refused_with_positions() -> None:
    as_json = json.dumps(yaml.safe_load(GOOD), indent=2)
    line, key = next(
        (i, s.index('"replicas"') + 1) for i, s in enumerate(as_json.splitlines(), 1) if "replicas" in s
    )
    assert error(as_json.replace('"replicas": 6', '"replicas": NaN')) == (
        f"intent.yaml:{line}:{key + 12}: NaN is not a JSON number; use a finite number"
    )
    assert error(as_json.replace('"replicas": 6', '"replicas": 1e999')).startswith(
        f"intent.yaml:{line}:{key}: spec.changes[0].resource.spec.replicas: number is not finite"
    )


def test_locate_falls_back_to_the_nearest_existing_parent() -> None:
    assert locate(GOOD, ("spec", "changes", 0, "resource", "spec", "nope", 3)) == (13, 9)
    assert locate(GOOD, ("spec", "changes", 5)) == (7, 3)
    assert locate("{{{", ("a",)) == (1, 1)


# --- config-repo documents ----------------------------------------------------------------------


def test_every_seeded_document_reads_as_a_resource() -> None:
    for path, text in seed_files().items():
        resource = parse_resource_document(text, source=path, expect=ResourceKey.parse(path))
        assert resource.key.path == path


def test_a_resource_document_must_be_what_its_path_says() -> None:
    text = seed_files()["WorkerPool/checkout.yaml"]
    with pytest.raises(IntentFormatError) as info:
        parse_resource_document(
            text, source="WorkerPool/batch.yaml", expect=ResourceKey.parse("WorkerPool/batch")
        )
    assert str(info.value) == (
        "WorkerPool/batch.yaml:4:3: the document is WorkerPool/checkout but its path says WorkerPool/batch"
    )


def test_a_resource_document_needs_a_spec_and_known_fields() -> None:
    with pytest.raises(IntentFormatError, match=r"^Route/x.yaml:1:1: spec: required field is missing$"):
        parse_resource_document(
            "apiVersion: apx/v1\nkind: Route\nmetadata: {name: x, tenant: acme}\n", source="Route/x.yaml"
        )
    with pytest.raises(IntentFormatError) as info:
        parse_resource_document(
            "apiVersion: apx/v1\nkind: Route\nmetadata: {name: x, tenant: acme}\nspec: {}\nstatus: {}\n",
            source="Route/x.yaml",
        )
    assert str(info.value) == (
        "Route/x.yaml:5:1: status: unknown field; expected one of: apiVersion, kind, metadata, spec"
    )


# --- nothing but IntentFormatError, whatever the input ------------------------------------------


def parses_or_refuses(data: str | bytes) -> None:
    try:
        result = parse_intent(data, source="fuzz")
    except IntentFormatError as exc:
        assert "\n" not in str(exc)
        assert re.match(r"^fuzz(:\d+:\d+)?: \S", str(exc)), str(exc)
    else:
        assert isinstance(result, Intent)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_arbitrary_text_raises_only_intent_format_error(text: str) -> None:
    parses_or_refuses(text)


@settings(max_examples=300)
@given(st.binary())
def test_arbitrary_bytes_raise_only_intent_format_error(data: bytes) -> None:
    parses_or_refuses(data)


YAML_PIECES = st.sampled_from(
    ["\n", " ", "  ", "- ", ": ", "{", "}", "[", "]", ",", "&a ", "*a", "!!", "!x ", "? ", "---\n", "...\n",
     "#", '"', "'", "|\n", ">\n", "<<: ", "apiVersion", "kind", "spec", "changes", "resource", "metadata",
     "tenant", "acme", "1", "-1.5e+3", ".nan", "~", "true", "on", "2024-01-01", "0x1F", "\t", "%YAML 1.1\n"]
)  # fmt: skip


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(YAML_PIECES, max_size=40).map("".join))
def test_yaml_shaped_noise_raises_only_intent_format_error(text: str) -> None:
    parses_or_refuses(text)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(GOOD)), st.integers(0, 5), st.text(max_size=5))
def test_damaged_intents_raise_only_intent_format_error(at: int, cut: int, insert: str) -> None:
    parses_or_refuses(GOOD[:at] + insert + GOOD[at + cut :])
    as_json = json.dumps(yaml.safe_load(GOOD))
    parses_or_refuses(as_json[:at] + insert + as_json[at + cut :])
