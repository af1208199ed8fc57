"""The files in examples/ are real, valid intents against the seeded environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.intent import Intent
from orchestrator.parsing import parse_intent
from orchestrator.seed import seed_files
from validators.base import ValidationContext
from validators.schema import ReferenceValidator, SchemaValidator

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FILES = sorted(EXAMPLES.glob("*.yaml"))
INVALID = {"builder-invalid-replicas.yaml"}


def context(intent: Intent) -> ValidationContext:
    before: dict[str, dict[str, Any]] = {p: yaml.safe_load(t) for p, t in seed_files().items()}
    after = dict(before)
    for change in intent.spec.changes:
        path = change.resource.key.path
        existing = path in before
        assert existing == (change.action != "create"), f"{change.action} of {path}, which exists: {existing}"
        if change.action == "delete":
            del after[path]
        else:
            after[path] = change.resource.document()
    changed = frozenset(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    return ValidationContext(intent=intent, agent="example", before=before, after=after, changed=changed)


def test_there_are_examples_and_a_readme_listing_them() -> None:
    assert len(FILES) >= 5
    readme = (EXAMPLES / "README.md").read_text()
    for path in FILES:
        assert path.name in readme


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_example_parses(path: Path) -> None:
    intent = parse_intent(path.read_bytes(), source=str(path))
    assert intent.tenant == "acme"
    assert intent.spec.rationale


@pytest.mark.parametrize("path", [p for p in FILES if p.name not in INVALID], ids=lambda p: p.name)
def test_valid_examples_pass_schema_and_references_against_the_seed(path: Path) -> None:
    ctx = context(parse_intent(path.read_bytes(), source=str(path)))
    assert ctx.changed, "an example must change something"
    for validator in (SchemaValidator(), ReferenceValidator()):
        check = validator.check(ctx)
        assert check.passed, check.messages


def test_the_invalid_replicas_example_is_rejected_by_schema() -> None:
    intent = parse_intent((EXAMPLES / "builder-invalid-replicas.yaml").read_bytes())
    check = SchemaValidator().check(context(intent))
    assert check.messages == ["WorkerPool/refunds-worker: spec.replicas: must be ≤ maxReplicas (20), got 25"]


def test_update_examples_change_only_what_they_say() -> None:
    def changed_spec(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        intent = parse_intent((EXAMPLES / name).read_bytes())
        resource = intent.spec.changes[0].resource
        seeded = yaml.safe_load(seed_files()[resource.key.path])["spec"]
        return seeded, dict(resource.spec or {})

    seeded, desired = changed_spec("optimizer-scale-checkout.yaml")
    assert (seeded["replicas"], desired["replicas"]) == (4, 6)
    assert seeded | {"replicas": 6} == desired

    seeded, desired = changed_spec("optimizer-raise-pro-quota.yaml")
    factor = desired["plans"][1]["quota"] / seeded["plans"][1]["quota"]
    assert 1 < factor <= 2
    seeded["plans"][1]["quota"] = desired["plans"][1]["quota"]
    assert seeded == desired

    seeded, desired = changed_spec("security-tighten-edge.yaml")
    assert [r["cidr"] for r in seeded["ingress"]] == ["10.0.0.0/8", "192.168.0.0/16"]
    assert desired["ingress"] == seeded["ingress"][:1]
