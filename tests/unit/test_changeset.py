"""Planning an intent against the branch as it really is when its turn comes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from orchestrator.changeset import Plan, Refusal, parse_environment, plan, render
from orchestrator.intent import Intent

PATH = "WorkerPool/checkout.yaml"


def pool(**spec: Any) -> dict[str, Any]:
    base = {"replicas": 4, "minReplicas": 2, "maxReplicas": 20, "accelerator": "none", "spot": False}
    return {
        "apiVersion": "apx/v1",
        "kind": "WorkerPool",
        "metadata": {"name": "checkout", "tenant": "acme"},
        "spec": {**base, **spec},
    }


def intent(action: str, resource: dict[str, Any], tenant: str = "acme") -> Intent:
    return Intent.model_validate(
        {
            "apiVersion": "apx/v1",
            "kind": "Intent",
            "metadata": {"tenant": tenant},
            "spec": {"environment": "dev", "changes": [{"action": action, "resource": resource}]},
        }
    )


def env(*docs: dict[str, Any]) -> dict[str, Any]:
    return {f"{d['kind']}/{d['metadata']['name']}.yaml": d for d in docs}


def run(i: Intent, base: dict[str, Any], current: dict[str, Any]) -> Plan | Refusal:
    return plan(i, base=base, current=current, current_files={p: render(d) for p, d in current.items()})


def test_update_on_an_unchanged_branch_writes_the_new_document_with_a_diff_and_inverse() -> None:
    state = env(pool())
    result = run(intent("update", pool(replicas=6)), state, state)
    assert isinstance(result, Plan)
    assert parse_environment({PATH: result.files[PATH] or ""})[PATH]["spec"]["replicas"] == 6
    assert "-  replicas: 4" in result.diff[PATH] and "+  replicas: 6" in result.diff[PATH]
    assert result.inverse == [{"action": "update", "resource": pool()}]


def test_a_later_change_to_the_same_field_is_a_conflict_naming_the_field() -> None:
    result = run(intent("update", pool(replicas=6)), env(pool()), env(pool(replicas=8)))
    assert isinstance(result, Refusal) and result.conflict
    assert "spec.replicas was set to 8 by a change that landed after" in result.reasons[0]


def test_a_later_change_to_another_field_is_kept_and_noted() -> None:
    result = run(intent("update", pool(replicas=6)), env(pool()), env(pool(spot=True)))
    assert isinstance(result, Plan)
    assert result.after[PATH]["spec"] == pool(replicas=6, spot=True)["spec"]
    assert "spec.spot" in result.notes[0]


def test_delete_of_a_resource_changed_since_is_a_conflict() -> None:
    result = run(
        intent("delete", {k: pool()[k] for k in ("apiVersion", "kind", "metadata")}),
        env(pool()),
        env(pool(replicas=9)),
    )
    assert isinstance(result, Refusal) and result.conflict


def test_create_of_an_existing_resource_is_refused_without_conflict() -> None:
    state = env(pool())
    result = run(intent("create", pool(replicas=5)), state, state)
    assert isinstance(result, Refusal) and not result.conflict
    assert "already exists" in result.reasons[0]


def test_update_of_a_missing_resource_is_refused() -> None:
    result = run(intent("update", pool()), {}, {})
    assert isinstance(result, Refusal) and "does not exist" in result.reasons[0]


def test_another_tenants_resource_cannot_be_changed() -> None:
    theirs = copy.deepcopy(pool())
    theirs["metadata"]["tenant"] = "globex"
    result = run(intent("update", pool(replicas=6)), env(theirs), env(theirs))
    assert isinstance(result, Refusal) and "belongs to tenant 'globex'" in result.reasons[0]


def test_an_update_to_the_current_content_changes_no_file() -> None:
    state = env(pool())
    result = run(intent("update", pool()), state, state)
    assert isinstance(result, Plan) and result.files == {}


@pytest.mark.parametrize("label", ["app.kubernetes.io/name"])
def test_keys_with_dots_survive_a_merge(label: str) -> None:
    mine = pool(replicas=6)
    mine["metadata"]["labels"] = {label: "checkout"}
    base = copy.deepcopy(mine)
    base["spec"]["replicas"] = 4
    theirs = copy.deepcopy(base)
    theirs["spec"]["spot"] = True
    result = run(intent("update", mine), env(base), env(theirs))
    assert isinstance(result, Plan)
    assert result.after[PATH]["metadata"]["labels"] == {label: "checkout"}
