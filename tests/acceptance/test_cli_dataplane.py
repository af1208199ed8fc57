"""``apx dataplane run`` and ``apx dataplane metrics``, driven as an operator drives them."""

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


def test_the_data_plane_runs_both_environments_and_its_metrics_read_back(home: Path) -> None:
    refs_before = git(home, "for-each-ref").stdout

    ran = apx("dataplane", "run", "--ticks", "3", "--interval", "0.1s", home=home)

    assert ran.returncode == 0, ran.stderr
    dev, prod = git(home, "rev-parse", "dev").stdout.strip(), git(home, "rev-parse", "prod").stdout.strip()
    assert f"dev: now running {dev[:12]}" in ran.stdout
    assert f"prod: now running {prod[:12]}" in ran.stdout
    assert "data plane stopped after 3 ticks (dev, prod)" in ran.stdout
    assert git(home, "for-each-ref").stdout == refs_before  # it only reads the config repo

    shown = apx("dataplane", "metrics", "-o", "json", home=home)
    assert shown.returncode == 0, shown.stderr
    pools = json.loads(shown.stdout)
    assert [(p["environment"], p["pool"]) for p in pools] == [("dev", "checkout"), ("prod", "checkout")]
    for pool, commit in zip(pools, (dev, prod), strict=True):
        assert (pool["commit"], pool["ticks"], pool["replicas"]) == (commit, 3, 4)
        assert pool["rps"] > 0 and 0 < pool["utilisation"] < 1
        assert 0 < pool["error_rate"] < 1  # a healthy seed: well under one percent of 5xx
        assert pool["p95_ms"] > 0

    table = apx("dataplane", "metrics", "--env", "dev", home=home)
    assert table.returncode == 0, table.stderr
    assert "checkout" in table.stdout and dev[:12] in table.stdout and "prod" not in table.stdout


def test_bad_options_are_one_line_naming_the_option(home: Path) -> None:
    for args, option in (
        (("dataplane", "run", "--env", "qa", "--ticks", "1"), "--env 'qa'"),
        (("dataplane", "run", "--interval", "0s", "--ticks", "1"), "--interval '0s'"),
        (("dataplane", "run", "--for", "soon"), "--for 'soon'"),
        (("dataplane", "metrics", "--since", "yesterday-ish"), "--since 'yesterday-ish'"),
    ):
        result = apx(*args, home=home)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and option in result.stderr, result.stderr


def test_metrics_before_any_run_say_so(home: Path) -> None:
    shown = apx("dataplane", "metrics", home=home)
    assert shown.returncode == 0
    assert "no data-plane metrics since 5m; is `apx dataplane run` running?" in shown.stdout
    assert json.loads(apx("dataplane", "metrics", "-o", "json", home=home).stdout) == []
