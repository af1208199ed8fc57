"""The agents' deterministic planners, on hand-built observations of the seeded tenant.

Pure: no repo, no database, no langgraph run. What each test asserts is what
the agent would propose (or why not), as a user reading ``apx agents run`` sees it.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from agents.base import Observation, Proposal
from agents.builder import BuilderPlanner, parse_request, route_name
from agents.graph import Nothing, to_intent
from agents.optimizer import OptimizerPlanner
from agents.security import SecurityPlanner
from agents.settings import OptimizerSettings, SecuritySettings
from orchestrator.intent import Intent
from orchestrator.seed import seed_files

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
REVISION = "a" * 40
POOL = "WorkerPool/checkout"


def seeded() -> dict[str, dict[str, Any]]:
    return {path.removesuffix(".yaml"): yaml.safe_load(text) for path, text in seed_files().items()}


def observation(
    agent: str,
    *,
    resources: dict[str, dict[str, Any]] | None = None,
    request: str | None = None,
    metrics: dict[str, dict[str, float]] | None = None,
    samples: int = 0,
    recent: list[dict[str, Any]] | None = None,
) -> Observation:
    return Observation(
        agent=agent,
        tenant="acme",
        environment="dev",
        at=T0,
        revision=REVISION,
        resources=seeded() if resources is None else resources,
        request=request,
        metrics=metrics or {},
        samples=samples,
        recent=recent or [],
    )


def only_change(proposal: Proposal | Nothing) -> dict[str, Any]:
    assert isinstance(proposal, Proposal), proposal
    [change] = proposal.changes
    return change


# -- Builder ---------------------------------------------------------------------------------


def test_the_builder_turns_the_example_request_into_a_route_on_the_products_host() -> None:
    proposal = BuilderPlanner().assess(
        observation("builder", request="expose /v2/refunds on payments-api with auth, 5% canary")
    )

    change = only_change(proposal)
    assert change["action"] == "create"
    assert change["resource"]["metadata"] == {"name": "payments-v2-refunds", "tenant": "acme"}
    assert change["resource"]["spec"] == {
        "host": "api.acme.example",
        "path": "/v2/refunds",
        "product": "payments-api",
        "auth": "required",
        "canary": {"weight": 5},
    }
    assert isinstance(proposal, Proposal)
    assert "/v2/refunds" in proposal.summary and "5% canary" in proposal.summary
    assert isinstance(to_intent(proposal, observation("builder")), Intent)  # a valid intent, schema and all


@pytest.mark.parametrize(
    ("request_text", "expected"),
    [
        ("expose /v2/refunds on payments-api", {"auth": "required", "canary": 0}),  # secure by default
        ("Expose /v2/refunds on payments-api without auth", {"auth": "none"}),
        ("expose /v2/refunds on payments-api, public and canary 20%", {"auth": "none", "canary": 20}),
        ("expose /v2/refunds on payments-api with no auth", {"auth": "none"}),
        ("expose /v2/refunds/ on payments-api as refunds-v2", {"path": "/v2/refunds", "name": "refunds-v2"}),
        ("expose /v2/refunds on payments-api at edge.acme.example", {"host": "edge.acme.example"}),
        ("expose /v2/refunds on payments-api on the pro plan", {"plan": "pro"}),
    ],
)
def test_the_builder_grammar_reads_each_clause(request_text: str, expected: dict[str, Any]) -> None:
    parsed = parse_request(request_text)
    assert not isinstance(parsed, str), parsed
    assert {key: getattr(parsed, key) for key in expected} == expected


@pytest.mark.parametrize(
    ("request_text", "why"),
    [
        ("please make refunds faster", "cannot read the request"),
        ("expose refunds on payments-api", "cannot read the request"),  # a path starts with /
        (
            "expose /v2/refunds on payments-api with auth and a rate limit of 5rps",
            "cannot read 'a rate limit",
        ),
        ("expose /v2/refunds on payments-api, 150% canary", "0-100"),
        ("expose /v2/refunds on refunds-api", "product 'refunds-api' does not exist"),
        ("expose /v1/refunds on payments-api", "already served by Route/payments-v1-refunds"),
        (
            "expose /v2/refunds on payments-api as payments-v1-charges",
            "Route/payments-v1-charges already exists",
        ),
        ("expose /v2/refunds on payments-api plan platinum", "has no plan 'platinum'"),
    ],
)
def test_the_builder_proposes_nothing_for_a_request_it_cannot_honour_and_says_why(
    request_text: str, why: str
) -> None:
    answer = BuilderPlanner().assess(observation("builder", request=request_text))
    assert isinstance(answer, Nothing)
    assert why in answer.reason
    assert BuilderPlanner().plan(observation("builder", request=request_text)) is None


def test_a_product_without_routes_needs_a_host() -> None:
    resources = {k: v for k, v in seeded().items() if not k.startswith("Route/")}
    answer = BuilderPlanner().assess(
        observation("builder", resources=resources, request="expose /v2/refunds on payments-api")
    )
    assert isinstance(answer, Nothing) and "at HOST" in answer.reason
    with_host = BuilderPlanner().assess(
        observation("builder", resources=resources, request="expose /v2/refunds on payments-api at a.example")
    )
    assert only_change(with_host)["resource"]["spec"]["host"] == "a.example"


def test_the_builder_sizes_a_pool_on_request_and_names_the_optimizer_change_it_undoes() -> None:
    recent = [
        {"id": "in-route", "agent": "builder", "targets": ["Route/payments-v2-refunds"]},
        {"id": "in-opt", "agent": "optimizer", "targets": [POOL]},
    ]
    proposal = BuilderPlanner().assess(
        observation("builder", request="size checkout at 10 replicas", recent=recent)
    )

    change = only_change(proposal)
    assert change["action"] == "update" and change["resource"]["spec"]["replicas"] == 10
    assert change["resource"]["spec"]["maxReplicas"] == seeded()[POOL]["spec"]["maxReplicas"]
    assert isinstance(proposal, Proposal) and proposal.caused_by == "in-opt"
    assert proposal.summary == "size WorkerPool/checkout at 10 replicas (was 4), as requested"
    # Its own earlier change to the pool is no cause.
    mine = [{"id": "in-b", "agent": "builder", "targets": [POOL]}]
    again = BuilderPlanner().assess(
        observation("builder", request="scale checkout to 6 replicas", recent=mine)
    )
    assert isinstance(again, Proposal) and again.caused_by is None


@pytest.mark.parametrize(
    ("request_text", "why"),
    [
        ("size checkout at 4 replicas", "already runs 4 replicas"),
        ("size checkout at 500 replicas", "runs 2..20 replicas (min..maxReplicas); 500 is outside"),
        ("size batch at 3 replicas", "no WorkerPool 'batch' in dev (pools: checkout)"),
    ],
)
def test_a_sizing_request_it_cannot_honour_says_why(request_text: str, why: str) -> None:
    answer = BuilderPlanner().assess(observation("builder", request=request_text))
    assert isinstance(answer, Nothing) and why in answer.reason


def test_route_names_follow_the_seeded_convention() -> None:
    assert route_name("payments-api", "/v2/refunds") == "payments-v2-refunds"
    assert route_name("payments-api", "/v1/tax_rates/") == "payments-v1-tax-rates"


# -- Optimizer -------------------------------------------------------------------------------

WINDOW = OptimizerSettings(window="60s", sample_interval="10s")  # 6 samples needed


def pool_metrics(utilisation: float, *, samples: int = 6, p95: float = 80.0) -> dict[str, dict[str, float]]:
    return {"pool/checkout": {"utilisation": utilisation, "p95_ms": p95, "samples": samples, "replicas": 4}}


def test_the_optimizer_needs_the_windows_worth_of_samples() -> None:
    planner = OptimizerPlanner(WINDOW)
    assert planner.min_samples == 6
    assert OptimizerPlanner(OptimizerSettings()).min_samples == 300  # 5m at the data plane's 1s tick
    assert OptimizerPlanner(OptimizerSettings(min_samples=20)).min_samples == 20

    starved = planner.assess(observation("optimizer", metrics=pool_metrics(0.95, samples=5), samples=5))
    assert isinstance(starved, Nothing)
    assert "only 5 of the 6 samples a 1m window needs" in starved.reason
    enough = planner.assess(observation("optimizer", metrics=pool_metrics(0.95), samples=6))
    assert isinstance(enough, Proposal)


def test_the_optimizer_scales_up_a_busy_pool_towards_the_target_utilisation() -> None:
    proposal = OptimizerPlanner(WINDOW).assess(observation("optimizer", metrics=pool_metrics(0.9), samples=6))
    change = only_change(proposal)
    assert change["action"] == "update"
    spec = change["resource"]["spec"]
    assert spec["replicas"] == 8  # ceil(4 * 0.9 / 0.5)
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 20)  # only replicas change
    assert isinstance(proposal, Proposal)
    assert "replicas 4 → 8" in proposal.summary and "utilisation 0.90" in proposal.summary


def test_a_p95_over_the_slo_scales_up_even_at_moderate_utilisation() -> None:
    proposal = OptimizerPlanner(WINDOW).assess(
        observation("optimizer", metrics=pool_metrics(0.5, p95=450.0), samples=6)
    )
    assert only_change(proposal)["resource"]["spec"]["replicas"] == 5  # at least one more
    assert isinstance(proposal, Proposal) and "SLO" in proposal.summary


def test_the_optimizer_scales_down_an_idle_pool_but_never_below_its_minimum() -> None:
    down = OptimizerPlanner(WINDOW).assess(observation("optimizer", metrics=pool_metrics(0.2), samples=6))
    assert only_change(down)["resource"]["spec"]["replicas"] == 2  # ceil(4 * 0.2 / 0.5) = 2 = min

    resources = seeded()
    resources[POOL]["spec"]["replicas"] = 2
    at_min = OptimizerPlanner(WINDOW).assess(
        observation("optimizer", resources=resources, metrics=pool_metrics(0.05), samples=6)
    )
    assert isinstance(at_min, Nothing) and "already at minReplicas 2" in at_min.reason


def test_the_optimizer_never_goes_above_the_pools_maximum() -> None:
    resources = seeded()
    resources[POOL]["spec"]["replicas"] = 18
    capped = OptimizerPlanner(WINDOW).assess(
        observation("optimizer", resources=resources, metrics=pool_metrics(0.99), samples=6)
    )
    assert only_change(capped)["resource"]["spec"]["replicas"] == 20
    resources[POOL]["spec"]["replicas"] = 20
    full = OptimizerPlanner(WINDOW).assess(
        observation("optimizer", resources=resources, metrics=pool_metrics(0.99), samples=6)
    )
    assert isinstance(full, Nothing) and "already at maxReplicas 20" in full.reason


def test_a_pool_within_its_band_gets_no_proposal() -> None:
    answer = OptimizerPlanner(WINDOW).assess(observation("optimizer", metrics=pool_metrics(0.5), samples=6))
    assert isinstance(answer, Nothing) and "nothing to change" in answer.reason


def test_the_optimizer_names_another_agents_change_to_what_the_pool_serves_as_its_cause() -> None:
    resources = seeded()
    new_route = copy.deepcopy(resources["Route/payments-v1-refunds"])
    new_route["metadata"]["name"] = "payments-v2-refunds"
    resources["Route/payments-v2-refunds"] = new_route
    recent = [
        {
            "id": "in-security",
            "agent": "security",
            "targets": ["NetworkPolicy/edge"],
        },  # does not feed the pool
        {"id": "in-builder", "agent": "builder", "targets": ["Route/payments-v2-refunds"]},
    ]
    proposal = OptimizerPlanner(WINDOW).assess(
        observation("optimizer", resources=resources, metrics=pool_metrics(0.9), samples=6, recent=recent)
    )
    assert isinstance(proposal, Proposal) and proposal.caused_by == "in-builder"


def test_after_its_own_change_the_optimizer_is_nobodys_reaction() -> None:
    recent = [
        {"id": "in-builder", "agent": "builder", "targets": ["Route/payments-v1-refunds"]},
        {"id": "in-mine", "agent": "optimizer", "targets": [POOL]},
    ]
    proposal = OptimizerPlanner(WINDOW).assess(
        observation("optimizer", metrics=pool_metrics(0.9), samples=6, recent=recent)
    )
    assert isinstance(proposal, Proposal) and proposal.caused_by is None


# -- Security --------------------------------------------------------------------------------


def insecure() -> dict[str, dict[str, Any]]:
    """The seed with one of each finding: world ingress, an unauthenticated route, unsafe telemetry."""
    resources = seeded()
    resources["NetworkPolicy/edge"]["spec"]["ingress"].append({"cidr": "0.0.0.0/0", "ports": [443, 80]})
    resources["Route/payments-v1-refunds"]["spec"]["auth"] = "none"
    resources["PolicyBundle/default"]["spec"]["observability"].update(piiSafe=False, sampleRate=0.5)
    return resources


def test_the_security_agent_batches_every_finding_into_one_proposal() -> None:
    proposal = SecurityPlanner(SecuritySettings()).assess(observation("security", resources=insecure()))

    assert isinstance(proposal, Proposal)
    fixed = {
        f"{c['resource']['kind']}/{c['resource']['metadata']['name']}": c["resource"]["spec"]
        for c in proposal.changes
    }
    assert sorted(fixed) == ["NetworkPolicy/edge", "PolicyBundle/default", "Route/payments-v1-refunds"]
    assert all(c["action"] == "update" for c in proposal.changes)
    # 0.0.0.0/0 is gone; its ports join the existing 10.0.0.0/8 rule.
    assert fixed["NetworkPolicy/edge"]["ingress"] == [
        {"cidr": "10.0.0.0/8", "ports": [80, 443]},
        {"cidr": "192.168.0.0/16", "ports": [443, 8443]},
    ]
    assert fixed["Route/payments-v1-refunds"]["auth"] == "required"
    assert fixed["PolicyBundle/default"]["observability"]["piiSafe"] is True
    assert fixed["PolicyBundle/default"]["observability"]["sampleRate"] == 0.1
    assert proposal.summary.startswith("security scan of dev: NetworkPolicy/edge: ingress open")
    assert "1 Route served without auth → auth required (payments-v1-refunds)" in proposal.summary
    assert isinstance(to_intent(proposal, observation("security")), Intent)


def test_ipv6_ingress_open_to_the_world_is_narrowed_to_unique_local_addresses() -> None:
    resources = seeded()
    resources["NetworkPolicy/edge"]["spec"]["ingress"] = [{"cidr": "::/0", "ports": [443]}]
    proposal = SecurityPlanner(SecuritySettings()).assess(observation("security", resources=resources))
    assert only_change(proposal)["resource"]["spec"]["ingress"] == [{"cidr": "fd00::/8", "ports": [443]}]


def test_public_probes_and_a_clean_environment_are_not_findings() -> None:
    resources = seeded()
    assert resources["Route/payments-healthz"]["spec"]["auth"] == "none"  # a public probe in the seed
    answer = SecurityPlanner(SecuritySettings()).assess(observation("security", resources=resources))
    assert isinstance(answer, Nothing) and "no findings" in answer.reason


def test_routes_beyond_the_per_intent_limit_wait_for_the_next_scan() -> None:
    resources = seeded()
    for key, document in resources.items():
        if key.startswith("Route/"):
            document["spec"]["auth"] = "none"
    proposal = SecurityPlanner(SecuritySettings(max_routes=50)).assess(
        observation("security", resources=resources)
    )
    assert isinstance(proposal, Proposal)
    assert len(proposal.changes) == 50
    assert "8 more Routes without auth wait for the next scan" in proposal.summary  # probes stay public


def test_a_fix_to_another_agents_change_names_it_as_the_cause() -> None:
    recent = [{"id": "in-builder", "agent": "builder", "targets": ["Route/payments-v1-refunds"]}]
    proposal = SecurityPlanner(SecuritySettings()).assess(
        observation("security", resources=insecure(), recent=recent)
    )
    assert isinstance(proposal, Proposal) and proposal.caused_by == "in-builder"


def test_a_secret_in_a_list_is_removed_and_never_repeated_in_the_rationale() -> None:
    key = "AKIA" + "Q7ZJ4W2N8RXK3M5T"  # an AWS access key id pasted into piiFields by hand
    resources = insecure()
    resources["PolicyBundle/default"]["spec"]["observability"]["piiFields"].append(key)

    proposal = SecurityPlanner(SecuritySettings()).assess(observation("security", resources=resources))

    assert isinstance(proposal, Proposal)
    bundle = next(c for c in proposal.changes if c["resource"]["kind"] == "PolicyBundle")
    assert bundle["resource"]["spec"]["observability"]["piiFields"] == ["email", "card_number"]
    assert "piiFields[2] holds a secret (AWS Access Key) → entry removed" in proposal.summary
    assert key not in proposal.summary and key not in str(proposal.changes)


def test_a_resource_whose_secret_has_no_safe_fix_is_left_out_and_named_for_a_human() -> None:
    token = "sk" + "_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
    resources = insecure()
    resources["Route/payments-v1-refunds"]["spec"]["path"] = f"/hooks/{token}"  # also auth: none

    proposal = SecurityPlanner(SecuritySettings()).assess(observation("security", resources=resources))

    assert isinstance(proposal, Proposal)
    touched = {c["resource"]["metadata"]["name"] for c in proposal.changes}
    # Changing the route would carry the secret into a commit; the pipeline would refuse the batch.
    assert "payments-v1-refunds" not in touched and {"edge", "default"} <= touched
    assert "Route/payments-v1-refunds: spec.path holds a secret" in proposal.summary
    assert "rotate it, then remove it" in proposal.summary and token not in proposal.summary

    only = seeded()
    only["Route/payments-v1-refunds"]["spec"]["path"] = f"/hooks/{token}"
    answer = SecurityPlanner(SecuritySettings()).assess(observation("security", resources=only))
    assert isinstance(answer, Nothing)
    assert "spec.path holds a secret" in answer.reason and token not in answer.reason


# -- the propose step ------------------------------------------------------------------------


def test_a_proposal_for_another_tenant_or_with_a_bad_spec_is_not_an_intent() -> None:
    route = copy.deepcopy(seeded()["Route/payments-v1-refunds"])
    foreign = Proposal(
        summary="x",
        changes=[
            {"action": "update", "resource": {**route, "metadata": {**route["metadata"], "tenant": "globex"}}}
        ],
    )
    assert "tenant 'globex'" in str(to_intent(foreign, observation("builder")))

    route["spec"]["canary"] = {"weight": 500}
    bad = Proposal(summary="x", changes=[{"action": "update", "resource": route}])
    problem = to_intent(bad, observation("builder"))
    assert isinstance(problem, str) and "Route/payments-v1-refunds" in problem and "canary.weight" in problem
