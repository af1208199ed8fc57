"""The data plane against real parts: the metrics contract on every store, and the runner on a real repo.

The first part runs the same cases over :class:`InMemoryMetricsStore`, SQLite
and PostgreSQL, so the fake cannot drift from the SQL adapter. The second runs
:class:`DataPlane` against a config repo made by ``apx init`` (real git, signed
commits) and the home's own SQLite database, with a frozen clock that the
loop's ``sleep`` advances, so nothing really waits.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from structlog.testing import capture_logs

from orchestrator.dataplane.metrics import InMemoryMetricsStore, Sample
from orchestrator.dataplane.runner import DataPlane
from orchestrator.dataplane.sql import SqlMetricsStore
from orchestrator.git_repo import GitConfigRepo
from orchestrator.home import init_home
from orchestrator.settings import Settings, load_settings
from orchestrator.testing import FrozenClock

Store = InMemoryMetricsStore | SqlMetricsStore
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
COMMIT = "c" * 40


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def metrics(request: pytest.FixtureRequest) -> Iterator[Store]:
    if request.param == "memory":
        yield InMemoryMetricsStore()
        return
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    with SqlMetricsStore.open(url) as store:
        yield store


def sample(
    seconds: float, scope: str = "pool/checkout", metric: str = "rps", value: float = 1.0, env: str = "dev"
) -> Sample:
    return Sample(T0 + timedelta(seconds=seconds), env, COMMIT, scope, metric, value)


# -- the MetricsStore contract ----------------------------------------------------------


def test_samples_read_back_exactly_in_time_scope_metric_order(metrics: Store) -> None:
    published = [
        sample(1.000001, "route/r-02", "rps", 12.5),
        sample(0, "pool/checkout", "utilisation", 0.375),
        sample(0, "pool/checkout", "error_rate", 0.2),
        sample(1.000001, "pool/checkout", "p95_ms", 81.25),
        sample(0, "route/r-01", "rps", 3.0),
    ]
    metrics.publish(published)

    got = metrics.read(environment="dev", since=T0, until=T0 + timedelta(minutes=1))
    assert got == sorted(published, key=lambda s: (s.at, s.scope, s.metric))
    assert all(s.at.utcoffset() == timedelta(0) for s in got)


def test_the_window_includes_since_and_excludes_until(metrics: Store) -> None:
    metrics.publish([sample(-0.000001), sample(0), sample(59.999999), sample(60)])
    got = metrics.read(environment="dev", since=T0, until=T0 + timedelta(seconds=60))
    assert [s.at for s in got] == [T0, T0 + timedelta(seconds=59.999999)]
    # The same instants written in another offset are the same window.
    plus2 = timezone_plus2(T0)
    assert metrics.read(environment="dev", since=plus2, until=plus2 + timedelta(seconds=60)) == got


def timezone_plus2(at: datetime) -> datetime:
    from datetime import timezone

    return at.astimezone(timezone(timedelta(hours=2)))


def test_reads_filter_by_environment_scope_kind_and_metric(metrics: Store) -> None:
    metrics.publish(
        [
            sample(0, "pool/checkout", "rps", 1),
            sample(0, "pool/checkout", "error_rate", 2),
            sample(0, "pool/batch", "rps", 3),
            sample(0, "route/pool/odd", "rps", 4),  # a route whose name starts like a scope kind
            sample(0, "pool/checkout", "rps", 5, env="prod"),
        ]
    )

    def values(environment: str = "dev", scope: str | None = None, metric: str | None = None) -> list[float]:
        found = metrics.read(
            environment=environment, since=T0, until=T0 + timedelta(seconds=1), scope=scope, metric=metric
        )
        return [s.value for s in found]

    assert values() == [3, 2, 1, 4]
    assert values(scope="pool/checkout") == [2, 1]
    assert values(scope="pool/") == [3, 2, 1]
    assert values(scope="route/") == [4]
    assert values(metric="rps") == [3, 1, 4]
    assert values("prod") == [5]
    assert values("staging") == []
    assert values(scope="pool/check") == []


def test_the_error_rate_is_the_request_weighted_mean_of_the_pools(metrics: Store) -> None:
    metrics.publish(
        [
            sample(0, "pool/a", "rps", 900),
            sample(0, "pool/a", "error_rate", 1.0),
            sample(0, "pool/b", "rps", 100),
            sample(0, "pool/b", "error_rate", 11.0),
            sample(0, "route/x", "error_rate", 99.0),
            sample(1, "pool/a", "rps", 0),
            sample(1, "pool/a", "error_rate", 50.0),  # an idle pool weighs nothing
            sample(0, "pool/a", "error_rate", 80.0, env="prod"),
        ]
    )
    assert metrics.error_rate("dev", T0, T0 + timedelta(minutes=1)) == pytest.approx(2.0)
    assert metrics.error_rate("prod", T0, T0 + timedelta(minutes=1)) == pytest.approx(80.0)
    assert metrics.error_rate("dev", T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)) is None
    assert metrics.error_rate("staging", T0, T0 + timedelta(minutes=1)) is None


def test_a_large_batch_is_stored_whole_and_pruning_keeps_what_is_recent(metrics: Store) -> None:
    # More rows than one insert statement or one pruning batch of the SQL adapter takes.
    old = [sample(i / 1000, "route/r", "rps", i) for i in range(12_001)]
    recent = [sample(3600 + i, "pool/checkout", "rps", i) for i in range(3)]
    metrics.publish([])
    metrics.publish(old + recent)
    day = T0 + timedelta(days=1)
    assert len(metrics.read(environment="dev", since=T0, until=day)) == 12_004

    assert metrics.prune(T0 + timedelta(hours=1)) == 12_001
    assert metrics.read(environment="dev", since=T0, until=day) == recent
    assert metrics.prune(T0 + timedelta(hours=1)) == 0


def test_naive_datetimes_are_refused(metrics: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        metrics.read(environment="dev", since=datetime(2025, 6, 1), until=T0)
    with pytest.raises(ValueError, match="naive"):
        metrics.prune(datetime(2025, 6, 1))


# -- the runner on a real config repo ---------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path) -> Settings:
    init_home(tmp_path / "home")
    return load_settings(tmp_path / "home")


@pytest.fixture
def repo(home: Settings) -> Iterator[GitConfigRepo]:
    with GitConfigRepo(home.repo_path) as repo:
        yield repo


@pytest.fixture
def store(home: Settings) -> Iterator[SqlMetricsStore]:
    with SqlMetricsStore.open(home.database_url) as store:
        yield store


def refs(settings: Settings) -> str:
    """Every ref, HEAD and the worktree's status: what a writer would have to change."""
    repo = str(settings.repo_path)
    return "\n".join(
        subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, check=True).stdout
        for args in (["for-each-ref"], ["rev-parse", "HEAD"], ["status", "--porcelain"])
    )


