"""Cross-process exclusion per environment, with ``flock`` on a file in the home.

Every decision for one environment (admission, sequencing, apply) happens
while holding that environment's lock, so the counts admission reads are
exact and intents are decided strictly in arrival order even when several
``apx submit`` processes run at once. Git's compare-and-swap on the branch is
the second line of defence. This covers one host; several hosts on one
PostgreSQL need a database lock instead (the ``EnvironmentLock`` port allows it).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from orchestrator.errors import LockTimeout


class FileEnvironmentLock:
    def __init__(self, directory: Path, *, timeout: timedelta) -> None:
        self._directory = directory
        self._timeout = timeout.total_seconds()

    @contextmanager
    def hold(self, environment: str) -> Iterator[None]:
        self._directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._directory / f"{environment}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + self._timeout
            delay = 0.001
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockTimeout(
                            f"environment {environment!r} stayed locked by another apx process for "
                            f"{self._timeout:g}s; try again"
                        ) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.05)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
