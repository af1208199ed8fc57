"""The composition root: the one place that builds adapters from settings.

The CLI (and later the API server and scheduler) call :func:`build`; nothing
else constructs a store, a repo, a lock or a policy engine. Tests build the
same :class:`~orchestrator.pipeline.Orchestrator` from fakes instead.
"""

from __future__ import annotations

import getpass
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator import logs
from orchestrator.clock import Clock, SystemClock
from orchestrator.errors import HomeError
from orchestrator.reactions import Reactions
from orchestrator.records import PolicyChange
from orchestrator.settings import Settings, load_settings
from validators.base import Validator
from validators.policy import Bundle, PolicyEngine, PolicyLoadError
from validators.schema import ReferenceValidator, SchemaValidator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

    from audit.log import AuditLog
    from orchestrator.canary import CanaryWatcher
    from orchestrator.config_remote import RemoteConfigRepo
    from orchestrator.dataplane.metrics import MetricsStore
    from orchestrator.git_repo import GitConfigRepo
    from orchestrator.notify.events import Notifier
    from orchestrator.notify.sql_outbox import SqlOutbox
    from orchestrator.pipeline import Orchestrator
    from orchestrator.ports import EnvironmentLock, PrProvider
    from orchestrator.review import ReviewFlow
    from orchestrator.service_metrics import ServiceMetrics
    from orchestrator.sql_store import SqlIntentStore
    from orchestrator.telemetry import Telemetry

log = logs.get_logger("apx.bootstrap")


def default_validators(secret_scan: Validator) -> list[Validator]:
    """The validator chain, in the order checks appear on a decision.

    The secret scan also screens every intent as it arrives (before it is
    recorded); running it again here covers what a merge brings in.
    """
    return [SchemaValidator(), ReferenceValidator(), secret_scan]


