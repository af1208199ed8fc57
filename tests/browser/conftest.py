"""Fixtures of the review-page tests: a real home, principals with tokens, the API, and Chromium.

Everything is real: a home made by ``apx init`` (SQLite, or PostgreSQL when
``APX_TEST_DATABASE_URL`` is set), a git config repo with SSH-signed commits,
the langgraph review flow, ``principals.yaml`` with hashed tokens.
``client`` drives the pages with FastAPI's TestClient; ``server`` runs the same
API under uvicorn on 127.0.0.1, and ``chromium`` is Debian's Chromium driven by
playwright (no playwright browser download: its registry is not reachable from
CI, and Debian's package is what ``.ci/run`` installs).

Without ``/usr/bin/chromium`` the browser tests skip, unless
``APX_REQUIRE_BROWSER=1`` (set by ``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from review_page_support import CHROMIUM, Tokens, add_principals, intent_document

from orchestrator.bootstrap import App, build
from orchestrator.decision import Decision, Status
from orchestrator.home import init_home
from orchestrator.intent import Intent
from orchestrator.settings import Settings, load_settings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from playwright.sync_api import Browser


def _settings(tmp_path: Path, database_url: str | None = None) -> Settings:
    home = tmp_path / "home"
    init_home(home)
    settings = load_settings(home)
    if database_url:
        settings = settings.model_copy(
            update={"database": settings.database.model_copy(update={"url": database_url})}
        )
    return settings


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """A home made by ``apx init``: SQLite, or PostgreSQL under ``BOTH_STORES``."""
    kind = getattr(request, "param", "sqlite")
    url = request.getfixturevalue("pg_url") if kind == "postgres" else None
    return _settings(tmp_path, url)


@pytest.fixture
def tokens(settings: Settings) -> Tokens:
    return add_principals(settings.home)


@pytest.fixture
def tune() -> Callable[[Settings], Settings]:
    """How a test changes the settings before the App is built: override with
    ``@pytest.mark.parametrize("tune", [function])``."""
    return lambda settings: settings


@pytest.fixture
def app(settings: Settings, tune: Callable[[Settings], Settings]) -> Iterator[App]:
    application = build(settings.home, settings=tune(settings))
    yield application
    application.close()


@pytest.fixture
def api(app: App, tokens: Tokens) -> FastAPI:
    from orchestrator.api.app import create_api

    return create_api(app)


@pytest.fixture
def client(api: FastAPI) -> Iterator[TestClient]:
    """A client without the API's lifespan: intents are decided in-process by ``open_pr``."""
    from fastapi.testclient import TestClient

    with_client = TestClient(api, follow_redirects=False)
    yield with_client
    with_client.close()


# -- intents ---------------------------------------------------------------------------------


@pytest.fixture
def submit(app: App) -> Callable[..., Decision]:
    """Submit in-process as ``agent`` (as ``apx submit`` does) and return the decision."""

    def run(
        environment: str,
        replicas: int,
        *,
        agent: str = "optimizer",
        rationale: str = "p95 over SLO",
        caused_by: str | None = None,
    ) -> Decision:
        document = intent_document(environment, replicas, rationale=rationale, caused_by=caused_by)
        return app.orchestrator.submit(Intent.model_validate(document), agent=agent)

    return run


@pytest.fixture
def open_pr(submit: Callable[..., Decision]) -> Callable[..., Decision]:
    """Open a prod PR (replicas 4 → ``replicas``) and return its decision."""

    def run(replicas: int = 6, **kwargs: Any) -> Decision:
        decision = submit("prod", replicas, **kwargs)
        assert decision.status is Status.PR_OPEN, decision.reasons
        return decision

    return run


# -- a real server and a real browser ---------------------------------------------------------


@pytest.fixture
def server_settings(tmp_path: Path) -> Settings:
    """SQLite only: the browser tests are about the page, and the store is covered by ``client``'s."""
    return _settings(tmp_path)


@pytest.fixture
def server_app(server_settings: Settings) -> Iterator[App]:
    application = build(server_settings.home, settings=server_settings)
    yield application
    application.close()


@pytest.fixture
def server_tokens(server_settings: Settings) -> Tokens:
    return add_principals(server_settings.home)


@pytest.fixture
def server(server_app: App, server_tokens: Tokens) -> Iterator[str]:
    """The API under uvicorn on 127.0.0.1 and a free port, in a thread; its base URL.

    The lifespan runs, so the drain worker decides submitted intents as under
    ``apx serve``. Start-up and shutdown wait a bounded time, then fail loudly.
    """
    import uvicorn

    from orchestrator.api.app import create_api

    api = create_api(server_app, drain_interval=0.2)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(api, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    try:
        for _ in range(300):
            if uv.started or not thread.is_alive():
                break
            time.sleep(0.05)
        if not uv.started:
            raise RuntimeError("uvicorn did not start within 15 seconds")
        yield f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop within 30 seconds"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Debian's headless Chromium through playwright; skipped (or failed under CI) without it."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is not installed (apt-get install chromium)"
        if os.environ.get("APX_REQUIRE_BROWSER") == "1":
            pytest.fail(f"APX_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            browser.close()
