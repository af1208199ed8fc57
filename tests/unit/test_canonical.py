"""Dedupe keys ignore formatting and nothing else."""

from __future__ import annotations

import json
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.canonical import dedupe_key

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


def shuffled(value: Any, rnd: Any) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {k: shuffled(v, rnd) for k, v in items}
    if isinstance(value, list):
        return [shuffled(v, rnd) for v in value]
    return value


@given(changes=st.lists(json_values, min_size=1, max_size=3), rnd=st.randoms())
def test_key_order_yaml_or_json_and_whitespace_do_not_change_the_key(changes: list[Any], rnd: Any) -> None:
    key = dedupe_key(tenant="acme", environment="dev", changes=changes)
    as_yaml = yaml.safe_load(yaml.safe_dump(shuffled(changes, rnd), default_flow_style=False))
    as_json = json.loads(json.dumps(shuffled(changes, rnd), indent=7))
    assert dedupe_key(tenant="acme", environment="dev", changes=as_yaml) == key
    assert dedupe_key(tenant="acme", environment="dev", changes=as_json) == key


def test_integral_float_and_int_are_the_same_value() -> None:
    a = dedupe_key(tenant="acme", environment="dev", changes=[{"spec": {"replicas": 6}}])
    b = dedupe_key(tenant="acme", environment="dev", changes=[{"spec": {"replicas": 6.0}}])
    assert a == b


@given(a=json_values, b=json_values)
def test_different_changes_give_different_keys(a: Any, b: Any) -> None:
    if json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
        assert dedupe_key(tenant="t", environment="e", changes=[a]) != dedupe_key(
            tenant="t", environment="e", changes=[b]
        )


def test_tenant_and_environment_are_part_of_the_key() -> None:
    changes = [{"action": "update"}]
    keys = {
        dedupe_key(tenant=t, environment=e, changes=changes)
        for t in ("acme", "globex")
        for e in ("dev", "prod")
    }
    assert len(keys) == 4