class App:
    """An installation, wired. Parts are built on first use, so ``apx intents list``
    does not pay for langgraph, regopy and detect-secrets (seconds of imports)."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock,
        policy_bundle: Path | None = None,
        notify: Callable[[str], None] | None = None,
        span_exporter: SpanExporter | None = None,
    ) -> None:
        """``span_exporter``: where spans go instead of ``telemetry.exporter`` (tests)."""
        self.settings = settings
        self.clock = clock
        self._policy_bundle = policy_bundle
        self._span_exporter = span_exporter
        self._notify = notify
        #: Things the operator must know (e.g. a refused policy bundle).
        self.notices: list[str] = []
        self._resources = ExitStack()
        self._reactions = Reactions(self)

    @cached_property
    def store(self) -> SqlIntentStore:
        from orchestrator.sql_store import SqlIntentStore

        return SqlIntentStore.open(self.settings.database_url)

    @cached_property
    def audit(self) -> AuditLog:
        from audit.log import AuditLog

        return AuditLog(
            self.store.audit,
            keys=self.settings.keys_dir,
            checkpoint_file=self.settings.checkpoint_file,
            now=self.clock.now,
            every=self.settings.audit.checkpoint_every,
            interval=self.settings.audit.checkpoint_interval,
        )

    @cached_property
    def repo(self) -> GitConfigRepo | RemoteConfigRepo:
        """The home's config repo; with ``config_repo.remote``, kept at the shared remote's state."""
        from orchestrator.git_repo import GitConfigRepo

        local = GitConfigRepo(self.settings.repo_path)
        shared = self.settings.config_repo
        if shared.remote is None:
            return local
        from orchestrator.config_remote import RemoteConfigRepo

        return RemoteConfigRepo(local, url=shared.remote, timeout=shared.timeout.total_seconds())

    def _environment_lock(self) -> EnvironmentLock:
        """PostgreSQL's advisory lock (every host sharing the database), else a file lock (this
        host); with a config remote, each environment's branch is synced once it is acquired."""
        from orchestrator.locks import FileEnvironmentLock

        wait = self.settings.admission.lock_timeout
        lock: EnvironmentLock = self.store.environment_lock(timeout=wait) or FileEnvironmentLock(
            self.settings.home / "locks", timeout=wait
        )
        if self.settings.config_repo.remote is None:
            return lock
        from orchestrator.config_remote import RemoteConfigRepo, SyncingLock

        repo = self.repo
        assert isinstance(repo, RemoteConfigRepo)
        return SyncingLock(lock, repo, branch_of=self.settings.branch_of)

    @cached_property
    def policy(self) -> PolicyEngine:
        if self._policy_bundle is not None:
            return policy_engine(_load(self._policy_bundle), self.settings)
        engine, notices = _policy_in_force(self.settings, self.store, self.clock)
        for notice in notices:
            self.notices.append(notice)
            if self._notify:
                self._notify(notice)
        return engine

    @cached_property
    def orchestrator(self) -> Orchestrator:
        from orchestrator.pipeline import Orchestrator
        from validators.secrets import SecretScanValidator

        secret_scan = SecretScanValidator()
        return Orchestrator(
            settings=self.settings,
            store=self.store,
            repo=self.repo,
            lock=self._environment_lock(),
            clock=self.clock,
            validators=default_validators(secret_scan),
            policy=self.policy,
            secret_scan=secret_scan,
            observers=[self._reactions],
            telemetry=self.telemetry,
            metrics=self.service_metrics,
        )

    @cached_property
    def telemetry(self) -> Telemetry:
        from orchestrator.telemetry import Telemetry

        return Telemetry.from_settings(self.settings.telemetry, exporter=self._span_exporter)

    @cached_property
    def service_metrics(self) -> ServiceMetrics:
        """What ``GET /metrics`` serves: this process's counters and the database's gauges."""
        from orchestrator.service_metrics import ServiceMetrics

        return ServiceMetrics(self)

    @cached_property
    def provider(self) -> PrProvider:
        from orchestrator.pr_providers import build_provider

        return build_provider(self.settings.pr_provider, repo_path=self.settings.repo_path)

    @cached_property
    def reviews(self) -> ReviewFlow:
        from orchestrator.review import ReviewFlow, checkpointer_for

        checkpointer = self._resources.enter_context(
            checkpointer_for(self.settings.database_url, self.settings.home)
        )
        return ReviewFlow(
            orchestrator=self.orchestrator,
            repo=self.repo,
            store=self.store,
            provider=self.provider,
            checkpointer=checkpointer,
            required=lambda env: max(1, self.settings.environments[env].approvals),
            now=self.clock.now,
            agents=self.store.agents,
            on_change=self._reactions.pr_changed,
        )

    @cached_property
    def metrics(self) -> MetricsStore:
        from orchestrator.dataplane.sql import SqlMetricsStore

        return self._resources.enter_context(SqlMetricsStore.open(self.settings.database_url))

    @cached_property
    def canary(self) -> CanaryWatcher:
        from orchestrator.canary import CanaryWatcher

        return CanaryWatcher(
            settings=self.settings.canary,
            store=self.store,
            metrics=self.metrics,
            orchestrator=self.orchestrator,
            now=self.clock.now,
        )

    @cached_property
    def notifier(self) -> Notifier:
        from orchestrator.notify.notifier import OutboxNotifier

        return OutboxNotifier.from_settings(self.settings.notifications, self.outbox)

    @cached_property
    def outbox(self) -> SqlOutbox:
        from orchestrator.notify.sql_outbox import SqlOutbox

        self.store  # noqa: B018  (the store migrates the database first)
        return self._resources.enter_context(
            SqlOutbox.open(self.settings.database_url, migrate=False, clock=self.clock)
        )

    def deliver_notifications(self) -> int:
        """Send what is due in the outbox now (``apx serve`` does this on a timer)."""
        from orchestrator.notify.delivery import Deliverer, http_client

        notifications = self.settings.notifications
        with http_client(notifications) as client:
            return Deliverer.from_settings(
                notifications, self.outbox, client, self.clock, telemetry=self.telemetry
            ).deliver_due()

    def close(self) -> None:
        """Release what was opened (the review checkpointer's connection, the database pool)."""
        self._resources.close()
        if "store" in self.__dict__:
            self.store.close()
        if "telemetry" in self.__dict__:
            self.telemetry.shutdown()


