"""Several hosts sharing one config remote (docs/how-to/run-on-several-hosts.md).

Each "host" is a home of its own (its own clone, signing key and allowed_signers);
they share a bare git repository in ``tmp_path`` as ``config_repo.remote`` and, for
the cases with two hosts, one PostgreSQL database. Assertions read the remote with
the git CLI, as the data plane or a human would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.bootstrap import App, build, default_validators
from orchestrator.config_remote import SyncingLock
from orchestrator.decision import Decision, Status
from orchestrator.errors import BadInput, RepoError
from orchestrator.home import init_home
from orchestrator.intent import Intent
from orchestrator.locks import FileEnvironmentLock
from orchestrator.pipeline import Orchestrator
from orchestrator.seed import seed_files
from orchestrator.settings import load_settings
from orchestrator.testing import FrozenClock
from validators.secrets import SecretScanValidator

SEED = {path: yaml.safe_load(text) for path, text in seed_files().items()}
ROUTES = sorted(path for path in SEED if path.startswith("Route/"))


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # The repositories' own config must be enough: ignore whatever this machine has.
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    # Many deploys in a frozen instant: these tests are about the repo, not about throttling.
    monkeypatch.setenv("APX_ADMISSION__RATE_LIMIT__DEPLOYS", "1000")
    monkeypatch.setenv("APX_ADMISSION__BREAKER__MAX_DEPLOYS", "1000")
    monkeypatch.delenv("APX_DATABASE_URL", raising=False)


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    path = tmp_path / "config.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(path)], check=True)
    return path


def git(where: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(where), *args], check=True, capture_output=True, text=True).stdout


def on_remote(remote: Path, branch: str) -> list[tuple[str, str]]:
    """(commit, Intent-Id trailer) of every first-parent commit of ``branch``, oldest first."""
    out = git(
        remote,
        "log",
        "--first-parent",
        "--reverse",
        "--format=%H %(trailers:key=Intent-Id,valueonly)",
        branch,
    )
    return [(fields[0], [*fields, ""][1]) for fields in map(str.split, out.splitlines()) if fields]


@pytest.fixture
def host(
    tmp_path: Path, remote: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., App]]:
    """``host(name, database_url=None)``: ``apx init`` a home against the remote and wire it."""
    apps: list[App] = []

    def make(name: str, database_url: str | None = None) -> App:
        home = tmp_path / name
        with monkeypatch.context() as env:
            env.setenv("APX_CONFIG_REPO__REMOTE", str(remote))
            if database_url:
                env.setenv("APX_DATABASE_URL", database_url)
            init_home(home)
        app = build(home, settings=load_settings(home), clock=clock)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


def route_change(path: str, weight: int) -> tuple[str, dict[str, Any]]:
    document = yaml.safe_load(yaml.safe_dump(SEED[path]))
    document["spec"]["canary"] = {"weight": weight}
    return ("update", document)


def intent(*changes: tuple[str, dict[str, Any]]) -> Intent:
    return Intent.of(*changes, tenant="acme", environment="dev", rationale="canary step")


def trust_each_other(*apps: App) -> None:
    """What the how-to asks once per host: every host's commit key in every allowed_signers,
    and one audit checkpoint key for the installation (the first home's)."""
    lines = "".join((app.settings.home / "allowed_signers").read_text() for app in apps)
    first = apps[0].settings.keys_dir
    for app in apps:
        (app.settings.home / "allowed_signers").write_text(lines)
    for app in apps[1:]:
        for name in ("audit_ed25519", "audit_ed25519.pub"):
            shutil.copy(first / name, app.settings.keys_dir / name)


# -- apx init ----------------------------------------------------------------------


def test_the_first_home_seeds_an_empty_remote_and_the_next_clones_it(
    host: Callable[..., App], remote: Path
) -> None:
    first = host("first")
    seeded = {branch: git(remote, "rev-parse", branch).strip() for branch in ("dev", "prod")}
    assert seeded == {b: first.repo.head(b) for b in seeded}

    second = host("second")

    assert {b: second.repo.head(b) for b in seeded} == seeded
    assert "config_repo:\n  remote: " in (second.settings.home / "apx.yaml").read_text()
    assert second.settings.config_repo.remote == str(remote)
    # The clone is configured to sign with the second home's own key.
    key = git(second.settings.repo_path, "config", "user.signingkey").strip()
    assert key.startswith(str(second.settings.keys_dir.resolve()))


def test_init_refuses_a_remote_holding_only_some_environment_branches(
    host: Callable[..., App], remote: Path
) -> None:
    host("first")
    git(remote, "branch", "-D", "prod")
    with pytest.raises(BadInput, match=r"has branch\(es\) dev but not prod"):
        host("second")


@pytest.mark.parametrize(
    ("remote", "why"),
    [("https://bot:ghp_secret123@example.com/acme/config.git", "credentials"), ("config.git", "relative")],
)
def test_a_remote_with_credentials_or_a_relative_path_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, remote: str, why: str
) -> None:
    monkeypatch.setenv("APX_CONFIG_REPO__REMOTE", remote)
    with pytest.raises(BadInput, match=f"config_repo.remote.*{why}"):
        load_settings(tmp_path)


