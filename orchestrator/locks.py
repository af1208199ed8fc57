"""Cross-process exclusion per environment.

Every decision for one environment (admission, sequencing, apply) happens
while holding that environment's lock, so the counts admission reads are
exact and intents are decided strictly in arrival order even when several
``apx submit`` processes or API workers run at once. Git's compare-and-swap on
the branch is the second line of defence.

* :class:`FileEnvironmentLock`: ``flock`` on a file in the home. SQLite, one host.
* :class:`PostgresEnvironmentLock`: a PostgreSQL session advisory lock, so every
  process that shares the database excludes every other, wherever it runs. A
  process that dies (even ``kill -9``) loses its connection and the server frees
  the lock; nothing has to be cleaned up.

Both wait with backoff up to ``admission.lock_timeout`` and then raise
:class:`~orchestrator.errors.LockTimeout` naming the environment.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.errors import LockTimeout

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def _wait(environment: str, timeout: float, attempt: Callable[[], bool]) -> None:
    """Call ``attempt`` with backoff until it returns True, or raise LockTimeout."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while not attempt():
        if time.monotonic() >= deadline:
            raise LockTimeout(
                f"environment {environment!r} stayed locked by another apx process for "
                f"{timeout:g}s; try again"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


class FileEnvironmentLock:
    def __init__(self, directory: Path, *, timeout: timedelta) -> None:
        self._directory = directory
        self._timeout = timeout.total_seconds()

    @contextmanager
    def hold(self, environment: str) -> Iterator[None]:
        self._directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._directory / f"{environment}.lock", os.O_RDWR | os.O_CREAT, 0o644)

        def attempt() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        try:
            _wait(environment, self._timeout, attempt)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def advisory_key(namespace: str, environment: str) -> int:
    """A stable signed 64-bit advisory-lock key (PostgreSQL's bigint) for ``environment``
    of the installation whose tables live in ``namespace``."""
    digest = hashlib.sha256(f"apx-environment:{namespace}:{environment}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresEnvironmentLock:
    """``pg_try_advisory_lock`` on a connection of its own, held for the whole decision.

    The lock's connection is in autocommit, so holding the lock never holds a
    transaction open; the decision's own transactions run on other connections.
    """

    def __init__(self, engine: Engine, *, timeout: timedelta) -> None:
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._timeout = timeout.total_seconds()
        #: ``database.schema`` of the intent log, as the server names it (read once).
        self._namespace: str | None = None

    @contextmanager
    def hold(self, environment: str) -> Iterator[None]:
        with self._engine.connect() as conn:
            # Advisory locks are per database, not per schema: key them by the database and
            # schema the intent log lives in, as the server names them (not as a URL does:
            # two hosts may reach one server by different names), so installations sharing
            # a server do not block each other and every process of one installation agrees.
            if self._namespace is None:
                where = conn.exec_driver_sql("SELECT current_database() || '.' || current_schema()")
                self._namespace = str(where.scalar())
            key = advisory_key(self._namespace, environment)

            def attempt() -> bool:
                return bool(conn.exec_driver_sql("SELECT pg_try_advisory_lock(%s)", (key,)).scalar())

            _wait(environment, self._timeout, attempt)
            try:
                yield
            finally:
                conn.exec_driver_sql("SELECT pg_advisory_unlock(%s)", (key,))
