"""The API on a real uvicorn server: concurrent agents over real HTTP, and a clean shutdown.

Endpoints run in uvicorn's thread pool and share one App; this checks that
agents submitting at once (and readers reading meanwhile) each get their own
decision, that every commit is signed and the audit log verifies afterwards,
and that stopping the server stops the drain worker. The server listens on
127.0.0.1 only, on a port the OS picks.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from test_api import pool_intent
from test_pipeline import git

from orchestrator.api.app import create_api
from orchestrator.bootstrap import App, build
from orchestrator.home import init_home
from orchestrator.principals import Principals

AGENTS = ["a1", "a2", "a3", "b1", "b2", "b3"]


class Running:
    def __init__(self, app: App, api: FastAPI, url: str, tokens: dict[str, str]) -> None:
        self.app, self.api, self.url, self.tokens = app, api, url, tokens


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    home = tmp_path / "home"
    init_home(home)
    app = build(home)
    principals = Principals.load(home)
    tokens = {name: principals.add(name, f"agent:{name}", ["acme"]) for name in AGENTS}
    tokens["alice"] = principals.add("alice", "reviewer", ["acme"])
    api = create_api(app, drain_interval=0.5)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(api, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield Running(app, api, f"http://127.0.0.1:{port}", tokens)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        app.close()
    assert not thread.is_alive(), "uvicorn did not stop"
    assert not api.state.worker.running, "the drain worker outlived the server"


def test_agents_submitting_at_once_each_get_their_decision(running: Running) -> None:
    def submit(agent: str) -> tuple[int, dict[str, Any]]:
        environment = "dev" if agent.startswith("a") else "prod"
        replicas = 5 + AGENTS.index(agent)
        with httpx.Client(base_url=running.url, timeout=60) as client:
            response = client.post(
                "/v1/intents?wait=45",
                json=pool_intent(environment, replicas=replicas),
                headers={"Authorization": f"Bearer {running.tokens[agent]}"},
            )
        return response.status_code, response.json()

    def read(_: int) -> int:
        headers = {"Authorization": f"Bearer {running.tokens['alice']}"}
        with httpx.Client(base_url=running.url, timeout=60) as client:
            return client.get("/v1/intents", headers=headers).status_code

    with ThreadPoolExecutor(len(AGENTS) + 4) as pool:
        submitted = [pool.submit(submit, agent) for agent in AGENTS]
        reading = [pool.submit(read, i) for i in range(4)]
        answers = [f.result(timeout=120) for f in submitted]
        readers = [f.result(timeout=120) for f in reading]

    assert set(readers) == {200}
    assert [code for code, _ in answers] == [200] * len(AGENTS), answers
    decisions = {body["agent"]: body for _, body in answers}
    assert set(decisions) == set(AGENTS)
    assert len({d["intent_id"] for d in decisions.values()}) == len(AGENTS)
    for agent, decision in decisions.items():
        # Same resource, one at a time: each lands, or is refused as a conflict with a reason.
        assert decision["status"] in {"applied", "pr_open", "rejected"}, decision
        if decision["status"] == "rejected":
            assert decision["reasons"], decision
        if decision["status"] == "applied":
            assert git(running.app, "verify-commit", decision["commit"]).returncode == 0, agent
    assert any(d["status"] == "applied" for d in decisions.values())
    assert running.app.audit.verify().ok