# -- one host: sync, push, races ----------------------------------------------------


def test_a_pr_branch_and_its_merge_are_pushed(host: Callable[..., App], remote: Path) -> None:
    app = host("a")
    opened = app.orchestrator.submit(
        Intent.of(route_change(ROUTES[1], 5), tenant="acme", environment="prod", rationale="canary"),
        agent="optimizer",
    )
    assert opened.status is Status.PR_OPEN and opened.pr is not None
    assert git(remote, "rev-parse", opened.pr.branch).strip() == opened.commit

    outcome = app.reviews.approve(opened.intent_id, by="alice")

    assert outcome.result == "merged"
    merged = outcome.pr.merge_commit
    assert git(remote, "rev-parse", "prod").strip() == merged
    assert git(remote, "rev-parse", f"{merged}^2").strip() == opened.commit


class ForeignPushAfterSync:
    """An environment lock under which, once synced, someone outside apx pushes to the
    remote's branch once: the race the remote's compare-and-swap must catch."""

    def __init__(self, lock: SyncingLock, push: Callable[[], None]) -> None:
        self._lock = lock
        self._push: Callable[[], None] | None = push

    @contextmanager
    def hold(self, environment: str) -> Iterator[None]:
        with self._lock.hold(environment):
            if self._push is not None:
                self._push()
                self._push = None
            yield


def test_a_push_that_loses_a_race_re_plans_on_the_remote_tip_and_loses_nothing(
    host: Callable[..., App], remote: Path, tmp_path: Path
) -> None:
    app = host("a")
    outsider = tmp_path / "outsider"
    git(tmp_path, "clone", "--quiet", "--branch", "dev", str(remote), str(outsider))

    def push() -> None:
        (outsider / "README.md").write_text("pushed by hand\n")
        git(outsider, "add", "README.md")
        git(
            outsider,
            "-c",
            "user.name=ops",
            "-c",
            "user.email=ops@x",
            "commit",
            "--quiet",
            "--no-gpg-sign",
            "-m",
            "hand",
        )
        git(outsider, "push", "--quiet", "origin", "dev")

    from orchestrator.config_remote import RemoteConfigRepo

    assert isinstance(app.repo, RemoteConfigRepo)
    lock = SyncingLock(
        FileEnvironmentLock(app.settings.home / "locks", timeout=app.settings.admission.lock_timeout),
        app.repo,
        branch_of=app.settings.branch_of,
    )
    scan = SecretScanValidator()
    orchestrator = Orchestrator(
        settings=app.settings,
        store=app.store,
        repo=app.repo,
        lock=ForeignPushAfterSync(lock, push),
        clock=app.clock,
        validators=default_validators(scan),
        policy=app.policy,
        secret_scan=scan,
    )

    decision = orchestrator.submit(intent(route_change(ROUTES[2], 20)), agent="optimizer")

    assert decision.status is Status.APPLIED, decision.reasons
    history = on_remote(remote, "dev")
    hand = git(outsider, "rev-parse", "HEAD").strip()
    assert [c for c, _ in history[-2:]] == [hand, decision.commit]  # on top of the hand commit
    assert app.repo.head("dev") == decision.commit
    assert "README.md" in app.repo.read(decision.commit).files


def test_a_commit_never_pushed_is_not_applied_and_the_decision_starts_from_the_remote(
    host: Callable[..., App], remote: Path
) -> None:
    app = host("a")
    queued = app.orchestrator.submit(intent(route_change(ROUTES[3], 30)), agent="optimizer", wait=False)
    assert queued.status is Status.QUEUED
    # A commit for the intent made in this clone only (as a host with no remote configured
    # yet would have): the remote never saw it.
    local = app.repo.local  # type: ignore[union-attr]
    seed = local.head("dev")
    stray = local.commit(
        branch="dev",
        parent=seed,
        files={"x.yaml": "x: 1\n"},
        message=f"stray\n\nIntent-Id: {queued.intent_id}\n",
    )

    [decision] = app.orchestrator.drain("dev")

    assert decision.status is Status.APPLIED and decision.commit != stray
    assert on_remote(remote, "dev") == [(seed, ""), (decision.commit, queued.intent_id)]
    assert app.repo.head("dev") == decision.commit
    assert "x.yaml" not in app.repo.read("dev").files