def scale_dev(repo: GitConfigRepo, replicas: int) -> str:
    head = repo.head("dev")
    assert head is not None
    document = yaml.safe_load(repo.read(head).files["WorkerPool/checkout.yaml"])
    document["spec"].update(replicas=replicas, minReplicas=min(replicas, document["spec"]["minReplicas"]))
    return repo.commit(
        branch="dev",
        parent=head,
        files={"WorkerPool/checkout.yaml": yaml.safe_dump(document, sort_keys=False)},
        message=f"Scale checkout to {replicas}\n",
    )


def test_the_next_tick_runs_a_new_commit_and_its_error_rate_is_published(
    home: Settings, repo: GitConfigRepo, store: SqlMetricsStore, clock: FrozenClock
) -> None:
    plane = DataPlane(repo=repo, metrics=store, clock=clock, environments={"dev": "dev", "prod": "prod"})
    first = plane.tick()
    assert [(r.environment, r.commit) for r in first] == [
        ("dev", repo.head("dev")),
        ("prod", repo.head("prod")),
    ]
    assert all(r.reconciled is not None and len(r.reconciled.routes_added) == 60 for r in first)
    healthy = store.error_rate("dev", T0, T0 + timedelta(seconds=1))
    assert healthy is not None and healthy < 1

    commit = scale_dev(repo, 1)
    assert repo.verify(commit)
    clock.advance(1)
    with capture_logs() as logs:
        second = plane.tick()

    dev, prod = second
    assert dev.commit == commit and dev.reconciled is not None
    assert dev.reconciled.pools_scaled == {"checkout": (4, 1)}
    assert prod.reconciled is None  # prod's branch did not move
    (line,) = [e for e in logs if e["event"] == "dataplane.reconciled"]
    assert (line["environment"], line["commit"], line["pools_scaled"]) == ("dev", commit, {"checkout": "4→1"})
    after = store.error_rate("dev", T0 + timedelta(seconds=1), T0 + timedelta(seconds=2))
    assert after is not None and after > healthy + 5
    assert store.error_rate("prod", T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)) == pytest.approx(
        store.error_rate("prod", T0, T0 + timedelta(seconds=1)), abs=0.05
    )
    samples = store.read(environment="dev", since=T0 + timedelta(seconds=1), until=T0 + timedelta(seconds=2))
    assert {s.commit for s in samples} == {commit}


