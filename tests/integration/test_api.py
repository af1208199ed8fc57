"""The HTTP API on a real home: submit, wait, list, bad input, and who may do what.

Each test runs the FastAPI app through its ASGI interface (``TestClient``, with
its lifespan, so the drain worker thread runs) on a home made by ``apx init``:
a real SQLite database (or PostgreSQL with ``APX_TEST_DATABASE_URL``), a real
git repo with signed commits, real tokens in ``principals.yaml``.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from test_pipeline import POOL, SEED, git

from audit.entry import parse_body
from orchestrator.api.app import create_api
from orchestrator.bootstrap import App, build
from orchestrator.decision import Decision
from orchestrator.home import init_home
from orchestrator.principals import Principals
from orchestrator.records import IntentQuery
from orchestrator.settings import Settings, load_settings
from orchestrator.testing import FrozenClock

#: name → (role, tenants). Two tenants, so every read can be checked for leaks.
PRINCIPALS = {
    "optimizer": ("agent:optimizer", ["acme"]),
    "builder": ("agent:builder", ["acme"]),
    "globex-bot": ("agent:security", ["globex"]),
    "alice": ("reviewer", ["acme"]),
    "gina": ("reviewer", ["globex"]),
    "erin": ("engineer", ["acme"]),
    "gus": ("engineer", ["globex"]),
    "root": ("admin", ["*"]),
}


@dataclass
class Api:
    app: App
    client: TestClient
    tokens: dict[str, str]
    principals: Principals

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    def submit(self, name: str, document: dict[str, Any], *, wait: float | None = None) -> Any:
        url = "/v1/intents" + (f"?wait={wait}" if wait else "")
        return self.client.post(url, json=document, headers=self.auth(name))

    def audit_entries(self) -> list[dict[str, Any]]:
        return [parse_body(body) for _seq, body, _link in self.app.store.audit.rows()]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A fresh home on SQLite."""
    home = tmp_path / "home"
    init_home(home)
    return load_settings(home)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """The home on SQLite, and on PostgreSQL too: for tests where the storage matters."""
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
        return settings.model_copy(update={"database": settings.database.model_copy(update={"url": url})})
    return settings


def serve(settings: Settings, clock: FrozenClock, *, lifespan: bool = True) -> Iterator[Api]:
    app = build(settings.home, settings=settings, clock=clock)
    principals = Principals.load(settings.home)
    tokens = {name: principals.add(name, role, tenants) for name, (role, tenants) in PRINCIPALS.items()}
    client = TestClient(create_api(app, drain_interval=0.5), raise_server_exceptions=False)
    try:
        if lifespan:
            with client:
                yield Api(app, client, tokens, principals)
        else:
            yield Api(app, client, tokens, principals)
    finally:
        app.close()


@pytest.fixture
def api(settings: Settings, clock: FrozenClock) -> Iterator[Api]:
    yield from serve(settings, clock)


@pytest.fixture
def api_db(any_settings: Settings, clock: FrozenClock) -> Iterator[Api]:
    """The API on each database: for tests of what is stored, listed and paged."""
    yield from serve(any_settings, clock)


def pool_intent(environment: str = "dev", replicas: int = 6, tenant: str = "acme") -> dict[str, Any]:
    resource = copy.deepcopy(SEED[POOL])
    resource["spec"]["replicas"] = replicas
    resource["metadata"]["tenant"] = tenant
    return {
        "apiVersion": "apx/v1",
        "kind": "Intent",
        "metadata": {"tenant": tenant},
        "spec": {
            "environment": environment,
            "rationale": "p95 over SLO",
            "changes": [{"action": "update" if tenant == "acme" else "create", "resource": resource}],
        },
    }


def poll(api: Api, url: str, name: str, *, until: Any, seconds: float = 30) -> dict[str, Any]:
    """GET ``url`` until ``until(body)`` holds (bounded: fails after ``seconds``)."""
    deadline = time.monotonic() + seconds
    while True:
        body: dict[str, Any] = api.client.get(url, headers=api.auth(name)).json()
        if until(body):
            return body
        assert time.monotonic() < deadline, f"{url} never got there: {body}"
        time.sleep(0.1)


# -- submitting -------------------------------------------------------------------------


