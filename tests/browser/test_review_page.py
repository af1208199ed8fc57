"""The review page in a real headless Chromium, against the real API under uvicorn.

An agent submits a prod intent over HTTP; a reviewer logs in with a token,
reads the PR's diff, approves it with a comment and sees it merged, and the
prod branch in git has moved. Also: another tenant's reviewer does not see the
PR, a bad token is refused, and script in agent-written text does not run.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import yaml
from review_page_support import POOL, Tokens, intent_document

from orchestrator.bootstrap import App

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


def git(app: App, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(app.settings.repo_path), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def submit_over_http(server: str, token: str, document: dict[str, Any]) -> dict[str, Any]:
    """What an agent on another host does: POST the intent and wait for the decision."""
    response = httpx.post(
        f"{server}/v1/intents",
        params={"wait": 30},
        json=document,
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    decision: dict[str, Any] = response.json()
    assert decision["status"] == "pr_open", decision["reasons"]
    return decision


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    """A fresh browser context per test: its own cookie jar, so no session leaks between tests."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


def log_in(page: Page, server: str, token: str) -> None:
    page.goto(f"{server}/login")
    page.fill("#token", token)
    page.click("button[type=submit]")


def test_a_reviewer_logs_in_reads_the_diff_approves_and_sees_it_merged(
    server: str, server_app: App, server_tokens: Tokens, page: Page, tmp_path: Path
) -> None:
    prod_before = git(server_app, "rev-parse", "prod")
    decision = submit_over_http(
        server, server_tokens.agent, intent_document("prod", 6, rationale="p95 over SLO for 5m")
    )
    pr_id = decision["pr"]["id"]

    log_in(page, server, server_tokens.reviewer)
    page.wait_for_url(f"{server}/")
    card = page.locator(f"#pr-{pr_id}")
    card.wait_for()
    assert page.inner_text("#who") == "alice"
    assert "p95 over SLO for 5m" in card.locator(".rationale").inner_text()
    assert card.locator(".approvals .count").inner_text() == "0 of 1"
    # The diff is there, line by line, old replicas removed and new ones added, and styled as such.
    removed = card.locator("figure.diff .del", has_text="replicas: 4")
    added = card.locator("figure.diff .add", has_text="replicas: 6")
    assert removed.count() == 1 and added.count() == 1
    assert added.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(230, 255, 236)"
    assert removed.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 235, 233)"
    assert card.locator("table.checks tbody tr").count() == len(decision["checks"])
    screenshot = tmp_path / "review-page.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.read_bytes().startswith(b"\x89PNG") and screenshot.stat().st_size > 10_000

    card.locator("textarea[name=comment]").fill("matches the incident plan")
    card.locator("button.approve").click()
    outcome = page.locator("#outcome")
    outcome.wait_for()
    assert outcome.get_attribute("data-result") == "merged"
    assert f"PR {pr_id} merged into prod" in outcome.inner_text()
    assert "matches the incident plan" in page.locator(".reviews").inner_text()
    page.screenshot(path=str(tmp_path / "merged.png"), full_page=True)

    prod_after = git(server_app, "rev-parse", "prod")
    assert prod_after != prod_before
    assert page.locator("code.commit").inner_text() == prod_after
    assert yaml.safe_load(git(server_app, "show", f"prod:{POOL}"))["spec"]["replicas"] == 6
    assert "Approved-By: alice" in git(server_app, "log", "-1", "--format=%B", "prod")

    page.goto(f"{server}/")
    assert page.locator("#no-prs").is_visible()


def test_a_reviewer_of_another_tenant_does_not_see_the_pr(
    server: str, server_tokens: Tokens, page: Page
) -> None:
    decision = submit_over_http(server, server_tokens.agent, intent_document("prod", 7))
    log_in(page, server, server_tokens.outsider)
    page.wait_for_url(f"{server}/")
    assert page.inner_text("#who") == "gina"
    assert page.locator("#no-prs").is_visible()
    assert page.locator(f"#pr-{decision['pr']['id']}").count() == 0
    response = page.goto(f"{server}/ui/prs/{decision['pr']['id']}")
    assert response is not None and response.status == 403
    assert "may not read PRs for tenant 'acme'" in page.inner_text("#reason")


def test_a_bad_token_is_refused_and_no_session_is_made(server: str, page: Page) -> None:
    log_in(page, server, "apx_this-token-was-never-issued")
    page.locator("#error").wait_for()
    assert "that token is not valid" in page.inner_text("#error")
    assert page.url == f"{server}/login"
    assert page.context.cookies() == []
    page.goto(f"{server}/")
    assert page.url == f"{server}/login"


def test_script_in_the_rationale_is_shown_as_text_and_never_runs(
    server: str, server_tokens: Tokens, page: Page
) -> None:
    rationale = '<script>window.pwned = true</script><img src=x onerror="window.pwned = true">'
    decision = submit_over_http(server, server_tokens.agent, intent_document("prod", 8, rationale=rationale))
    log_in(page, server, server_tokens.reviewer)
    card = page.locator(f"#pr-{decision['pr']['id']}")
    card.wait_for()
    assert card.locator(".rationale").inner_text() == rationale
    assert page.evaluate("() => window.pwned === undefined")
    assert page.locator(".rationale script, .rationale img").count() == 0


def test_the_session_cookie_is_out_of_reach_of_page_scripts(
    server: str, server_tokens: Tokens, page: Page
) -> None:
    log_in(page, server, server_tokens.reviewer)
    page.wait_for_url(f"{server}/")
    (cookie,) = page.context.cookies()
    assert cookie["name"] == "apx_token" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("() => document.cookie") == ""