def build(
    home: Path | None = None,
    *,
    settings: Settings | None = None,
    clock: Clock | None = None,
    policy_bundle: Path | None = None,
    notify: Callable[[str], None] | None = None,
    span_exporter: SpanExporter | None = None,
) -> App:
    """Wire an installation from its home (``APX_HOME``/``./.apx`` by default).

    ``policy_bundle`` overrides ``policy.bundle`` (``apx intents replay --policy DIR``);
    such a bundle is used as is and not recorded as the bundle in force.
    """
    settings = settings or load_settings(home)
    if not settings.repo_path.exists():
        raise HomeError(f"{settings.home} is not an APX home (no config-repo/); run `apx init` first")
    logs.configure(
        level=settings.log.level, fmt=settings.log.format, file=settings.home / "logs" / "apx.jsonl"
    )
    return App(
        settings,
        clock=clock or SystemClock(),
        policy_bundle=policy_bundle,
        notify=notify,
        span_exporter=span_exporter,
    )


def policy_engine(bundle: Bundle, settings: Settings) -> PolicyEngine:
    """regopy in-process by default; the OPA server when ``policy.opa_url`` is set."""
    budget_ms = settings.policy.budget.total_seconds() * 1000
    if settings.policy.opa_url:
        from validators.opa_server import OpaServerEngine

        return OpaServerEngine(bundle, settings.policy.opa_url, timeout_s=budget_ms / 1000)
    from validators.rego import RegoPyEngine

    cache_dir = settings.policy.cache_dir or settings.home / "cache" / "policy"
    return RegoPyEngine(bundle, cache_dir=cache_dir, budget_ms=budget_ms)


def _load(path: Path | None) -> Bundle:
    from constraints.bundle import load_bundle

    return load_bundle(path)


def _policy_in_force(
    settings: Settings, store: SqlIntentStore, clock: Clock
) -> tuple[PolicyEngine, list[str]]:
    """The configured bundle; if it does not load or compile, the last good one stays in force.

    Every bundle that comes into force is copied to ``<home>/policy/<sha256>/``
    (so it can be kept in force later even if its source directory changes)
    and recorded in the policy history with who brought it in.
    """
    configured = settings.policy.bundle
    try:
        bundle = _load(configured)
        engine = policy_engine(bundle, settings)
    except PolicyLoadError as exc:
        history = store.policy_history()
        kept = settings.home / "policy" / history[-1].sha256 if history else None
        if kept is None or not kept.is_dir():
            raise
        engine = policy_engine(_load(kept), settings)
        notice = (
            f"policy bundle {configured or 'shipped'} was refused ({exc.message}); "
            f"{engine.bundle.label} stays in force"
        )
        log.error("policy.refused", reason=exc.message, kept=engine.bundle.label)
        return engine, [notice]
    info = engine.bundle
    _keep_copy(Path(info.path), settings.home / "policy" / info.sha256)
    change = PolicyChange(
        name=info.name,
        version=info.version,
        sha256=info.sha256,
        source=str(configured) if configured else "shipped",
        by=_who(),
        at=clock.now(),
    )
    if store.record_policy(change):
        log.info("policy.changed", policy_version=info.label, source=change.source, by=change.by)
    return engine, []


def _keep_copy(source: Path, snapshot: Path) -> None:
    """Copy a bundle to ``snapshot`` once, atomically.

    Processes that start together (several ``apx`` commands, the API's workers) race
    here: each copies into a staging directory beside it and renames that into place;
    the first rename wins and the others drop their copy.
    """
    if snapshot.is_dir():
        return
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{snapshot.name}-", dir=snapshot.parent))
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        try:
            os.rename(staging, snapshot)
        except OSError:
            if not snapshot.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown"
