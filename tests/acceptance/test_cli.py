"""The installed ``apx`` command, driven as a user drives it: exit codes, output, files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
APX = shutil.which("apx", path=str(Path(sys.executable).parent)) or "apx"


def apx(*args: str, home: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "APX_HOME": str(home)}
    env.pop("APX_DATABASE_URL", None)
    return subprocess.run([APX, *args], capture_output=True, text=True, input=stdin, env=env, timeout=120)


def git(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(home / "config-repo"), *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("acceptance") / "home"
    result = apx("init", home=path)
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture
def fresh_home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    assert apx("init", home=path).returncode == 0
    return path


def test_help_answers_quickly_and_lists_the_verbs() -> None:
    started = time.perf_counter()
    result = subprocess.run([APX, "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for verb in ("init", "submit", "intents", "breakers", "demo"):
        assert verb in result.stdout
    print(f"apx --help took {time.perf_counter() - started:.2f}s")  # informative, not asserted


def test_init_prints_what_it_made_and_refuses_an_existing_home_without_force(tmp_path: Path) -> None:
    home = tmp_path / "home"
    made = apx("init", home=home)
    assert made.returncode == 0
    for thing in ("apx.yaml", "config-repo", "apx_signing", "allowed_signers"):
        assert thing in made.stdout
    assert git(home, "rev-parse", "dev").stdout == git(home, "rev-parse", "prod").stdout
    assert git(home, "verify-commit", "dev").returncode == 0
    routes = git(home, "ls-tree", "--name-only", "dev", "Route/").stdout.split()
    assert len(routes) == 60

    again = apx("init", home=home)
    assert again.returncode == 2 and "--force" in again.stderr
    assert apx("init", "--force", home=home).returncode == 0


def test_submit_json_prints_one_decision_and_the_commit_verifies(fresh_home: Path) -> None:
    result = apx(
        "submit",
        str(EXAMPLES / "optimizer-scale-checkout.yaml"),
        "--agent",
        "optimizer",
        "--json",
        home=fresh_home,
    )
    assert result.returncode == 0, result.stderr
    decision = json.loads(result.stdout)
    assert decision["status"] == "applied"
    for field in ("intent_id", "reasons", "checks", "commit", "pr", "rollback", "trace_id"):
        assert field in decision
    assert git(fresh_home, "verify-commit", decision["commit"]).returncode == 0
    trailers = git(fresh_home, "log", "-1", "--format=%(trailers)", decision["commit"]).stdout
    assert (
        f"Intent-Id: {decision['intent_id']}" in trailers and f"Trace-Id: {decision['trace_id']}" in trailers
    )


def test_submit_from_stdin_to_prod_opens_a_pr_branch(fresh_home: Path) -> None:
    text = (EXAMPLES / "security-tighten-edge.yaml").read_text()
    prod = git(fresh_home, "rev-parse", "prod").stdout
    result = apx("submit", "-", "--agent", "security", "--json", home=fresh_home, stdin=text)
    assert result.returncode == 0, result.stderr
    decision = json.loads(result.stdout)
    assert decision["status"] == "pr_open"
    assert git(fresh_home, "rev-parse", "--verify", f"apx/{decision['intent_id']}").returncode == 0
    assert git(fresh_home, "rev-parse", "prod").stdout == prod


def test_exit_codes_follow_the_contract(fresh_home: Path) -> None:
    scale = str(EXAMPLES / "optimizer-scale-checkout.yaml")
    assert apx("submit", scale, "--agent", "optimizer", home=fresh_home).returncode == 0
    assert apx("submit", scale, "--agent", "optimizer", home=fresh_home).returncode == 3  # duplicate
    invalid = apx(
        "submit", str(EXAMPLES / "builder-invalid-replicas.yaml"), "--agent", "builder", home=fresh_home
    )
    assert invalid.returncode == 1
    assert "replicas" in invalid.stdout
    assert apx("submit", scale, "--agent", "optimizer", "--env", "nowhere", home=fresh_home).returncode == 2
    assert apx("submit", "--agent", "x", home=fresh_home).returncode == 2  # usage


def one_change(action: str, resource: str) -> str:
    return (
        "apiVersion: apx/v1\nkind: Intent\nmetadata: {tenant: acme}\nspec:\n  environment: dev\n"
        f"  changes:\n  - action: {action}\n    resource: {resource}\n"
    )


BAD_INPUTS = {
    "malformed yaml": (
        "apiVersion: apx/v1\nkind: Intent\nmetadata: {tenant: acme\n",
        "<stdin>:4:1: invalid YAML",
    ),
    "unknown kind": (
        one_change(
            "update", "{apiVersion: apx/v1, kind: Gadget, metadata: {name: x, tenant: acme}, spec: {}}"
        ),
        "kind",
    ),
    "path in a name": (
        one_change(
            "create", "{apiVersion: apx/v1, kind: Route, metadata: {name: ../x, tenant: acme}, spec: {}}"
        ),
        "name",
    ),
    "tenant mismatch": (
        one_change(
            "create", "{apiVersion: apx/v1, kind: Route, metadata: {name: x, tenant: globex}, spec: {}}"
        ),
        "tenant",
    ),
    "unknown environment": (
        (EXAMPLES / "optimizer-scale-checkout.yaml")
        .read_text()
        .replace("environment: dev", "environment: qa"),
        "qa",
    ),
    "over one MiB": ("#" * (1 << 20) + "\n", "limit"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_leaves_nothing_behind(fresh_home: Path, case: str) -> None:
    text, mentions = BAD_INPUTS[case]
    refs_before = git(fresh_home, "for-each-ref").stdout
    result = apx("submit", "-", "--agent", "builder", home=fresh_home, stdin=text)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and mentions in lines[0] and "Traceback" not in result.stderr
    assert git(fresh_home, "for-each-ref").stdout == refs_before
    listed = apx("intents", "list", "-o", "json", home=fresh_home)
    assert json.loads(listed.stdout) == []


def test_intents_list_and_show(fresh_home: Path) -> None:
    applied = json.loads(
        apx(
            "submit",
            str(EXAMPLES / "optimizer-scale-checkout.yaml"),
            "--agent",
            "optimizer",
            "--json",
            home=fresh_home,
        ).stdout
    )
    apx("submit", str(EXAMPLES / "builder-invalid-replicas.yaml"), "--agent", "builder", home=fresh_home)
    rows = json.loads(apx("intents", "list", "-o", "json", "--status", "applied", home=fresh_home).stdout)
    assert [r["id"] for r in rows] == [applied["intent_id"]]
    assert len(json.loads(apx("intents", "list", "-o", "json", "--since", "1h", home=fresh_home).stdout)) == 2
    assert json.loads(apx("intents", "list", "-o", "json", "--agent", "nobody", home=fresh_home).stdout) == []
    csv_out = apx("intents", "list", "-o", "csv", "--env", "dev", home=fresh_home).stdout.splitlines()
    assert csv_out[0].startswith("id,") and len(csv_out) == 3

    shown = apx("intents", "show", applied["intent_id"], home=fresh_home)
    assert shown.returncode == 0
    for text in ("received", "queued", "applied", applied["commit"], "replicas"):
        assert text in shown.stdout
    shown_json = json.loads(apx("intents", "show", applied["intent_id"], "--json", home=fresh_home).stdout)
    assert [e["status"] for e in shown_json["timeline"]] == ["received", "queued", "applied"]
    assert apx("intents", "show", "in-nope", home=fresh_home).returncode == 2


def test_breaker_trips_shows_in_list_and_a_human_resets_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert apx("init", home=home).returncode == 0
    settings = yaml.safe_load((home / "apx.yaml").read_text())
    settings["admission"]["breaker"] = {"max_deploys": 1, "window": "15m", "cooldown": "30m"}
    (home / "apx.yaml").write_text(yaml.safe_dump(settings))
    assert (
        apx(
            "submit", str(EXAMPLES / "optimizer-scale-checkout.yaml"), "--agent", "optimizer", home=home
        ).returncode
        == 0
    )
    held = apx(
        "submit", str(EXAMPLES / "builder-add-refunds-route.yaml"), "--agent", "builder", "--json", home=home
    )
    assert held.returncode == 3 and json.loads(held.stdout)["status"] == "circuit_open"
    listed = json.loads(apx("breakers", "list", "--json", home=home).stdout)
    assert listed[0]["open"] is True and listed[0]["tenant"] == "acme"
    assert (
        apx("breakers", "reset", "--tenant", "acme", "--env", "dev", "--by", "alice", home=home).returncode
        == 0
    )
    assert (
        apx(
            "submit", str(EXAMPLES / "builder-add-refunds-route.yaml"), "--agent", "builder", home=home
        ).returncode
        == 0
    )


def test_two_processes_submitting_at_once_keep_the_log_and_repo_whole(
    fresh_home: Path, tmp_path: Path
) -> None:
    base = yaml.safe_load((EXAMPLES / "optimizer-scale-checkout.yaml").read_text())
    files = []
    for n in range(6):
        doc = yaml.safe_load(yaml.safe_dump(base))
        doc["spec"]["changes"][0]["resource"]["spec"]["replicas"] = 5 + n
        path = tmp_path / f"i{n}.yaml"
        path.write_text(yaml.safe_dump(doc))
        files.append(path)
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(
            pool.map(
                lambda i: apx("submit", str(files[i]), "--agent", f"agent{i}", "--json", home=fresh_home),
                range(6),
            )
        )
    decisions = [json.loads(r.stdout) for r in results]
    statuses = [d["status"] for d in decisions]
    applied = statuses.count("applied")
    # Each was decided exactly once, one at a time: at most three deploys before the
    # breaker (default 3 per 15m), and an intent that arrived seeing the same head as
    # one applied before it is a conflict, never a silent overwrite.
    assert 1 <= applied <= 3 and set(statuses) <= {"applied", "rejected", "circuit_open"}, statuses
    for d in decisions:
        if d["status"] == "rejected":
            assert d["reasons"][0].startswith("conflict: WorkerPool/checkout: spec.replicas"), d["reasons"]
    commits = git(fresh_home, "rev-list", "dev").stdout.split()
    assert len(commits) == 1 + applied  # the seed plus exactly one commit per applied intent
    assert git(fresh_home, "fsck", "--no-dangling").returncode == 0
    rows = json.loads(apx("intents", "list", "-o", "json", home=fresh_home).stdout)
    assert len(rows) == 6


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    result = subprocess.run(
        [APX, "demo", "--home", str(tmp_path / "demo")], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "✗" not in result.stdout
    home = tmp_path / "demo"
    rows = json.loads(apx("intents", "list", "-o", "json", "--limit", "100", home=home).stdout)
    assert {"applied", "duplicate", "rate_limited", "rejected", "circuit_open", "merged", "rolled_back"} <= {
        row["status"] for row in rows
    }
    # The loop is real: each agent reacted to the other's change, and the last step was held.
    [held] = [row for row in rows if row["status"] == "circuit_open"]
    shown = json.loads(apx("intents", "show", held["id"], "--json", home=home).stdout)
    assert [parent["agent"] for parent in shown["parents"]] == ["builder", "optimizer", "builder"]
    assert "oscillation: builder sets WorkerPool/checkout spec.replicas back" in held["reason"]
    # The Security agent batched its findings into one prod intent, which a human merged.
    [scan] = [row for row in rows if row["agent"] == "security"]
    assert scan["environment"] == "prod" and scan["status"] == "merged"
    fixed = ["NetworkPolicy/edge", "PolicyBundle/default", "Route/payments-v1-refunds"]
    assert scan["targets"].split() == fixed


@pytest.mark.postgres
def test_init_with_apx_database_url_keeps_that_database_without_its_password(
    tmp_path: Path, pg_url: str
) -> None:
    from sqlalchemy.engine import make_url

    home = tmp_path / "home"
    with_password = make_url(pg_url).set(password="s3cret-pw").render_as_string(hide_password=False)
    env = {**os.environ, "APX_HOME": str(home), "APX_DATABASE_URL": with_password}
    made = subprocess.run([APX, "init"], env=env, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    assert "intent log (postgresql+psycopg) postgresql+psycopg://postgres:***@" in " ".join(
        made.stdout.split()
    )
    settings_text = (home / "apx.yaml").read_text()
    assert "s3cret-pw" not in settings_text and "postgresql+psycopg://postgres@" in settings_text

    # Later commands without the variable use the same PostgreSQL log (trust auth: no password needed).
    assert (
        apx(
            "submit", str(EXAMPLES / "optimizer-scale-checkout.yaml"), "--agent", "optimizer", home=home
        ).returncode
        == 0
    )
    assert not (home / "apx.db").exists()
    env["APX_DATABASE_URL"] = pg_url
    listed = subprocess.run([APX, "intents", "list", "-o", "json"], env=env, capture_output=True, text=True)
    assert [row["status"] for row in json.loads(listed.stdout)] == ["applied"]
