"""The composition root: the one place that builds adapters from settings.

The CLI (and later the API server and scheduler) call :func:`build`; nothing
else constructs a store, a repo or a lock. Tests build the same
:class:`~orchestrator.pipeline.Orchestrator` from fakes instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator import logs
from orchestrator.clock import Clock, SystemClock
from orchestrator.errors import HomeError
from orchestrator.git_repo import GitConfigRepo
from orchestrator.locks import FileEnvironmentLock
from orchestrator.pipeline import Orchestrator
from orchestrator.settings import Settings, load_settings
from orchestrator.sql_store import SqlIntentStore
from validators.base import Validator
from validators.schema import ReferenceValidator, SchemaValidator


def default_validators() -> list[Validator]:
    """The validator chain, in the order checks appear on a decision."""
    return [SchemaValidator(), ReferenceValidator()]


@dataclass(frozen=True)
class App:
    settings: Settings
    store: SqlIntentStore
    repo: GitConfigRepo
    orchestrator: Orchestrator


def build(home: Path | None = None, *, settings: Settings | None = None, clock: Clock | None = None) -> App:
    """Wire an installation from its home (``APX_HOME``/``./.apx`` by default)."""
    settings = settings or load_settings(home)
    if not settings.repo_path.exists():
        raise HomeError(f"{settings.home} is not an APX home (no config-repo/); run `apx init` first")
    logs.configure(
        level=settings.log.level, fmt=settings.log.format, file=settings.home / "logs" / "apx.jsonl"
    )
    store = SqlIntentStore.open(settings.database_url)
    repo = GitConfigRepo(settings.repo_path)
    orchestrator = Orchestrator(
        settings=settings,
        store=store,
        repo=repo,
        lock=FileEnvironmentLock(settings.home / "locks", timeout=settings.admission.lock_timeout),
        clock=clock or SystemClock(),
        validators=default_validators(),
    )
    return App(settings=settings, store=store, repo=repo, orchestrator=orchestrator)
