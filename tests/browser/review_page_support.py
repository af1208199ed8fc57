"""What the review-page tests share: the principals they log in as, intents, small readers.

A module of its own (not the conftest) so test modules can import it by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from orchestrator.principals import Principals
from orchestrator.seed import seed_files

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from orchestrator.bootstrap import App

CHROMIUM = Path("/usr/bin/chromium")
POOL = "WorkerPool/checkout.yaml"

#: For the tests whose page reads the store in its own way (paging, tenants, merges, breakers):
#: run them on PostgreSQL too. The rest are about the page, and SQLite is enough.
BOTH_STORES = pytest.mark.parametrize(
    "settings", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


@dataclass(frozen=True)
class Tokens:
    """One token per kind of caller the page must tell apart."""

    #: ``agent:optimizer`` for acme: submits, never reviews.
    agent: str
    #: ``alice``, reviewer of acme.
    reviewer: str
    #: ``gina``, reviewer of globex only: must not see acme's PRs.
    outsider: str
    #: ``erin``, engineer of acme: resets breakers, does not review.
    engineer: str
    #: ``optimizer``, a human reviewer account named like the agent that submits: refused as the submitter.
    namesake: str


def add_principals(home: Path) -> Tokens:
    principals = Principals.load(home)
    return Tokens(
        agent=principals.add("optimizer-bot", "agent:optimizer", ["acme"]),
        reviewer=principals.add("alice", "reviewer", ["acme"]),
        outsider=principals.add("gina", "reviewer", ["globex"]),
        engineer=principals.add("erin", "engineer", ["acme"]),
        namesake=principals.add("optimizer", "reviewer", ["acme"]),
    )


def pool(replicas: int) -> dict[str, Any]:
    """The seeded WorkerPool ``checkout`` (replicas 4) with another replica count."""
    document: dict[str, Any] = yaml.safe_load(seed_files()[POOL])
    document["spec"]["replicas"] = replicas
    return document


def intent_document(
    environment: str, replicas: int, *, rationale: str = "p95 over SLO", caused_by: str | None = None
) -> dict[str, Any]:
    """An intent as an agent on another host sends it (the JSON body of POST /v1/intents)."""
    metadata: dict[str, Any] = {"tenant": "acme"}
    if caused_by:
        metadata["causedBy"] = caused_by
    return {
        "apiVersion": "apx/v1",
        "kind": "Intent",
        "metadata": metadata,
        "spec": {
            "environment": environment,
            "rationale": rationale,
            "changes": [{"action": "update", "resource": pool(replicas)}],
        },
    }


def login(client: TestClient, token: str) -> None:
    response = client.post("/login", data={"token": token})
    assert response.status_code == 303, response.text


def audit_actions(app: App) -> list[tuple[str, str]]:
    """(action, actor) of every audit entry, oldest first."""
    from audit.entry import parse_body

    return [(b["action"], b["actor"]) for b in (parse_body(body) for _s, body, _l in app.store.audit.rows())]
