"""Reviewing a prod PR from the command line, rolling it back, and the webhooks that follow."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_cli import EXAMPLES, apx, git


class Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def test_a_prod_change_is_reviewed_merged_rolled_back_and_announced(tmp_path: Path, receiver: str) -> None:
    home = tmp_path / "home"
    assert apx("init", home=home).returncode == 0
    config = yaml.safe_load((home / "apx.yaml").read_text())
    config["notifications"] = {"webhooks": [{"name": "ops", "url": receiver, "format": "json"}]}
    (home / "apx.yaml").write_text(yaml.safe_dump(config))

    submitted = apx(
        "submit",
        str(EXAMPLES / "optimizer-scale-checkout.yaml"),
        "--agent",
        "optimizer",
        "--env",
        "prod",
        "--json",
        home=home,
    )
    assert submitted.returncode == 0, submitted.stderr
    decision = json.loads(submitted.stdout)
    assert decision["status"] == "pr_open" and decision["pr"]["expires_at"]
    pr = decision["pr"]["id"]

    listed = apx("prs", "list", home=home)
    assert pr in listed.stdout and "approvals 0/1" in listed.stdout
    shown = apx("prs", "show", decision["intent_id"], home=home)
    assert (
        "rationale: checkout p95 over SLO" in shown.stdout and "diff WorkerPool/checkout.yaml" in shown.stdout
    )

    refused = apx("prs", "approve", pr, "--by", "optimizer", home=home)
    assert refused.returncode == 2 and "agent" in refused.stderr
    approved = apx("prs", "approve", pr, "--by", "alice", "--comment", "ok", home=home)
    assert approved.returncode == 0 and "merged into prod as signed commit" in approved.stdout, (
        approved.stderr
    )
    assert git(home, "verify-commit", "prod").returncode == 0
    again = apx("prs", "approve", pr, "--by", "bob", home=home)
    assert again.returncode == 2 and "already merged" in again.stderr

    undo = apx("rollback", decision["intent_id"], "--by", "alice", "--reason", "errors", "--json", home=home)
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert json.loads(undo.stdout)["status"] == "pr_open"  # prod: the rollback is reviewed too

    delivered = apx("notify", "deliver", home=home)
    assert delivered.returncode == 0 and "delivered" in delivered.stdout
    kinds = [n["apx_event"] for n in Receiver.received]
    assert kinds[:3] == ["pr.opened", "pr.approved", "pr.merged"] and kinds[-1] == "pr.opened"
    assert all(n["tenant"] == "acme" and n["environment"] == "prod" for n in Receiver.received)

    assert apx("audit", "verify", home=home).returncode == 0


def test_the_worker_runs_its_jobs_and_stops_by_itself(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert apx("init", home=home).returncode == 0
    result = apx("worker", "--for", "2s", home=home)
    assert result.returncode == 0, result.stderr
    for job in ("retention", "audit-checkpoint", "check_canaries", "expire_reviews", "drain_queued"):
        assert job in result.stdout