def test_the_data_plane_never_changes_the_config_repo(
    home: Settings, repo: GitConfigRepo, store: SqlMetricsStore, clock: FrozenClock
) -> None:
    scale_dev(repo, 6)
    before = refs(home)
    plane = DataPlane(repo=repo, metrics=store, clock=clock, environments={"dev": "dev", "prod": "prod"})
    ran = plane.run(interval=timedelta(seconds=1), ticks=5, sleep=clock.advance)
    assert ran == 5
    assert refs(home) == before


def test_run_keeps_a_fixed_schedule_and_stops_when_told(repo: GitConfigRepo, clock: FrozenClock) -> None:
    metrics = InMemoryMetricsStore()
    plane = DataPlane(repo=repo, metrics=metrics, clock=clock, environments={"dev": "dev"})
    seen: list[datetime] = []

    # --for 10s at 2s: ticks at 0, 2, 4, 6 and 8 s; the loop returns without sleeping after the last.
    assert plane.run(interval=timedelta(seconds=2), duration=timedelta(seconds=10), sleep=clock.advance) == 5
    assert clock.now() == T0 + timedelta(seconds=8)
    clock.advance(1)
    assert (
        plane.run(
            interval=timedelta(seconds=1),
            until=lambda: clock.now() >= T0 + timedelta(seconds=12),
            sleep=clock.advance,
            report=lambda reports: seen.append(reports[0].at),
        )
        == 3
    )
    ticks = sorted({s.at for s in metrics.read(environment="dev", since=T0, until=T0 + timedelta(hours=1))})
    assert ticks == [T0 + timedelta(seconds=s) for s in (0, 2, 4, 6, 8, 9, 10, 11)]
    assert seen == ticks[-3:]


def test_a_commit_that_does_not_parse_leaves_the_last_good_one_running(
    repo: GitConfigRepo, clock: FrozenClock
) -> None:
    metrics = InMemoryMetricsStore()
    plane = DataPlane(repo=repo, metrics=metrics, clock=clock, environments={"dev": "dev"})
    good = repo.head("dev")
    plane.tick()
    assert good is not None
    broken = repo.commit(
        branch="dev", parent=good, files={"Route/broken.yaml": "spec: [unclosed\n"}, message="m\n"
    )

    clock.advance(1)
    with capture_logs() as logs:
        (report,) = plane.tick()
        plane.tick()  # reported once, not every tick
    assert report.commit == good and report.reconciled is None
    assert report.problem is not None and report.problem.startswith(
        f"commit {broken[:12]} on 'dev' does not parse"
    )
    assert [e["event"] for e in logs] == ["dataplane.reconcile_failed"]
    assert report.samples == 246

    fixed = repo.commit(branch="dev", parent=broken, files={"Route/broken.yaml": None}, message="m\n")
    (report,) = plane.tick()
    assert (report.commit, report.problem) == (fixed, None)


def test_a_missing_branch_is_reported_and_publishes_nothing(repo: GitConfigRepo, clock: FrozenClock) -> None:
    metrics = InMemoryMetricsStore()
    plane = DataPlane(repo=repo, metrics=metrics, clock=clock, environments={"staging": "staging"})
    (report,) = plane.tick()
    assert (report.commit, report.samples, report.problem) == (None, 0, "branch 'staging' does not exist")
    assert metrics.read(environment="staging", since=T0, until=T0 + timedelta(hours=1)) == []


def test_old_samples_are_pruned_as_the_data_plane_runs(repo: GitConfigRepo, clock: FrozenClock) -> None:
    metrics = InMemoryMetricsStore()
    plane = DataPlane(
        repo=repo, metrics=metrics, clock=clock, environments={"dev": "dev"}, retention=timedelta(minutes=30)
    )
    plane.run(interval=timedelta(minutes=5), ticks=13, sleep=clock.advance)  # one hour
    kept = sorted({s.at for s in metrics.read(environment="dev", since=T0, until=T0 + timedelta(hours=2))})
    assert kept[0] == T0 + timedelta(minutes=30)  # pruned at 60 min: older than 30 min
    assert kept[-1] == T0 + timedelta(hours=1)