def test_a_submit_is_accepted_at_once_and_the_worker_applies_it(api_db: Api) -> None:
    api = api_db
    response = api.submit("optimizer", pool_intent())

    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "queued" and accepted["intent_id"].startswith("in-")
    assert response.headers["location"] == accepted["status_url"]
    assert accepted["status_url"].endswith(f"/v1/intents/{accepted['intent_id']}")
    shown = poll(api, accepted["status_url"], "optimizer", until=lambda b: b["status"] != "queued")
    assert shown["status"] == "applied", shown
    assert shown["agent"] == "optimizer" and shown["trace_id"] == accepted["trace_id"]
    commit = shown["decision"]["commit"]
    assert commit == api.app.repo.head("dev")
    message = git(api.app, "log", "-1", "--format=%B", commit).stdout
    assert f"Trace-Id: {accepted['trace_id']}" in message


def test_wait_answers_with_the_decision_in_the_cli_json_shape(api: Api) -> None:
    response = api.submit("optimizer", pool_intent(replicas=7), wait=30)

    assert response.status_code == 200, response.text
    decision = Decision.model_validate(response.json())
    assert decision.status.value == "applied" and decision.agent == "optimizer"
    assert response.json() == json.loads(decision.model_dump_json())


def test_wait_decides_even_without_the_background_worker(settings: Settings, clock: FrozenClock) -> None:
    for api in serve(settings, clock, lifespan=False):
        response = api.submit("optimizer", pool_intent(), wait=10)
        assert response.status_code == 200 and response.json()["status"] == "applied"


def test_a_held_intent_says_why_in_the_202(api: Api) -> None:
    assert api.submit("optimizer", pool_intent(), wait=30).json()["status"] == "applied"
    again = api.submit("optimizer", pool_intent())
    assert again.status_code == 202
    assert again.json()["status"] == "duplicate" and "duplicate" in again.json()["reasons"][0]


def test_a_yaml_body_is_read_like_apx_submit_reads_a_file(api: Api) -> None:
    text = (Path(__file__).parents[2] / "examples" / "optimizer-scale-checkout.yaml").read_text()
    response = api.client.post(
        "/v1/intents?wait=30",
        content=text,
        headers={**api.auth("optimizer"), "Content-Type": "application/yaml; charset=utf-8"},
    )
    assert response.status_code == 200 and response.json()["status"] == "applied"


# -- bad input --------------------------------------------------------------------------


def test_a_wrong_content_type_is_415(api: Api) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", ""):
        response = api.client.post(
            "/v1/intents",
            content=json.dumps(pool_intent()),
            headers={**api.auth("optimizer"), "Content-Type": content_type},
        )
        assert response.status_code == 415, content_type
        assert "application/json or application/yaml" in response.json()["reason"]


