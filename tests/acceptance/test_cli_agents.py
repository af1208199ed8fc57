"""``apx agents run``, driven as an operator drives it, on a home made by ``apx init``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import apx, git


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    made = apx("init", home=path)
    assert made.returncode == 0, made.stderr
    return path


def test_security_on_a_fresh_home_has_nothing_to_propose(home: Path) -> None:
    ran = apx("agents", "run", "security", "--json", home=home)

    assert ran.returncode == 0, ran.stderr
    run = json.loads(ran.stdout)
    assert run["agent"] == "security" and run["environment"] == "dev" and run["tenant"] == "acme"
    assert run["status"] == "nothing_to_propose"
    assert "no findings" in run["reason"]
    assert run["decision"] is None


def test_security_fixes_what_the_builder_left_open_and_names_it_as_the_cause(home: Path) -> None:
    built = apx(
        "agents",
        "run",
        "builder",
        "--request",
        "expose /v2/refunds on payments-api without auth, 5% canary",
        home=home,
    )
    assert built.returncode == 0, built.stderr
    assert "proposed: expose /v2/refunds on payments-api as Route/payments-v2-refunds" in built.stdout
    assert " applied " in built.stdout
    builder_intent = next(line.split()[0] for line in built.stdout.splitlines() if " applied " in line)

    ran = apx("agents", "run", "security", "--json", home=home)

    assert ran.returncode == 0, ran.stderr
    run = json.loads(ran.stdout)
    assert run["status"] == "applied"
    assert run["caused_by"] == builder_intent
    assert run["decision"]["agent"] == "security"
    assert "auth required (payments-v2-refunds)" in run["proposal"]
    route = git(home, "show", "dev:Route/payments-v2-refunds.yaml").stdout
    assert "auth: required" in route
    message = git(home, "log", "-1", "--format=%B", "dev").stdout
    assert f"Intent-Id: {run['decision']['intent_id']}" in message


def test_the_optimizer_without_metrics_says_it_is_waiting_for_samples(home: Path) -> None:
    ran = apx("agents", "run", "optimizer", home=home)
    assert ran.returncode == 0, ran.stderr
    assert (
        "nothing to propose: WorkerPool/checkout: only 0 of the 300 samples a 5m window needs" in ran.stdout
    )


def test_bad_usage_is_one_line_and_exit_2(home: Path) -> None:
    for args, says in (
        (("agents", "run", "builder"), "--request"),
        (("agents", "run", "security", "--env", "qa"), "environment 'qa' is not configured"),
    ):
        result = apx(*args, home=home)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.count("\n") == 1 and says in result.stderr, result.stderr
    unknown = apx("agents", "run", "auditor", home=home)
    assert unknown.returncode == 2 and "auditor" in unknown.stderr
