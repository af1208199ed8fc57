"""What every agent shares: what it saw, what it proposes, and who plans it.

A :class:`Planner` turns an :class:`Observation` into a :class:`Proposal`, or
into nothing. Each agent has a deterministic planner (works offline, the
default) and can use an LLM planner instead (:mod:`agents.llm`) when models are
configured; both return the same validated :class:`Proposal`, so nothing an
LLM writes reaches the orchestrator without passing this schema first.

Store decisions, not reasoning: a proposal carries a short ``summary`` (it
becomes the intent's rationale) and the changes. There is deliberately no field
for the model's reasoning, so there is nowhere for it to be persisted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

#: A rationale is a summary, never an essay (and never raw reasoning).
MAX_SUMMARY = 500
#: An agent proposal larger than this is not a proposal, it is a rewrite.
MAX_CHANGES = 60


class Proposal(BaseModel):
    """What a planner proposes: validated before anything is submitted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    summary: str = Field(min_length=1, max_length=MAX_SUMMARY)
    #: Intent changes (``action`` + whole ``resource``), as in the intent contract.
    changes: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_CHANGES)
    #: The intent this one reacts to (another agent's change), if any: it becomes ``causedBy``.
    caused_by: str | None = None


@dataclass(frozen=True, kw_only=True)
class Observation:
    """What an agent saw before planning. Read-only facts, gathered by the agent's ``observe`` step."""

    agent: str
    tenant: str
    environment: str
    at: datetime
    #: The environment branch commit observed (becomes the intent's ``baseRevision``).
    revision: str
    #: ``Kind/name`` → the resource document at ``revision``.
    resources: dict[str, dict[str, Any]]
    #: A human request (the Builder's input), if any.
    request: str | None = None
    #: Per-pool metrics over the observation window: ``{"pool/checkout": {"rps": …, "p95_ms": …, …}}``.
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    #: Distinct sample times behind ``metrics``.
    samples: int = 0
    #: Recent landed intents touching this tenant, every agent's (own included):
    #: ``[{"id", "agent", "targets"}]``.
    recent: list[dict[str, Any]] = field(default_factory=list)

    def reacting_to(self, touches: Callable[[str], bool]) -> str | None:
        """The intent a proposal reacts to, for its ``causedBy``: the newest recent one with a
        target ``touches`` accepts, when it was another agent's (reacting to oneself is no loop)."""
        touching = [r for r in self.recent if any(touches(t) for t in r["targets"])]
        if not touching or touching[-1]["agent"] == self.agent:
            return None
        return str(touching[-1]["id"])


class Planner(Protocol):
    name: str

    def plan(self, observation: Observation) -> Proposal | None:
        """A proposal, or None when there is nothing worth proposing."""
        ...