def test_an_unreachable_remote_fails_the_submit_and_records_nothing(
    host: Callable[..., App], remote: Path, tmp_path: Path
) -> None:
    app = host("a")
    remote.rename(tmp_path / "gone.git")

    with pytest.raises(RepoError, match="could not fetch from the config remote"):
        app.orchestrator.submit(intent(route_change(ROUTES[4], 40)), agent="optimizer")

    assert app.store.pending(environment="dev") == []


# -- two hosts, one database ----------------------------------------------------------


@pytest.mark.postgres
def test_a_commit_pushed_before_a_crash_is_recorded_by_the_other_host(
    host: Callable[..., App], remote: Path, pg_url: str
) -> None:
    a, b = host("a", pg_url), host("b", pg_url)
    queued = a.orchestrator.submit(intent(route_change(ROUTES[5], 50)), agent="optimizer", wait=False)
    # Host a pushes the intent's commit, then dies before recording the decision.
    pushed = a.repo.commit(
        branch="dev",
        parent=a.repo.head("dev") or "",
        files={ROUTES[5]: yaml.safe_dump(route_change(ROUTES[5], 50)[1])},
        message=f"canary step\n\nIntent-Id: {queued.intent_id}\n",
    )

    [decision] = b.orchestrator.drain("dev")

    assert decision.status is Status.APPLIED and decision.commit == pushed
    assert [i for _, i in on_remote(remote, "dev")].count(queued.intent_id) == 1


@pytest.mark.postgres
def test_two_hosts_submitting_at_once_apply_every_intent_exactly_once_signed(
    host: Callable[..., App], remote: Path, pg_url: str
) -> None:
    hosts = [host("a", pg_url), host("b", pg_url)]
    trust_each_other(*hosts)
    threads_per_host, each = 3, 2
    start = threading.Barrier(len(hosts) * threads_per_host)
    decisions: list[Decision] = []
    errors: list[BaseException] = []

    def submitter(app: App, n: int) -> None:
        try:
            start.wait(timeout=60)
            for k in range(each):
                path = ROUTES[(n * each + k) % len(ROUTES)]
                decisions.append(
                    app.orchestrator.submit(intent(route_change(path, 1 + n)), agent=f"agent-{n}")
                )
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    workers = [
        threading.Thread(target=submitter, args=(app, h * threads_per_host + t))
        for h, app in enumerate(hosts)
        for t in range(threads_per_host)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)

    assert not errors, errors
    assert Counter(d.status for d in decisions) == {Status.APPLIED: len(workers) * each}
    history = on_remote(remote, "dev")
    landed = Counter(intent_id for _, intent_id in history if intent_id)
    assert landed == Counter({d.intent_id: 1 for d in decisions})  # every one exactly once
    assert {d.commit for d in decisions} == {commit for commit, i in history if i}
    # A linear history: each decision was made on the head the previous one left.
    assert sorted(d.revision for d in decisions) == sorted(c for c, _ in history[:-1])
    final = yaml.safe_load(git(remote, "show", f"dev:{ROUTES[0]}"))
    assert final["spec"]["canary"]["weight"] == 1
    # Both hosts sign an audit checkpoint (one key for the installation), and each verifies both.
    assert hosts[0].audit.checkpoint(force=True) is not None
    later = hosts[0].orchestrator.submit(intent(route_change(ROUTES[-1], 90)), agent="late")
    # Host b reads the commit host a just made without waiting for its own next sync.
    assert later.commit is not None and hosts[1].repo.head("dev") != later.commit
    assert "weight: 90" in hosts[1].repo.read(later.commit).files[ROUTES[-1]]
    # A prod PR opened on one host is approved and merged on the other.
    pr = hosts[0].orchestrator.submit(
        Intent.of(route_change(ROUTES[-2], 5), tenant="acme", environment="prod", rationale="canary"),
        agent="late",
    )
    assert pr.status is Status.PR_OPEN
    outcome = hosts[1].reviews.approve(pr.intent_id, by="alice")
    assert outcome.result == "merged"
    assert git(remote, "rev-parse", "prod^2").strip() == pr.commit
    assert hosts[1].audit.checkpoint(force=True) is not None
    for app in hosts:
        clone = app.settings.repo_path
        git(clone, "fetch", "--quiet", str(remote), "dev")
        git(clone, "fetch", "--quiet", str(remote), "prod")
        for commit, _ in [*on_remote(remote, "dev")[1:], *on_remote(remote, "prod")[1:]]:
            git(clone, "verify-commit", commit)  # raises unless signed by a host both trust
        report = app.audit.verify()
        assert report.ok, report.finding
        assert report.checkpoints == 2
