"""A process killed (``kill -9``) between its git commit and recording its decision loses nothing
and applies nothing twice.

The crash is real and lands exactly in that window: git's ``reference-transaction``
hook runs right after ``git update-ref`` has moved the branch, and this hook kills
the apx process that ran it. The next ``apx drain`` must find the commit (or the PR
branch) by its intent id and record it, instead of committing the change again.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from test_cli import APX, EXAMPLES, apx, git

#: After a ref moved ("committed"), kill the apx process that ran `git update-ref`: the
#: hook's parent is git, and git's parent is apx.
HOOK = """#!/bin/sh
[ "$1" = committed ] || exit 0
[ -n "$APX_TEST_CRASH_AFTER_REF" ] || exit 0
git_pid=$PPID
apx_pid=$(awk '{print $4}' /proc/$git_pid/stat)
kill -9 "$apx_pid"
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    assert apx("init", home=home).returncode == 0
    hook = home / "config-repo" / ".git" / "hooks" / "reference-transaction"
    hook.write_text(HOOK)
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    return home


def crash_submitting(home: Path, example: str, agent: str) -> None:
    env = {**os.environ, "APX_HOME": str(home), "APX_TEST_CRASH_AFTER_REF": "1"}
    env.pop("APX_DATABASE_URL", None)
    killed = subprocess.run(
        [APX, "submit", str(EXAMPLES / example), "--agent", agent], env=env, capture_output=True, timeout=120
    )
    assert killed.returncode == -9, killed.stderr  # killed in the window, not a clean exit


def only_intent(home: Path) -> dict[str, str]:
    [row] = json.loads(apx("intents", "list", "-o", "json", home=home).stdout)
    return row


def test_a_dev_apply_cut_short_by_kill_9_is_recorded_once_on_the_next_drain(home: Path) -> None:
    crash_submitting(home, "optimizer-scale-checkout.yaml", "optimizer")
    before = only_intent(home)
    assert before["status"] == "queued"  # acknowledged, not yet decided
    commits = git(home, "log", "--format=%H", "--grep", f"Intent-Id: {before['id']}", "dev").stdout.split()
    assert len(commits) == 1  # ...but its commit is on dev already

    drained = apx("drain", home=home)

    assert drained.returncode == 0, drained.stderr
    shown = json.loads(apx("intents", "show", before["id"], "--json", home=home).stdout)
    assert shown["status"] == "applied"
    assert shown["decision"]["commit"] == commits[0]
    again = git(home, "log", "--format=%H", "--grep", f"Intent-Id: {before['id']}", "dev").stdout.split()
    assert again == commits  # no second commit for the same intent
    assert apx("audit", "verify", home=home).returncode == 0


def test_a_prod_pr_cut_short_by_kill_9_is_opened_once_on_the_next_drain(home: Path) -> None:
    crash_submitting(home, "security-tighten-edge.yaml", "security")
    before = only_intent(home)
    assert before["status"] == "queued"
    branch = f"apx/{before['id']}"
    head = git(home, "rev-parse", branch).stdout.strip()
    prod = git(home, "rev-parse", "prod").stdout.strip()

    drained = apx("drain", home=home)

    assert drained.returncode == 0, drained.stderr
    shown = json.loads(apx("intents", "show", before["id"], "--json", home=home).stdout)
    assert shown["status"] == "pr_open"
    assert shown["decision"]["pr"]["head"] == head
    assert git(home, "rev-parse", branch).stdout.strip() == head  # the same branch, not a new commit
    assert git(home, "rev-parse", "prod").stdout.strip() == prod  # prod untouched
    assert git(home, "branch", "--list", "apx/*").stdout.split() == [branch]


def test_a_merge_cut_short_by_kill_9_is_recorded_once_when_the_review_resumes(home: Path) -> None:
    assert (
        apx(
            "submit", str(EXAMPLES / "security-tighten-edge.yaml"), "--agent", "security", home=home
        ).returncode
        == 0
    )
    intent_id = only_intent(home)["id"]
    env = {**os.environ, "APX_HOME": str(home), "APX_TEST_CRASH_AFTER_REF": "1"}
    env.pop("APX_DATABASE_URL", None)
    killed = subprocess.run([APX, "prs", "approve", intent_id, "--by", "alice"], env=env, capture_output=True)
    assert killed.returncode == -9
    merges = git(home, "log", "--format=%H", "--first-parent", "--grep", f"Intent-Id: {intent_id}", "prod")
    assert len(merges.stdout.split()) == 1  # the merge commit landed before the crash

    resumed = apx("prs", "approve", intent_id, "--by", "alice", home=home)

    assert resumed.returncode == 0, resumed.stderr
    assert "Deserializing" not in resumed.stderr  # the review's checkpoint holds ids, not our objects
    shown = json.loads(apx("intents", "show", intent_id, "--json", home=home).stdout)
    assert shown["status"] == "merged" and shown["decision"]["commit"] == merges.stdout.split()[0]
    again = git(home, "log", "--format=%H", "--first-parent", "--grep", f"Intent-Id: {intent_id}", "prod")
    assert again.stdout == merges.stdout  # merged once
    assert apx("audit", "verify", home=home).returncode == 0