def test_an_oversized_body_is_413_whether_its_length_is_declared_or_not(api: Api) -> None:
    limit = api.app.settings.admission.max_intent_bytes
    big = json.dumps({**pool_intent(), "padding": "x" * limit}).encode()
    declared = api.client.post(
        "/v1/intents", content=big, headers={**api.auth("optimizer"), "Content-Type": "application/json"}
    )
    assert declared.status_code == 413 and declared.json()["code"] == "too_large"

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 64 * 1024):
            yield big[i : i + 64 * 1024]

    streamed = api.client.post(
        "/v1/intents", content=chunks(), headers={**api.auth("optimizer"), "Content-Type": "application/json"}
    )
    assert streamed.status_code == 413 and f"{limit:,} bytes" in streamed.json()["reason"]
    assert api.app.store.query(IntentQuery()) == []


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (b"", "the document is empty"),
        (b"{not json", "request body:1:2: invalid JSON"),
        (b"[1, 2]", "expected an Intent"),
        (json.dumps({**pool_intent(), "spec": {"environment": "dev", "changes": []}}).encode(), "changes"),
        (
            json.dumps({**pool_intent(), "metadata": {"tenant": "acme", "colour": "red"}}).encode(),
            "metadata.colour",
        ),
    ],
)
def test_a_malformed_intent_is_422_naming_the_field(api: Api, body: bytes, names: str) -> None:
    response = api.client.post(
        "/v1/intents", content=body, headers={**api.auth("optimizer"), "Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "intent_format"
    assert names in response.json()["reason"]


def test_bad_query_parameters_are_422_with_the_parameter_named(api: Api) -> None:
    cases = {
        "/v1/intents?status=lost": "status",
        "/v1/intents?limit=0": "limit",
        "/v1/intents?cursor=zzz": "cursor",
        "/v1/intents?since=yesterday-ish": "since",
        "/v1/intents?target=Pod/x": "target",
    }
    for url, name in cases.items():
        response = api.client.get(url, headers=api.auth("root"))
        assert response.status_code == 422, url
        assert name in response.json()["reason"], (url, response.json())
    waited = api.submit("optimizer", pool_intent(), wait=600)
    assert waited.status_code == 422 and "wait" in waited.json()["reason"]


def test_an_unknown_intent_or_pr_is_404(api: Api) -> None:
    assert api.client.get("/v1/intents/in-nope", headers=api.auth("root")).status_code == 404
    missing = api.client.get("/v1/prs/pr-nope", headers=api.auth("root"))
    assert missing.status_code == 404 and "pr-nope" in missing.json()["reason"]


# -- identity -----------------------------------------------------------------------------


def test_requests_without_a_valid_token_are_401_and_audited_without_the_token(
    api: Api, clock: FrozenClock
) -> None:
    cases = [{}, {"Authorization": "Bearer apx_wrong"}, {"Authorization": "Basic dXNlcjpwYXNz"}]
    for headers in cases:
        response = api.client.get("/v1/intents", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["code"] == "unauthenticated" and response.json()["reason"]
    refused = [e for e in api.audit_entries() if e["action"] == "api.refused"]
    assert {e["actor"] for e in refused} == {"anonymous"}
    assert refused[0]["subject"] == "http:GET /v1/intents"
    assert "apx_wrong" not in json.dumps(api.audit_entries())


def test_a_flood_of_anonymous_requests_is_audited_once_a_minute_per_client_with_a_count(
    api: Api, clock: FrozenClock
) -> None:
    """Anyone can send requests without a token; each must not grow the audit chain."""
    for _ in range(50):
        assert api.client.get("/v1/intents", headers={"Authorization": "Bearer apx_wrong"}).status_code == 401
    assert len([e for e in api.audit_entries() if e["action"] == "api.refused"]) == 1

    clock.advance(61)
    assert api.client.get("/v1/prs").status_code == 401
    refused = [e for e in api.audit_entries() if e["action"] == "api.refused"]
    assert len(refused) == 2
    assert refused[1]["subject"] == "http:GET /v1/prs (+49 more from this client, not audited one by one)"

    # A known principal's refusals are each audited: someone accountable tried something.
    for _ in range(3):
        reset = api.client.post("/v1/breakers/acme/dev/reset", headers=api.auth("optimizer"), json={})
        assert reset.status_code == 403
    assert len([e for e in api.audit_entries() if e["actor"] == "optimizer"]) == 3


def test_a_revoked_token_stops_working_at_once(api: Api) -> None:
    assert api.client.get("/v1/intents", headers=api.auth("alice")).status_code == 200
    Principals.load(api.app.settings.home).revoke("alice")  # as `apx principals revoke` does
    assert api.client.get("/v1/intents", headers=api.auth("alice")).status_code == 401


def test_an_unreadable_principals_file_lets_nobody_in_and_does_not_show_the_file(api: Api) -> None:
    path = api.app.settings.home / "principals.yaml"
    good = path.read_text()
    path.write_text("principals: {this is: not a list}\n")
    refused = api.client.get("/v1/intents", headers=api.auth("root"))
    assert refused.status_code == 500
    assert refused.json() == {
        "code": "internal",
        "reason": "the server's principals file cannot be read; ask its operator",
    }
    path.write_text(good)
    assert api.client.get("/v1/intents", headers=api.auth("root")).status_code == 200


def test_the_review_page_cookie_authenticates_like_a_bearer_token(api: Api) -> None:
    api.client.cookies.set("apx_token", api.tokens["alice"])
    try:
        assert api.client.get("/v1/prs").status_code == 200
    finally:
        api.client.cookies.clear()


def test_the_cookie_alone_cannot_write_through_the_json_api(api: Api) -> None:
    # What a forged cross-site form would carry: the session cookie, no header, no CSRF token.
    pr = api.submit("optimizer", pool_intent("prod"), wait=30).json()["pr"]["id"]
    api.client.cookies.set("apx_token", api.tokens["alice"])
    try:
        forged = api.client.post(f"/v1/prs/{pr}/approve")
    finally:
        api.client.cookies.clear()
    assert forged.status_code == 401
    assert api.app.store.pull_request(pr).status == "open"  # type: ignore[union-attr]


def test_a_reviewer_with_an_agents_name_is_refused_with_an_audited_403(api: Api) -> None:
    # A token for agent "scaler" (principal scaler-bot), and a human account named "scaler".
    principals = Principals.load(api.app.settings.home)
    api.tokens["scaler-bot"] = principals.add("scaler-bot", "agent:scaler", ["acme"])
    api.tokens["scaler"] = principals.add("scaler", "reviewer", ["acme"])
    pr = api.submit("scaler-bot", pool_intent("prod"), wait=30).json()["pr"]["id"]

    refused = api.client.post(f"/v1/prs/{pr}/approve", headers=api.auth("scaler"), json={"comment": "ok"})

    assert refused.status_code == 403
    assert "'scaler' is an agent" in refused.json()["reason"]
    assert api.app.store.pull_request(pr).status == "open"  # type: ignore[union-attr]
    assert any(e["action"] == "api.refused" and e["actor"] == "scaler" for e in api.audit_entries())


def test_an_agent_submits_only_as_itself(api: Api) -> None:
    claims_other = {**pool_intent(), "metadata": {"tenant": "acme", "agent": "security"}}
    refused = api.submit("optimizer", claims_other)
    assert refused.status_code == 403
    assert "claims agent 'security'" in refused.json()["reason"]

    labelled = pool_intent()
    labelled["spec"]["changes"][0]["resource"]["metadata"]["labels"] = {"apx.io/agent": "builder"}
    assert api.submit("optimizer", labelled).status_code == 403

    claims_self = {**pool_intent(), "metadata": {"tenant": "acme", "agent": "optimizer"}}
    accepted = api.submit("optimizer", claims_self, wait=30)
    assert accepted.status_code == 200 and accepted.json()["agent"] == "optimizer"

    refusals = [e for e in api.audit_entries() if e["action"] == "api.refused"]
    assert [e["actor"] for e in refusals] == ["optimizer", "optimizer"]
    assert all(e["subject"] == "http:POST /v1/intents" for e in refusals)


def test_an_agent_cannot_submit_for_a_tenant_it_does_not_hold(api: Api) -> None:
    refused = api.submit("optimizer", pool_intent(tenant="globex"))
    assert refused.status_code == 403 and "tenant 'globex'" in refused.json()["reason"]
    assert api.client.get("/v1/intents", headers=api.auth("root")).json()["items"] == []


@pytest.mark.parametrize("name", ["alice", "erin", "root"])
def test_only_agents_submit(api: Api, name: str) -> None:
    refused = api.submit(name, pool_intent())
    assert refused.status_code == 403 and "may not submit intents" in refused.json()["reason"]


def test_what_an_agent_token_can_never_do(api: Api) -> None:
    pr = api.submit("optimizer", pool_intent("prod"), wait=30).json()["pr"]["id"]
    forbidden = [
        ("POST", f"/v1/prs/{pr}/approve"),
        ("POST", f"/v1/prs/{pr}/reject"),
        ("GET", "/v1/prs"),
        ("POST", "/v1/breakers/acme/dev/reset"),
        ("GET", "/v1/breakers"),
        ("GET", "/v1/audit/verify"),
        ("GET", "/v1/audit/proof/1"),
        ("GET", "/v1/audit/export"),
    ]
    for method, url in forbidden:
        response = api.client.request(method, url, headers=api.auth("optimizer"), json={"comment": "mine"})
        assert response.status_code == 403, (method, url, response.text)
        assert "role agent:optimizer may not" in response.json()["reason"]
    assert api.app.store.pull_request(pr).status == "open"  # type: ignore[union-attr]
    refused = [e for e in api.audit_entries() if e["action"] == "api.refused"]
    assert len(refused) == len(forbidden) and {e["actor"] for e in refused} == {"optimizer"}


# -- tenancy -------------------------------------------------------------------------------


def globex_pool() -> dict[str, Any]:
    document = pool_intent(tenant="globex")
    document["spec"]["changes"][0]["resource"]["metadata"]["name"] = "globex-workers"
    return document


def test_everyone_sees_only_their_tenants_intents(api_db: Api) -> None:
    api = api_db
    mine = api.submit("optimizer", pool_intent(), wait=30).json()
    theirs = api.submit("globex-bot", globex_pool(), wait=30).json()
    assert theirs["status"] == "applied", theirs

    def ids(name: str, query: str = "") -> set[str]:
        page = api.client.get(f"/v1/intents{query}", headers=api.auth(name))
        assert page.status_code == 200, page.text
        return {row["id"] for row in page.json()["items"]}

    assert ids("alice") == ids("erin") == ids("optimizer") == {mine["intent_id"]}
    assert ids("gus") == {theirs["intent_id"]}
    assert ids("root") == {mine["intent_id"], theirs["intent_id"]}
    assert api.client.get("/v1/intents?tenant=globex", headers=api.auth("erin")).status_code == 403
    one = api.client.get(f"/v1/intents/{theirs['intent_id']}", headers=api.auth("erin"))
    assert one.status_code == 403 and "tenant 'globex'" in one.json()["reason"]
    shown = api.client.get(f"/v1/intents/{mine['intent_id']}", headers=api.auth("erin")).json()
    assert shown["decision"]["commit"] == mine["commit"]


def test_a_principal_of_two_tenants_pages_through_both_in_order(api_db: Api) -> None:
    api = api_db
    token = api.principals.add("pager", "engineer", ["acme", "globex"])
    made = [
        api.submit("optimizer", pool_intent(replicas=5), wait=30).json()["intent_id"],
        api.submit("globex-bot", globex_pool(), wait=30).json()["intent_id"],
        api.submit("builder", pool_intent(replicas=8), wait=30).json()["intent_id"],
    ]
    seen: list[str] = []
    cursor = ""
    for _ in range(5):
        page = api.client.get(f"/v1/intents?limit=2{cursor}", headers={"Authorization": f"Bearer {token}"})
        seen += [row["id"] for row in page.json()["items"]]
        if page.json()["next_cursor"] is None:
            break
        cursor = f"&cursor={page.json()['next_cursor']}"
    assert seen == list(reversed(made))


def test_a_reviewer_sees_and_decides_only_its_tenants_prs(api: Api) -> None:
    pr = api.submit("optimizer", pool_intent("prod"), wait=30).json()["pr"]["id"]

    assert [p["id"] for p in api.client.get("/v1/prs", headers=api.auth("alice")).json()] == [pr]
    assert api.client.get("/v1/prs", headers=api.auth("gina")).json() == []
    assert api.client.get(f"/v1/prs/{pr}", headers=api.auth("gina")).status_code == 403
    refused = api.client.post(f"/v1/prs/{pr}/approve", headers=api.auth("gina"), json={"comment": "ok"})
    assert refused.status_code == 403 and "tenant 'acme'" in refused.json()["reason"]
    assert api.client.post(f"/v1/prs/{pr}/approve", headers=api.auth("erin")).status_code == 403
    assert api.app.store.pull_request(pr).status == "open"  # type: ignore[union-attr]


# -- reviews, breakers, audit, policy, environments -------------------------------------------


def test_a_reviewer_approves_over_http_and_the_pr_merges(api_db: Api) -> None:
    api = api_db
    decision = api.submit("optimizer", pool_intent("prod"), wait=30).json()
    assert decision["status"] == "pr_open"
    pr = decision["pr"]["id"]
    shown = api.client.get(f"/v1/prs/{decision['intent_id']}", headers=api.auth("alice")).json()
    assert shown["id"] == pr and shown["rationale"] == "p95 over SLO" and shown["approvals"] == []
    assert "+  replicas: 6" in shown["decision"]["diff"][POOL]

    approved = api.client.post(
        f"/v1/prs/{pr}/approve", headers=api.auth("alice"), json={"comment": "fine by me"}
    )

    assert approved.status_code == 200, approved.text
    assert approved.headers["apx-review-result"] == "merged"
    assert approved.json()["status"] == "merged"
    assert api.app.repo.head("prod") == approved.json()["commit"]
    assert "Approved-By: alice" in git(api.app, "log", "-1", "--format=%B", "prod").stdout
    reviews = api.client.get(f"/v1/prs/{pr}", headers=api.auth("alice")).json()["reviews"]
    assert [(r["reviewer"], r["verdict"], r["comment"]) for r in reviews] == [
        ("alice", "approve", "fine by me")
    ]
    again = api.client.post(f"/v1/prs/{pr}/approve", headers=api.auth("alice"))
    assert again.status_code == 422 and "already merged" in again.json()["reason"]


def test_a_reviewer_rejects_with_a_comment_and_prod_stays(api: Api) -> None:
    before = api.app.repo.head("prod")
    pr = api.submit("optimizer", pool_intent("prod"), wait=30).json()["pr"]["id"]
    rejected = api.client.post(
        f"/v1/prs/{pr}/reject", headers=api.auth("alice"), json={"comment": "not during the sale"}
    )
    assert rejected.status_code == 200 and rejected.json()["status"] == "pr_rejected"
    assert "not during the sale" in rejected.json()["reasons"][0]
    assert api.app.repo.head("prod") == before
    unknown_field = api.client.post(f"/v1/prs/{pr}/reject", headers=api.auth("alice"), json={"note": "x"})
    assert unknown_field.status_code == 422 and "note" in unknown_field.json()["reason"]


def breaker_settings(settings: Settings) -> Settings:
    admission = settings.admission
    breaker = admission.breaker.model_copy(update={"max_deploys": 1})
    return settings.model_copy(update={"admission": admission.model_copy(update={"breaker": breaker})})


def test_an_engineer_resets_its_tenants_breaker_and_is_recorded_as_who(
    any_settings: Settings, clock: FrozenClock
) -> None:
    for api in serve(breaker_settings(any_settings), clock):
        assert api.submit("optimizer", pool_intent(replicas=5), wait=30).json()["status"] == "applied"
        held = api.submit("builder", pool_intent(replicas=9), wait=30).json()
        assert held["status"] == "circuit_open", held

        listed = api.client.get("/v1/breakers", headers=api.auth("erin")).json()
        assert [(b["tenant"], b["environment"], b["open"]) for b in listed] == [("acme", "dev", True)]
        assert api.client.get("/v1/breakers", headers=api.auth("gus")).json() == []
        assert api.client.post("/v1/breakers/acme/dev/reset", headers=api.auth("gus")).status_code == 403
        assert api.client.post("/v1/breakers/acme/dev/reset", headers=api.auth("alice")).status_code == 403

        reset = api.client.post("/v1/breakers/acme/dev/reset", headers=api.auth("erin"))

        assert reset.status_code == 200 and reset.json()["open"] is False
        assert reset.json()["reset_by"] == "erin"
        assert any(e["action"] == "breaker.reset" and e["actor"] == "erin" for e in api.audit_entries())
        unknown = api.client.post("/v1/breakers/acme/moon/reset", headers=api.auth("erin"))
        assert unknown.status_code == 422 and "moon" in unknown.json()["reason"]
        never = api.client.post("/v1/breakers/acme/prod/reset", headers=api.auth("erin"))
        assert never.status_code == 404


def test_audit_verify_proofs_by_tenant_and_export_for_admins_only(api_db: Api) -> None:
    api = api_db
    api.submit("optimizer", pool_intent(), wait=30)
    entries = api.audit_entries()
    acme_seq = 1 + next(i for i, e in enumerate(entries) if e.get("tenant") == "acme")
    policy_seq = 1 + next(i for i, e in enumerate(entries) if e["action"] == "policy.changed")

    verified = api.client.get("/v1/audit/verify", headers=api.auth("erin"))
    assert verified.status_code == 200 and verified.json()["ok"] is True
    assert verified.json()["entries"] == len(entries)

    proof = api.client.get(f"/v1/audit/proof/{acme_seq}", headers=api.auth("erin"))
    assert proof.status_code == 200 and proof.json()["entry"]["tenant"] == "acme"
    assert api.client.get(f"/v1/audit/proof/{acme_seq}", headers=api.auth("gus")).status_code == 403
    assert api.client.get(f"/v1/audit/proof/{policy_seq}", headers=api.auth("erin")).status_code == 403
    assert api.client.get(f"/v1/audit/proof/{policy_seq}", headers=api.auth("root")).status_code == 200
    assert api.client.get("/v1/audit/proof/100000", headers=api.auth("root")).status_code == 404
    assert api.client.get("/v1/audit/proof/0", headers=api.auth("root")).status_code == 422

    assert api.client.get("/v1/audit/export", headers=api.auth("erin")).status_code == 403
    exported = api.client.get("/v1/audit/export", headers=api.auth("root"))
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in exported.text.splitlines()]
    assert lines[0]["type"] == "header" and lines[-1]["type"] == "checkpoint"
    kinds = [line["type"] for line in lines[1:-1]]
    assert kinds == ["entry"] * len(kinds) and len(kinds) >= len(entries)
    for token in api.tokens.values():
        assert token not in exported.text


def test_policy_names_the_bundle_every_decision_records(api: Api) -> None:
    decision = api.submit("optimizer", pool_intent(), wait=30).json()
    for name in ("optimizer", "alice", "erin"):
        policy = api.client.get("/v1/policy", headers=api.auth(name))
        assert policy.status_code == 200
        assert policy.json()["label"] == decision["policy_version"]
    assert api.client.get("/v1/policy", headers=api.auth("root")).json()["history"][0]["sha256"]


def test_an_agent_reads_its_tenants_environment_over_http(api: Api) -> None:
    viewed = api.client.get("/v1/environments/dev?tenant=acme", headers=api.auth("optimizer"))
    assert viewed.status_code == 200
    assert viewed.json()["revision"] == api.app.repo.head("dev")
    assert viewed.json()["resources"]["WorkerPool/checkout"]["spec"]["replicas"] == 4
    assert (
        api.client.get("/v1/environments/dev?tenant=globex", headers=api.auth("optimizer")).status_code == 403
    )
    unknown = api.client.get("/v1/environments/moon?tenant=acme", headers=api.auth("optimizer"))
    assert unknown.status_code == 422 and "moon" in unknown.json()["reason"]

    decision = api.submit("optimizer", pool_intent(), wait=30).json()
    recent = api.client.get(
        "/v1/environments/dev/recent",
        params={"tenant": "acme", "since": "2000-01-01T00:00:00Z"},
        headers=api.auth("optimizer"),
    )
    assert [r["id"] for r in recent.json()] == [decision["intent_id"]]
    metrics = api.client.get(
        "/v1/environments/dev/metrics",
        params={"tenant": "acme", "since": "2025-06-01T00:00:00Z", "until": "2025-06-01T01:00:00Z"},
        headers=api.auth("optimizer"),
    )
    assert metrics.status_code == 200 and metrics.json() == []
    too_wide = api.client.get(
        "/v1/environments/dev/metrics",
        params={"tenant": "acme", "since": "2025-06-01T00:00:00Z", "until": "2025-06-09T00:00:00Z"},
        headers=api.auth("optimizer"),
    )
    assert too_wide.status_code == 422 and "at most" in too_wide.json()["reason"]
    naive = api.client.get(
        "/v1/environments/dev/recent",
        params={"tenant": "acme", "since": "2025-06-01T00:00:00"},
        headers=api.auth("optimizer"),
    )
    assert naive.status_code == 422 and "since" in naive.json()["reason"]


def test_health_and_readiness_answer_without_a_token(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"ok": True, "problems": []}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ok"] is True


def test_the_openapi_document_describes_the_submit_body_and_errors(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    submit = document["paths"]["/v1/intents"]["post"]
    assert set(submit["requestBody"]["content"]) == {"application/json", "application/yaml"}
    assert {"202", "200", "401", "403", "413", "415", "422"} <= set(submit["responses"])
    assert "IntentSpec" in document["components"]["schemas"]
    assert yaml.safe_dump(document)  # plain data all the way down
