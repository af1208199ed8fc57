"""The CLI against a running server: ``--server URL`` / ``APX_SERVER`` with a token in ``APX_TOKEN``.

One ``apx serve`` (a real subprocess on 127.0.0.1, see ``test_cli_serve.py``) serves
the module. Its home allows many deploys per agent, so the tests do not throttle each
other, and trips the breaker after 4 deploys to one environment (the breaker test
trips it and resets it); dedupe still holds, so each test changes something of its own. The remote
commands run with no ``APX_HOME`` at all: what they know comes from the server. Where
the output must be the same as in-process, the same command is run on the home and
compared.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_cli import APX, EXAMPLES, apx, git
from test_cli_serve import Server, cli_env, serving

SCALE_CHECKOUT = EXAMPLES / "optimizer-scale-checkout.yaml"
BREAKER_AFTER = 4
ROLES = {
    "optimizer": ("agent:optimizer", ["acme"]),
    "builder": ("agent:builder", ["acme"]),
    "globex-bot": ("agent:optimizer", ["globex"]),
    "alice": ("reviewer", ["acme"]),
    "eve": ("reviewer", ["globex"]),
    "bob": ("engineer", ["acme"]),
}


@dataclass
class Remote:
    home: Path
    server: Server
    tokens: dict[str, str]

    def as_(self, who: str | None, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """``apx ARGS`` against the server with ``who``'s token (None: no token), and no home."""
        env = cli_env(token=self.tokens[who] if who else None, APX_SERVER=self.server.url)
        # Run beside the home, not in it: no ./.apx for the CLI to find by accident.
        return subprocess.run(
            [APX, *args],
            capture_output=True,
            text=True,
            input=stdin,
            env=env,
            cwd=self.home.parent,
            timeout=180,
        )

    def local(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``apx ARGS`` in-process on the server's home."""
        return apx(*args, home=self.home)


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    base = tmp_path_factory.mktemp("remote")
    home = base / "home"
    assert apx("init", home=home).returncode == 0
    config = yaml.safe_load((home / "apx.yaml").read_text())
    config["admission"]["rate_limit"] = {"deploys": 100, "per": "5m"}
    config["admission"]["breaker"] = {"max_deploys": BREAKER_AFTER, "window": "15m", "cooldown": "30m"}
    (home / "apx.yaml").write_text(yaml.safe_dump(config))
    tokens = {}
    for name, (role, tenants) in ROLES.items():
        added = apx("principals", "add", name, "--role", role, *[f"--tenant={t}" for t in tenants], home=home)
        assert added.returncode == 0, added.stderr
        tokens[name] = added.stdout.strip()
    with serving(home, base / "logs") as server:
        yield Remote(home=home, server=server, tokens=tokens)


def intent_with(replicas: int, *, environment: str = "dev", pool: str = "checkout") -> str:
    """The example intent, scaled to ``replicas`` (a change of its own, so dedupe does not hold it)."""
    document = yaml.safe_load(SCALE_CHECKOUT.read_text())
    document["spec"]["environment"] = environment
    document["spec"]["changes"][0]["resource"]["spec"]["replicas"] = replicas
    return yaml.safe_dump(document)


def decision_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.stdout, result.stderr
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def test_a_submit_over_http_prints_and_exits_as_in_process(remote: Remote) -> None:
    submitted = remote.as_("optimizer", "submit", "-", stdin=intent_with(5))
    assert submitted.returncode == 0, submitted.stderr
    first = submitted.stdout.splitlines()[0]
    assert " applied (" in first
    intent_id = first.split()[0]
    assert "  check policy: pass" in submitted.stdout and "  commit: " in submitted.stdout
    assert git(remote.home, "verify-commit", "dev").returncode == 0

    again = remote.as_("optimizer", "submit", "-", "--json", stdin=intent_with(5))
    assert again.returncode == 3  # held by admission, as in-process
    held = decision_of(again)
    assert held["status"] == "duplicate" and held["duplicate_of"] == intent_id

    # What a user reads is the same whether the CLI asks the server or opens the home.
    for command in (
        ("intents", "show", intent_id),
        ("intents", "show", intent_id, "--json"),
        ("intents", "list", "--agent", "optimizer", "--env", "dev", "-o", "json"),
        ("intents", "list", "--trace", held["trace_id"]),
    ):
        over_http, in_process = remote.as_("bob", *command), remote.local(*command)
        assert over_http.returncode == in_process.returncode == 0, over_http.stderr
        assert over_http.stdout == in_process.stdout, command


def test_the_agent_comes_from_the_token_and_another_is_refused(remote: Remote) -> None:
    before = remote.local("intents", "list", "-o", "json").stdout

    claimed = remote.as_("optimizer", "submit", "-", "--agent", "builder", stdin=intent_with(7))

    assert claimed.returncode == 2
    assert claimed.stderr.strip() == (
        "apx: refused: the intent claims agent 'builder' but this token submits as agent 'optimizer'"
    )
    assert remote.local("intents", "list", "-o", "json").stdout == before  # nothing was recorded
    same = remote.as_("optimizer", "submit", "-", "--agent", "optimizer", "--json", stdin=intent_with(7))
    assert same.returncode == 0 and decision_of(same)["agent"] == "optimizer"


def test_a_token_for_another_tenant_is_refused_with_exit_2_and_the_reason(remote: Remote) -> None:
    wrong = remote.as_("globex-bot", "submit", "-", stdin=intent_with(8))
    assert wrong.returncode == 2
    assert wrong.stderr.startswith("apx: refused: ")
    assert "globex-bot may not submit intents for tenant 'acme' (its tenants: globex)" in wrong.stderr

    pr = decision_of(remote.as_("builder", "submit", "-", "--json", stdin=intent_with(9, environment="prod")))
    assert pr["status"] == "pr_open"
    assert remote.as_("eve", "prs", "list").stdout.strip() == "no open PRs"  # acme's PRs are not hers
    approve = remote.as_("eve", "prs", "approve", pr["pr"]["id"])
    assert approve.returncode == 2
    assert "refused: eve may not approve or reject PRs for tenant 'acme'" in approve.stderr

    # Each refusal is in the audit log, with who was refused and never the token.
    exported = remote.local("audit", "export").stdout
    entries = [line["entry"] for line in map(json.loads, exported.splitlines()) if line["type"] == "entry"]
    refused = {e["actor"] for e in entries if e["action"] == "api.refused"}
    assert {"globex-bot", "eve"} <= refused
    assert not any(token in exported for token in remote.tokens.values())


def test_a_reviewer_approves_a_prod_pr_over_http_and_it_is_merged(remote: Remote) -> None:
    opened = remote.as_("optimizer", "submit", "-", "--json", stdin=intent_with(6, environment="prod"))
    assert opened.returncode == 0, opened.stderr
    pr_id = decision_of(opened)["pr"]["id"]

    shown = remote.as_("alice", "prs", "show", pr_id)
    assert shown.returncode == 0 and shown.stdout == remote.local("prs", "show", pr_id).stdout
    assert f"{pr_id}  open" in remote.as_("alice", "prs", "list").stdout
    by_agent = remote.as_("optimizer", "prs", "approve", pr_id)
    assert by_agent.returncode == 2
    assert "refused: role agent:optimizer may not approve or reject PRs" in by_agent.stderr

    approved = remote.as_("alice", "prs", "approve", pr_id, "--comment", "capacity for the sale")

    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.startswith(f"PR {pr_id} merged into prod as signed commit ")
    merged = remote.local("prs", "show", pr_id, "--json")
    details = json.loads(merged.stdout)
    assert details["status"] == "merged" and details["approvals"] == ["alice"]  # the token's name
    assert git(remote.home, "verify-commit", "prod").returncode == 0
    live = yaml.safe_load(git(remote.home, "show", "prod:WorkerPool/checkout.yaml").stdout)
    assert live["spec"]["replicas"] == 6


def test_engineers_see_breakers_and_verify_the_audit_log_and_agents_cannot(remote: Remote) -> None:
    held = None
    for replicas in range(10, 10 + BREAKER_AFTER + 2):  # bounded: the breaker trips within these
        result = remote.as_("builder", "submit", "-", "--json", stdin=intent_with(replicas))
        if result.returncode == 3:
            held = decision_of(result)
            break
        assert result.returncode == 0, result.stderr
    assert held is not None and held["status"] == "circuit_open", "the breaker never tripped"

    listed = remote.as_("bob", "breakers", "list")
    assert listed.returncode == 0 and "acme/dev: OPEN" in listed.stdout
    assert listed.stdout == remote.local("breakers", "list").stdout
    for command in (("audit", "verify"), ("breakers", "reset", "--tenant", "acme", "--env", "dev")):
        refused = remote.as_("optimizer", *command)
        assert refused.returncode == 2 and "refused: role agent:optimizer may not" in refused.stderr

    reset = remote.as_("bob", "breakers", "reset", "--tenant", "acme", "--env", "dev")
    assert reset.returncode == 0 and reset.stdout.strip() == "acme/dev: closed by bob"  # the token's name
    assert "reset by bob" in remote.as_("bob", "breakers", "list").stdout
    verified = remote.as_("bob", "audit", "verify")
    assert verified.returncode == 0 and verified.stdout.startswith("OK: ")


def test_no_wait_returns_what_admission_said_and_the_server_decides_it(remote: Remote) -> None:
    queued = remote.as_("optimizer", "submit", "-", "--no-wait", "--json", stdin=intent_with(3))
    assert queued.returncode == 0, queued.stderr
    decision = decision_of(queued)
    assert decision["status"] == "queued" and decision["commit"] is None

    status = ""
    for _ in range(120):  # bounded: the worker drains every 2 s and on every submit
        shown = remote.as_("optimizer", "intents", "show", decision["intent_id"], "--json")
        status = json.loads(shown.stdout)["status"]
        if status != "queued":
            break
    assert status == "applied"


def test_an_agent_on_another_host_runs_against_the_server(remote: Remote) -> None:
    request = "expose /v2/refunds on payments-api with auth, 5% canary"

    ran = remote.as_("builder", "agents", "run", "builder", "--request", request, "--json")

    assert ran.returncode == 0, ran.stderr
    run = json.loads(ran.stdout)
    assert run["agent"] == "builder" and run["status"] == "applied", run
    shown = json.loads(remote.local("intents", "show", run["decision"]["intent_id"], "--json").stdout)
    assert shown["agent"] == "builder" and shown["intent"]["spec"]["rationale"] == run["proposal"]
    route = yaml.safe_load(git(remote.home, "show", "dev:Route/payments-v2-refunds.yaml").stdout)
    assert route["spec"]["path"] == "/v2/refunds"

    another = "expose /v2/payouts on payments-api with auth"
    impostor = remote.as_("optimizer", "agents", "run", "builder", "--request", another)
    assert impostor.returncode == 2
    assert "refused: the intent claims agent 'builder' but this token submits as agent 'optimizer'" in (
        impostor.stderr
    )


def test_a_revoked_token_stops_working_without_a_restart(remote: Remote) -> None:
    added = apx("principals", "add", "carol", "--role", "reviewer", "--tenant", "acme", home=remote.home)
    remote.tokens["carol"] = added.stdout.strip()
    assert remote.as_("carol", "prs", "list").returncode == 0

    assert apx("principals", "revoke", "carol", home=remote.home).returncode == 0

    refused = remote.as_("carol", "prs", "list")
    assert refused.returncode == 2
    assert refused.stderr.strip() == "apx: refused: the token is not valid (unknown or revoked)"


def test_missing_tokens_bad_urls_and_dead_servers_are_clear(remote: Remote, tmp_path: Path) -> None:
    no_token = remote.as_(None, "intents", "list")
    assert no_token.returncode == 2 and "set APX_TOKEN" in no_token.stderr

    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    dead = f"http://127.0.0.1:{port}"  # nothing listens there now
    env = cli_env(token=remote.tokens["bob"])
    unreachable = subprocess.run(
        [APX, "--server", dead, "intents", "list"], capture_output=True, text=True, env=env, timeout=60
    )
    assert unreachable.returncode == 4
    assert f"cannot reach the APX server at {dead}" in unreachable.stderr

    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text("apiVersion: apx/v1\nkind: Intent\nmetadata: {tenant: acme}\nspec: [\n")
    parsed_first = subprocess.run(
        [APX, "submit", str(bad_file), "--server", dead], capture_output=True, text=True, env=env, timeout=60
    )
    assert parsed_first.returncode == 2 and str(bad_file) in parsed_first.stderr  # read before any request

    not_a_url = subprocess.run(
        [APX, "intents", "list", "--server", "localhost:8700"], capture_output=True, text=True, env=env
    )
    assert not_a_url.returncode == 2 and "give the server's URL" in not_a_url.stderr

    only_local = subprocess.run(
        [APX, "--server", remote.server.url, "intents", "blame", "WorkerPool/checkout"],
        capture_output=True,
        text=True,
        env=cli_env(remote.home, token=remote.tokens["bob"]),
    )
    assert only_local.returncode == 2 and "runs in-process only" in only_local.stderr
