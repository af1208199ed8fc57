"""One agent run, as a langgraph graph: observe → plan → propose → submit.

Every agent (:class:`Agent`: a name, the instructions an LLM planner gets, an
``observe`` step and its deterministic planner) runs through the same four
nodes, so no agent has a path around the pipeline:

* **observe** reads through the :class:`~agents.client.Client` (read-only);
* **plan** asks the planner (deterministic or LLM) for a :class:`Proposal`, or
  for why there is nothing to propose;
* **propose** turns the proposal into an ``Intent`` against the revision it
  observed (``baseRevision``, so the pipeline merges or refuses like git), with
  ``causedBy`` and the summary as rationale, and checks it against the intent
  envelope and every resource schema: a malformed proposal (an LLM's invalid
  output, a change to another tenant) is refused here, before anything is submitted;
* **submit** hands it to the orchestrator and waits for the decision.

A run returns an :class:`AgentRun` value. Store decisions, not reasoning: the
run holds the observation and proposal *summaries* and the decision, nothing more.

langgraph is imported when a run starts, so the planners (and their unit
tests, and ``apx --help``) do not pay for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypedDict, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError, computed_field

from agents.base import Observation, Planner, Proposal
from orchestrator.decision import EXIT_OK, EXIT_REJECTED, Decision
from orchestrator.errors import BadInput
from orchestrator.intent import API_VERSION, Intent
from orchestrator.logs import get_logger
from orchestrator.resources import validate_spec

if TYPE_CHECKING:
    from agents.client import Client
    from agents.settings import AgentsSettings

log = get_logger("apx.agents")


@dataclass(frozen=True, kw_only=True)
class Scope:
    """Who an agent acts for, where, when, and (the Builder) on what request."""

    tenant: str
    environment: str
    at: datetime
    request: str | None = None


@dataclass(frozen=True)
class Nothing:
    """Why a planner proposes nothing: a value, like a refused decision, so the user reads why."""

    reason: str


@runtime_checkable
class Explaining(Protocol):
    """A planner that can say why it proposes nothing (the deterministic ones do).

    A plain :class:`~agents.base.Planner` works too; its empty answer reads
    "<planner> proposed nothing".
    """

    name: str

    def assess(self, observation: Observation) -> Proposal | Nothing: ...


#: How an agent observes: read through the client, never write.
Observe = Callable[["Client", Scope, "AgentsSettings"], Observation]


@dataclass(frozen=True, kw_only=True)
class Agent:
    """An agent definition: what :mod:`agents.runner` registers and the graph runs."""

    name: str
    #: What an LLM planner is told the agent is for (the deterministic planner needs none).
    instructions: str
    observe: Observe
    #: The deterministic planner, built from the agents' settings.
    planner: Callable[[AgentsSettings], Planner]
    #: The Builder acts on a human request and has nothing to do without one.
    needs_request: bool = False


Outcome = Literal["submitted", "nothing_to_propose", "invalid_proposal"]


class AgentRun(BaseModel):
    """What one run did: ``apx agents run --json`` prints this object."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    agent: str
    tenant: str
    environment: str
    planner: str
    #: The environment commit the agent observed (the intent's ``baseRevision``).
    revision: str
    observed: str
    outcome: Outcome
    #: The proposal's summary (the intent's rationale), when there was one.
    proposal: str | None = None
    caused_by: str | None = None
    #: Why nothing was submitted (nothing to propose, or a proposal that is not a valid intent).
    reason: str | None = None
    decision: Decision | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def status(self) -> str:
        """The decision's status, or the outcome when nothing was submitted."""
        return self.decision.status.value if self.decision else self.outcome

    @property
    def intent_id(self) -> str | None:
        return self.decision.intent_id if self.decision else None

    @property
    def exit_code(self) -> int:
        """The decision's exit code; 0 with nothing to propose; 1 for a refused proposal."""
        if self.decision is not None:
            return self.decision.exit_code
        return EXIT_REJECTED if self.outcome == "invalid_proposal" else EXIT_OK

    def summary(self) -> str:
        if self.decision is not None:
            return f"{self.agent}: {self.decision.summary()}"
        if self.outcome == "invalid_proposal":
            return f"{self.agent}: proposal refused before submission: {self.reason}"
        return f"{self.agent}: nothing to propose: {self.reason}"


class _State(TypedDict, total=False):
    observation: Observation
    proposal: Proposal
    intent: Intent
    nothing: str
    invalid: str
    decision: Decision


