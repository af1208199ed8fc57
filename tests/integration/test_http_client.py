"""The agents' HTTP client against a real server: uvicorn on 127.0.0.1 in this process.

The server is :class:`orchestrator.serve.Service` (what ``apx serve`` runs, without
the scheduler) over a home made by ``init_home``, so the API, its drain worker, the
pipeline and the git repo are all real. Time is a :class:`FrozenClock` shared by
the server and the test, as in ``test_agents.py``: the data plane's "minute" of
samples is frozen time the test advances. Each read is compared with what
:class:`~agents.client.InProcessClient` sees on the same App, so the two clients
cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from test_agents import AGENTS, REQUEST, dev_file, tick

from agents.client import InProcessClient
from agents.graph import AgentRun
from agents.http_client import HttpClient
from agents.runner import run_agent, run_with
from orchestrator.bootstrap import App, build
from orchestrator.decision import Status
from orchestrator.errors import BadInput, Forbidden, InternalError, Unauthenticated
from orchestrator.intent import Intent
from orchestrator.principals import Principals
from orchestrator.records import IntentQuery
from orchestrator.serve import Service, bind
from orchestrator.settings import Settings
from orchestrator.testing import FrozenClock


@dataclass
class Served:
    app: App
    url: str
    tokens: dict[str, str]


@pytest.fixture
def served(settings: Settings, clock: FrozenClock) -> Iterator[Served]:
    app = build(settings.home, settings=settings, clock=clock)
    principals = Principals.load(settings.home)
    tokens = {
        "builder": principals.add("builder", "agent:builder", ["acme"]),
        "optimizer": principals.add("optimizer", "agent:optimizer", ["acme"]),
        "globex-optimizer": principals.add("globex-optimizer", "agent:optimizer", ["globex"]),
    }
    service = Service(app, host="127.0.0.1", port=0, jobs=False)
    try:
        url = service.start()
        yield Served(app=app, url=url, tokens=tokens)
    finally:
        assert service.stop(), "the service did not stop in time"
        app.close()


def client(served: Served, agent: str, tenant: str = "acme") -> HttpClient:
    return HttpClient(served.url, served.tokens[agent], tenant)


def test_the_http_client_sees_exactly_what_the_in_process_client_sees(
    served: Served, clock: FrozenClock
) -> None:
    local = InProcessClient(served.app, tenant="acme")
    tick(served.app, clock, 3)
    built = run_agent(served.app, "builder", environment="dev", request=REQUEST)
    assert built.decision is not None and built.decision.status is Status.APPLIED
    since, until = clock.now() - timedelta(minutes=5), clock.now() + timedelta(seconds=1)

    with client(served, "optimizer") as remote:
        assert remote.environment("dev") == local.environment("dev")
        samples = remote.metrics("dev", since, until)
        assert samples and samples == local.metrics("dev", since, until)
        recent = remote.recent("dev", since)
        assert recent == local.recent("dev", since)
        assert [r["id"] for r in recent] == [built.decision.intent_id]


def test_a_submit_over_http_is_decided_and_recorded_as_the_tokens_agent(served: Served) -> None:
    pool = dev_file(served.app, "WorkerPool/checkout.yaml")
    pool["spec"]["replicas"] = 5
    intent = Intent.of(("update", pool), tenant="acme", environment="dev", rationale="busy")

    with client(served, "optimizer") as remote:
        decision = remote.submit(intent, agent="optimizer")

    assert decision.status is Status.APPLIED, decision.reasons
    assert dev_file(served.app, "WorkerPool/checkout.yaml")["spec"]["replicas"] == 5
    view = served.app.store.get(decision.intent_id)
    assert view is not None and view.record.agent == "optimizer"
    assert "agent" not in view.record.document["metadata"]  # the claim is checked, not stored


def test_an_agent_run_over_http_submits_with_its_cause_like_the_in_process_one(
    served: Served, clock: FrozenClock
) -> None:
    def over_http(name: str, request: str | None = None) -> AgentRun:
        with client(served, name) as remote:
            return run_with(
                remote,
                name,
                settings=AGENTS,
                llm=served.app.settings.llm,
                at=clock.now(),
                environment="dev",
                request=request,
            )

    tick(served.app, clock, 7)
    built = over_http("builder", request=REQUEST)
    assert built.decision is not None and built.decision.status is Status.APPLIED, built
    tick(served.app, clock, 7)
    reacted = over_http("optimizer")

    # As in test_agents.py's in-process run: the Optimizer names the Builder's change as its cause.
    assert reacted.decision is not None and reacted.decision.status is Status.APPLIED, reacted
    assert reacted.caused_by == built.decision.intent_id
    [child] = served.app.store.query(IntentQuery(caused_by=built.decision.intent_id))
    assert child.record.id == reacted.decision.intent_id and child.record.agent == "optimizer"
    assert child.record.document["metadata"]["causedBy"] == built.decision.intent_id
    assert child.record.base_revision == reacted.revision


def test_a_token_of_another_agent_or_tenant_is_refused_with_the_reason(served: Served) -> None:
    pool = dev_file(served.app, "WorkerPool/checkout.yaml")
    pool["spec"]["replicas"] = 5
    intent = Intent.of(("update", pool), tenant="acme", environment="dev")

    with client(served, "builder") as as_builder, pytest.raises(Forbidden) as claimed:
        as_builder.submit(intent, agent="optimizer")
    assert "claims agent 'optimizer'" in claimed.value.message and "'builder'" in claimed.value.message

    with client(served, "globex-optimizer", tenant="acme") as wrong_tenant:
        with pytest.raises(Forbidden) as reading:
            wrong_tenant.environment("dev")
        assert "tenant 'acme'" in reading.value.message
        with pytest.raises(Forbidden):
            wrong_tenant.submit(intent, agent="optimizer")

    assert served.app.store.query(IntentQuery()) == []  # nothing refused was recorded


def test_bad_tokens_unknown_environments_and_dead_servers_are_clear_errors(served: Served) -> None:
    with HttpClient(served.url, "apx_not-a-token", "acme") as stranger, pytest.raises(Unauthenticated):
        stranger.environment("dev")
    with client(served, "optimizer") as remote, pytest.raises(BadInput, match="staging"):
        remote.environment("staging")
    with pytest.raises(BadInput, match="APX_TOKEN"):
        HttpClient(served.url, "", "acme")

    closed = bind("127.0.0.1", 0)
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    nowhere = HttpClient(f"http://127.0.0.1:{port}", "apx_x", "acme")
    with (
        nowhere,
        pytest.raises(InternalError, match=f"cannot reach the APX server at http://127.0.0.1:{port}"),
    ):
        nowhere.recent("dev", since=served.app.clock.now())
