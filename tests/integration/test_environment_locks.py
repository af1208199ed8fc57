"""The environment locks, one contract for both: flock on one host, a PostgreSQL advisory lock for many.

Each case runs against the real thing: a file in a temporary home, or a real
PostgreSQL server (when ``APX_TEST_DATABASE_URL`` is set). A holder in another
*process* is the case that matters (several ``apx`` processes and API workers),
including one that dies by ``kill -9`` while it holds the lock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import pytest

from orchestrator.errors import LockTimeout
from orchestrator.locks import FileEnvironmentLock, PostgresEnvironmentLock


class Lock(Protocol):
    def hold(self, environment: str) -> AbstractContextManager[None]: ...


#: Python that builds the same lock in a child process; {setup} is filled per kind.
CHILD = """
import sys, time
from datetime import timedelta
{setup}
with lock.hold(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


#: Builds a lock of the kind under test that waits at most the given time.
MakeLock = Callable[[timedelta], Lock]


@pytest.fixture(params=["file", pytest.param("postgres", marks=pytest.mark.postgres)])
def kind(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[MakeLock, str]]:
    """(a factory of locks of one kind, the code that builds the same lock in another process)."""
    if request.param == "file":
        directory = tmp_path / "locks"
        setup = (
            "from pathlib import Path\nfrom orchestrator.locks import FileEnvironmentLock\n"
            f"lock = FileEnvironmentLock(Path({str(directory)!r}), timeout=timedelta(seconds=5))"
        )
        yield (lambda timeout: FileEnvironmentLock(directory, timeout=timeout)), setup
        return
    from orchestrator.sql_base import create_engine

    url = request.getfixturevalue("pg_url")
    engine = create_engine(url)
    setup = (
        "from orchestrator.sql_base import create_engine\n"
        "from orchestrator.locks import PostgresEnvironmentLock\n"
        f"lock = PostgresEnvironmentLock(create_engine({url!r}), timeout=timedelta(seconds=5))"
    )
    try:
        yield (lambda timeout: PostgresEnvironmentLock(engine, timeout=timeout)), setup
    finally:
        engine.dispose()


def holder(setup: str, environment: str) -> subprocess.Popen[str]:
    """A child process that holds ``environment``'s lock until it is killed."""
    code = textwrap.dedent(CHILD).format(setup=setup)
    child = subprocess.Popen(
        [sys.executable, "-c", code, environment], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_lock_held_by_another_process_times_out_naming_the_environment(
    kind: tuple[MakeLock, str],
) -> None:
    make, setup = kind
    lock = make(timedelta(milliseconds=300))
    child = holder(setup, "prod")
    try:
        refused = pytest.raises(LockTimeout, match="environment 'prod' stayed locked by another apx process")
        with refused, lock.hold("prod"):
            pytest.fail("two processes held the prod lock at once")
        with lock.hold("dev"):  # other environments are not blocked
            pass
    finally:
        child.kill()
        child.wait()


def test_a_holder_killed_with_sigkill_frees_the_lock(kind: tuple[MakeLock, str]) -> None:
    make, setup = kind
    child = holder(setup, "dev")
    with pytest.raises(LockTimeout), make(timedelta(milliseconds=100)).hold("dev"):
        pass
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    # The kernel closes the file / the server drops the session: no stale lock to clean up.
    with make(timedelta(seconds=5)).hold("dev"):
        pass


def test_threads_of_one_process_exclude_each_other(kind: tuple[MakeLock, str]) -> None:
    # API workers decide in threads of one process: they need exclusion too.
    make, _ = kind
    patient = make(timedelta(seconds=10))
    inside = 0
    overlaps = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, overlaps
        for _ in range(20):
            with patient.hold("dev"):
                with guard:
                    inside += 1
                    overlaps += inside > 1
                threading.Event().wait(0.001)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert overlaps == 0