def run(
    agent: Agent,
    *,
    client: Client,
    scope: Scope,
    settings: AgentsSettings,
    planner: Planner | None = None,
) -> AgentRun:
    """Run ``agent`` once for ``scope``: observe, plan, propose, submit. Returns what happened."""
    chosen = planner or agent.planner(settings)
    graph = _graph(agent, client=client, scope=scope, settings=settings, planner=chosen)
    state: _State = graph.invoke({})
    observation = state["observation"]
    proposal = state.get("proposal")
    decision = state.get("decision")
    outcome: Outcome = (
        "submitted" if decision else "invalid_proposal" if "invalid" in state else "nothing_to_propose"
    )
    result = AgentRun(
        agent=agent.name,
        tenant=scope.tenant,
        environment=scope.environment,
        planner=chosen.name,
        revision=observation.revision,
        observed=describe(observation),
        outcome=outcome,
        proposal=proposal.summary if proposal else None,
        caused_by=proposal.caused_by if proposal else None,
        reason=state.get("invalid") or state.get("nothing"),
        decision=decision,
    )
    # The canonical line of a run: summaries and the decision, never a planner's reasoning.
    log.info(
        "agent.run",
        agent=agent.name,
        planner=chosen.name,
        tenant=scope.tenant,
        environment=scope.environment,
        status=result.status,
        intent_id=result.intent_id,
        caused_by=result.caused_by,
        reason=result.reason,
    )
    return result


def _graph(agent: Agent, *, client: Client, scope: Scope, settings: AgentsSettings, planner: Planner) -> Any:
    from langgraph.graph import END, START, StateGraph

    def observe(state: _State) -> _State:
        return {"observation": agent.observe(client, scope, settings)}

    def plan(state: _State) -> _State:
        observation = state["observation"]
        try:
            if isinstance(planner, Explaining):
                answer = planner.assess(observation)
            else:
                answer = planner.plan(observation) or Nothing(f"{planner.name} proposed nothing")
        except BadInput as exc:
            # A planner refusing what it was given back (an LLM's unreadable output): a
            # refused proposal, reported like one, not a crash of the run.
            return {"invalid": exc.message}
        if isinstance(answer, Nothing):
            return {"nothing": answer.reason}
        return {"proposal": answer}

    def propose(state: _State) -> _State:
        intent_or_problem = to_intent(state["proposal"], state["observation"])
        if isinstance(intent_or_problem, str):
            return {"invalid": intent_or_problem}
        return {"intent": intent_or_problem}

    def submit(state: _State) -> _State:
        return {"decision": client.submit(state["intent"], agent=agent.name)}

    def unless(*keys: str, then: str) -> Callable[[_State], str]:
        """Go on to ``then`` unless the run already ended (one of ``keys`` is set)."""
        return lambda state: END if any(key in state for key in keys) else then

    graph = StateGraph(_State)
    graph.add_node("observe", observe)
    graph.add_node("plan", plan)
    graph.add_node("propose", propose)
    graph.add_node("submit", submit)
    graph.add_edge(START, "observe")
    graph.add_edge("observe", "plan")
    graph.add_conditional_edges("plan", unless("nothing", "invalid", then="propose"), ["propose", END])
    graph.add_conditional_edges("propose", unless("invalid", then="submit"), ["submit", END])
    graph.add_edge("submit", END)
    return graph.compile()


def to_intent(proposal: Proposal, observation: Observation) -> Intent | str:
    """The intent for ``proposal``, or one sentence on why it is not a valid one.

    Checked here, before submission, so a malformed proposal never reaches the
    intent log: the envelope (kinds, names, tenant, one change per resource) and
    every resource's schema.
    """
    metadata: dict[str, Any] = {"tenant": observation.tenant, "baseRevision": observation.revision}
    if proposal.caused_by:
        metadata["causedBy"] = proposal.caused_by
    document = {
        "apiVersion": API_VERSION,
        "kind": "Intent",
        "metadata": metadata,
        "spec": {
            "environment": observation.environment,
            "rationale": proposal.summary,
            "changes": proposal.changes,
        },
    }
    try:
        intent = Intent.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "intent"
        return f"{where}: {first['msg']}"
    for i, change in enumerate(intent.spec.changes):
        if change.action == "delete":
            continue
        problems = validate_spec(change.resource.kind, change.resource.spec)
        if problems:
            return f"spec.changes[{i}] ({change.resource.key}): {problems[0]}"
    return intent


def describe(observation: Observation) -> str:
    """One line on what the agent saw: revision, resources, samples, recent changes."""
    parts = [
        f"{observation.environment}@{observation.revision[:12]}",
        f"{len(observation.resources)} resources of {observation.tenant}",
    ]
    if observation.metrics or observation.samples:
        pools = ", ".join(
            f"{scope} util {m['utilisation']:.2f}"
            for scope, m in sorted(observation.metrics.items())
            if "utilisation" in m
        )
        parts.append(f"{observation.samples} samples" + (f" ({pools})" if pools else ""))
    if observation.recent:
        parts.append(f"{len(observation.recent)} recent landed intents")
    if observation.request:
        parts.append(f"request {observation.request!r}")
    return "; ".join(parts)
