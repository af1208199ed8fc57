"""The review page's behaviour over HTTP, without a browser: login, tenancy, escaping, CSRF, actions.

FastAPI's TestClient against the real API on a real home (SQLite, or
PostgreSQL too when ``APX_TEST_DATABASE_URL`` is set). What only a browser can
show (the page as rendered, the cookie's flags at work) is in
``test_review_page.py``.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
import yaml
from review_page_support import BOTH_STORES, POOL, Tokens, audit_actions, login

from orchestrator.bootstrap import App
from orchestrator.decision import Decision, Status
from orchestrator.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

OpenPr = Callable[..., Decision]


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert found, "the page has no form carrying a CSRF token"
    return found.group(1)


def prod_replicas(app: App) -> int:
    shown = subprocess.run(
        ["git", "-C", str(app.settings.repo_path), "show", f"prod:{POOL}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(yaml.safe_load(shown.stdout)["spec"]["replicas"])


# -- login -----------------------------------------------------------------------------------


def test_login_sets_an_httponly_samesite_strict_cookie_and_opens_the_pending_prs(
    client: TestClient, tokens: Tokens
) -> None:
    response = client.post("/login", data={"token": tokens.reviewer})
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"apx_token={tokens.reviewer};")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= flags
    page = client.get("/")
    assert page.status_code == 200
    assert "alice" in page.text and "No PRs are waiting for review" in page.text


def test_a_bad_token_gets_the_form_again_with_the_reason_and_is_audited(client: TestClient, app: App) -> None:
    response = client.post("/login", data={"token": "apx_not-a-token-anyone-has"})
    assert response.status_code == 401
    assert "that token is not valid" in response.text and 'name="token"' in response.text
    assert "set-cookie" not in response.headers
    assert ("api.refused", "anonymous") in audit_actions(app)


def test_pages_send_an_anonymous_visitor_to_the_login_form(client: TestClient) -> None:
    for path in ("/", "/ui/intents", "/ui/breakers", "/ui/prs/pr-anything"):
        response = client.get(path)
        assert response.status_code == 303 and response.headers["location"] == "/login", path


def test_a_revoked_token_ends_the_session(client: TestClient, tokens: Tokens, app: App) -> None:
    from orchestrator.principals import Principals

    login(client, tokens.reviewer)
    Principals.load(app.settings.home).revoke("alice")
    assert client.get("/").headers["location"] == "/login"
    assert ("api.refused", "anonymous") in audit_actions(app)


def test_logout_clears_the_cookie(client: TestClient, tokens: Tokens) -> None:
    login(client, tokens.reviewer)
    response = client.post("/logout", data={"csrf": csrf_of(client.get("/").text)})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert 'apx_token=""' in response.headers["set-cookie"]
    assert client.get("/").headers["location"] == "/login"


# -- what a reviewer sees ------------------------------------------------------------------------


def test_a_pending_pr_shows_its_diff_checks_blast_radius_rationale_chain_and_approvals(
    client: TestClient, tokens: Tokens, submit: Callable[..., Decision], open_pr: OpenPr
) -> None:
    cause = submit("dev", 5, agent="builder", rationale="traffic doubled after the launch")
    decision = open_pr(6, rationale="p95 over SLO for 5m", caused_by=cause.intent_id)
    assert decision.pr is not None
    login(client, tokens.reviewer)
    html = client.get("/").text
    assert f'id="pr-{decision.pr.id}"' in html
    assert '<span class="del">-  replicas: 4</span>' in html
    assert '<span class="add">+  replicas: 6</span>' in html
    assert "p95 over SLO for 5m" in html
    assert cause.intent_id in html and "traffic doubled after the launch" in html  # the causal chain
    assert "0 of 1" in html
    for check in decision.checks:
        assert f"<td>{check.name}</td>" in html
    assert "replica_delta" in html or "replicas" in html  # the blast radius, whatever its keys
    assert 'action="/ui/prs/' in html and "Approve" in html and "Reject" in html


def test_agent_written_rationale_is_shown_as_text_never_as_markup(
    client: TestClient, tokens: Tokens, open_pr: OpenPr
) -> None:
    open_pr(6, rationale='<script>alert("pwned")</script><img src=x onerror=alert(1)>')
    login(client, tokens.reviewer)
    response = client.get("/")
    assert "<script>alert" not in response.text and "<img src=x" not in response.text
    escaped = "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"
    assert escaped in response.text
    # And a second line of defence: the page may run no script at all.
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "script-src" not in response.headers["content-security-policy"]


def test_a_reviewer_of_another_tenant_neither_sees_nor_can_approve_the_pr(
    client: TestClient, tokens: Tokens, open_pr: OpenPr, app: App
) -> None:
    decision = open_pr()
    assert decision.pr is not None
    login(client, tokens.outsider)
    page = client.get("/")
    assert decision.pr.id not in page.text and "No PRs are waiting" in page.text
    shown = client.get(f"/ui/prs/{decision.pr.id}")
    assert shown.status_code == 403 and "tenant &#39;acme&#39;" in shown.text
    approve = client.post(
        f"/ui/prs/{decision.pr.id}/approve", data={"csrf": csrf_of(page.text), "comment": "sure"}
    )
    assert approve.status_code == 403
    pr = app.store.pull_request(decision.pr.id)
    assert pr is not None and pr.status == "open" and pr.reviews == ()
    assert ("api.refused", "gina") in audit_actions(app)


def test_an_agent_token_cannot_use_the_review_page(client: TestClient, tokens: Tokens) -> None:
    login(client, tokens.agent)
    response = client.get("/")
    assert response.status_code == 403
    assert "role agent:optimizer may not read PRs" in response.text


def test_an_agent_token_can_never_approve(
    client: TestClient, tokens: Tokens, open_pr: OpenPr, app: App
) -> None:
    decision = open_pr()
    assert decision.pr is not None
    login(client, tokens.agent)
    csrf = csrf_of(client.get("/ui/intents").text)
    response = client.post(f"/ui/prs/{decision.pr.id}/approve", data={"csrf": csrf})
    assert response.status_code == 403 and "may not approve or reject PRs" in response.text
    pr = app.store.pull_request(decision.pr.id)
    assert pr is not None and pr.status == "open" and prod_replicas(app) == 4


# -- acting --------------------------------------------------------------------------------------


@BOTH_STORES
def test_approving_merges_the_pr_into_prod_and_says_so(
    client: TestClient, tokens: Tokens, open_pr: OpenPr, app: App
) -> None:
    decision = open_pr(6)
    assert decision.pr is not None and prod_replicas(app) == 4
    login(client, tokens.reviewer)
    csrf = csrf_of(client.get("/").text)
    response = client.post(
        f"/ui/prs/{decision.pr.id}/approve", data={"csrf": csrf, "comment": "matches the incident plan"}
    )
    assert response.status_code == 200
    assert 'data-result="merged"' in response.text and "merged into prod" in response.text
    assert prod_replicas(app) == 6
    pr = app.store.pull_request(decision.pr.id)
    assert pr is not None and pr.status == "merged" and pr.intent.status is Status.MERGED
    assert [(r.reviewer, r.comment) for r in pr.reviews] == [("alice", "matches the incident plan")]
    assert "No PRs are waiting" in client.get("/").text


def two_approvals(settings: Settings) -> Settings:
    prod = settings.environments["prod"].model_copy(update={"approvals": 2})
    return settings.model_copy(update={"environments": {**settings.environments, "prod": prod}})


def one_deploy_per_window(settings: Settings) -> Settings:
    breaker = settings.admission.breaker.model_copy(update={"max_deploys": 1})
    return settings.model_copy(
        update={"admission": settings.admission.model_copy(update={"breaker": breaker})}
    )


@pytest.mark.parametrize("tune", [two_approvals])
def test_with_two_approvals_needed_the_first_one_waits(
    client: TestClient, tokens: Tokens, open_pr: OpenPr, app: App
) -> None:
    decision = open_pr()
    assert decision.pr is not None
    login(client, tokens.reviewer)
    response = client.post(f"/ui/prs/{decision.pr.id}/approve", data={"csrf": csrf_of(client.get("/").text)})
    assert 'data-result="waiting"' in response.text and "1 of 2 approvals" in response.text
    assert prod_replicas(app) == 4


@BOTH_STORES
def test_rejecting_closes_the_pr_and_leaves_prod_alone(
    client: TestClient, tokens: Tokens, open_pr: OpenPr, app: App
) -> None:
    decision = open_pr()
    assert decision.pr is not None
    login(client, tokens.reviewer)
    response = client.post(
        f"/ui/prs/{decision.pr.id}/reject",
        data={"csrf": csrf_of(client.get("/").text), "comment": "not during the sale"},
    )
    assert 'data-result="rejected"' in response.text and "not during the sale" in response.text
    assert prod_replicas(app) == 4
    view = app.store.get(decision.intent_id)
    assert view is not None and view.status is Status.PR_REJECTED


def test_the_submitter_may_not_approve_its_own_change(
    client: TestClient, tokens: Tokens, open_pr: OpenPr, app: App
) -> None:
    decision = open_pr()
    assert decision.pr is not None
    login(client, tokens.namesake)  # a reviewer account called "optimizer", the submitting agent
    response = client.post(f"/ui/prs/{decision.pr.id}/approve", data={"csrf": csrf_of(client.get("/").text)})
    assert response.status_code == 403
    assert "is an agent" in response.text or "submitted this change" in response.text
    pr = app.store.pull_request(decision.pr.id)
    assert pr is not None and pr.status == "open" and prod_replicas(app) == 4
    assert ("api.refused", "optimizer") in audit_actions(app)


def test_approving_a_pr_that_is_already_merged_is_refused_with_the_reason(
    client: TestClient, tokens: Tokens, open_pr: OpenPr, app: App
) -> None:
    decision = open_pr()
    assert decision.pr is not None
    app.reviews.approve(decision.pr.id, by="bob")
    login(client, tokens.reviewer)
    response = client.post(f"/ui/prs/{decision.pr.id}/approve", data={"csrf": csrf_of(client.get("/").text)})
    assert response.status_code == 409
    assert "already merged" in response.text


def test_a_comment_over_the_limit_is_refused_and_nothing_is_recorded(
    client: TestClient, tokens: Tokens, open_pr: OpenPr, app: App
) -> None:
    decision = open_pr()
    assert decision.pr is not None
    login(client, tokens.reviewer)
    response = client.post(
        f"/ui/prs/{decision.pr.id}/approve",
        data={"csrf": csrf_of(client.get("/").text), "comment": "x" * 2001},
    )
    assert response.status_code == 422 and "at most 2000" in response.text
    pr = app.store.pull_request(decision.pr.id)
    assert pr is not None and pr.status == "open" and pr.reviews == ()


@pytest.mark.parametrize("csrf", [None, "", "0" * 64])
def test_a_form_without_this_sessions_csrf_token_is_refused(
    client: TestClient, tokens: Tokens, open_pr: OpenPr, app: App, csrf: str | None
) -> None:
    decision = open_pr()
    assert decision.pr is not None
    login(client, tokens.reviewer)
    data = {"comment": "lgtm"} if csrf is None else {"comment": "lgtm", "csrf": csrf}
    response = client.post(f"/ui/prs/{decision.pr.id}/approve", data=data)
    assert response.status_code == 403 and "CSRF" in response.text
    pr = app.store.pull_request(decision.pr.id)
    assert pr is not None and pr.status == "open" and prod_replicas(app) == 4
    assert ("api.refused", "alice") in audit_actions(app)


def test_one_sessions_csrf_token_does_not_work_for_another(
    client: TestClient, api: FastAPI, tokens: Tokens, open_pr: OpenPr
) -> None:
    from fastapi.testclient import TestClient

    decision = open_pr()
    assert decision.pr is not None
    login(client, tokens.engineer)
    engineers = csrf_of(client.get("/ui/breakers").text)
    other = TestClient(api, follow_redirects=False)  # a second browser, without the API's lifespan
    try:
        login(other, tokens.reviewer)
        response = other.post(f"/ui/prs/{decision.pr.id}/approve", data={"csrf": engineers})
    finally:
        other.close()
    assert response.status_code == 403


def test_a_review_without_a_session_is_refused_with_401(client: TestClient, open_pr: OpenPr) -> None:
    decision = open_pr()
    assert decision.pr is not None
    response = client.post(f"/ui/prs/{decision.pr.id}/approve", data={"csrf": "x"})
    assert response.status_code == 401 and "log in first" in response.text


def test_an_unknown_pr_is_a_404_page(client: TestClient, tokens: Tokens) -> None:
    login(client, tokens.reviewer)
    response = client.get("/ui/prs/pr-does-not-exist")
    assert response.status_code == 404 and "there is no PR" in response.text


# -- the intent log ------------------------------------------------------------------------------


@BOTH_STORES
def test_the_intent_log_filters_and_pages(
    client: TestClient, tokens: Tokens, submit: Callable[..., Decision]
) -> None:
    applied = submit("dev", 5, agent="builder")
    held = submit("dev", 7, agent="builder")  # the same agent again within 5 minutes
    other = submit("dev", 8, agent="security")
    assert applied.status is Status.APPLIED and other.status is Status.APPLIED
    assert held.status is Status.RATE_LIMITED
    login(client, tokens.engineer)

    everything = client.get("/ui/intents").text
    assert all(d.intent_id in everything for d in (applied, held, other))
    builders = client.get("/ui/intents", params={"agent": "builder", "status": "applied"}).text
    assert applied.intent_id in builders
    assert held.intent_id not in builders and other.intent_id not in builders
    recent = client.get("/ui/intents", params={"since": "1h", "target": "WorkerPool/checkout"}).text
    assert all(d.intent_id in recent for d in (applied, held, other))

    first = client.get("/ui/intents", params={"limit": "2"}).text
    assert other.intent_id in first and held.intent_id in first and applied.intent_id not in first
    link = re.search(r'id="next-page" href="([^"]+)"', first)
    assert link, "a full page links to the next one"
    second = client.get(link.group(1).replace("&amp;", "&")).text
    assert applied.intent_id in second and other.intent_id not in second
    assert 'id="next-page"' not in second


@BOTH_STORES
def test_the_intent_log_shows_only_the_principals_tenants(
    client: TestClient, tokens: Tokens, submit: Callable[..., Decision]
) -> None:
    mine = submit("dev", 5)
    login(client, tokens.outsider)
    page = client.get("/ui/intents")
    assert page.status_code == 200 and mine.intent_id not in page.text and "No intents match" in page.text
    asked = client.get("/ui/intents", params={"tenant": "acme"})
    assert asked.status_code == 403 and mine.intent_id not in asked.text


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"status": "approvedish"}, "status &#39;approvedish&#39;"),
        ({"since": "last tuesday"}, "since &#39;last tuesday&#39;"),
        ({"target": "checkout"}, "target:"),
        ({"limit": "0"}, "limit &#39;0&#39;"),
        ({"cursor": "not-a-cursor"}, "not a cursor"),
    ],
)
def test_a_bad_filter_is_named_on_the_page(
    client: TestClient, tokens: Tokens, params: dict[str, str], named: str
) -> None:
    login(client, tokens.reviewer)
    response = client.get("/ui/intents", params=params)
    assert response.status_code == 422
    assert named in response.text


# -- breakers ------------------------------------------------------------------------------------


@pytest.fixture
def tripped(submit: Callable[..., Decision]) -> Decision:
    """The acme/dev breaker open: one deploy allowed per window (``one_deploy_per_window``),
    and a second agent tries."""
    assert submit("dev", 5, agent="builder").status is Status.APPLIED
    held = submit("dev", 6, agent="security")
    assert held.status is Status.CIRCUIT_OPEN, held.reasons
    return held


@pytest.mark.parametrize("tune", [one_deploy_per_window])
@BOTH_STORES
def test_an_engineer_resets_an_open_breaker(
    client: TestClient, tokens: Tokens, tripped: Decision, app: App
) -> None:
    login(client, tokens.engineer)
    page = client.get("/ui/breakers")
    assert 'id="breaker-acme-dev"' in page.text and "Reset acme/dev" in page.text
    response = client.post("/ui/breakers/acme/dev/reset", data={"csrf": csrf_of(page.text)})
    assert response.status_code == 200 and "acme/dev closed by erin" in response.text
    assert "No breaker is open" in response.text
    state = app.store.breaker(tenant="acme", environment="dev")
    assert state is not None and not state.open and state.reset_by == "erin"


@pytest.mark.parametrize("tune", [one_deploy_per_window])
def test_a_reviewer_sees_the_open_breaker_but_cannot_reset_it(
    client: TestClient, tokens: Tokens, tripped: Decision, app: App
) -> None:
    login(client, tokens.reviewer)
    page = client.get("/ui/breakers")
    assert 'id="breaker-acme-dev"' in page.text and "Reset acme/dev" not in page.text
    response = client.post("/ui/breakers/acme/dev/reset", data={"csrf": csrf_of(page.text)})
    assert response.status_code == 403 and "may not reset breakers" in response.text
    state = app.store.breaker(tenant="acme", environment="dev")
    assert state is not None and state.open


def test_resetting_a_breaker_that_does_not_exist_is_a_404(client: TestClient, tokens: Tokens) -> None:
    login(client, tokens.engineer)
    csrf = csrf_of(client.get("/ui/breakers").text)
    for path in ("/ui/breakers/acme/dev/reset", "/ui/breakers/acme/nowhere/reset"):
        response = client.post(path, data={"csrf": csrf})
        assert response.status_code == 404 and "there is no breaker" in response.text
