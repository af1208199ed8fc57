"""``apx serve --workers N``: N ``apx drain --follow`` processes beside the API, watched and restarted.

Why processes rather than threads: a decision is Python (parsing, validators,
Rego through regopy, SQLAlchemy) between git and database round trips, and
threads of one interpreter share one GIL; separate processes use every core.
They are the same processes an engineer starts by hand with ``apx drain --follow`` on
other hosts: claims (:meth:`orchestrator.ports.IntentStore.claim`) spread the
environments over all of them, and the environment lock keeps each decision
exact wherever it runs.

The pool restarts a worker that exits on its own (a crash, ``kill -9``) after a
back-off that doubles up to :data:`MAX_BACKOFF`; the intent it was deciding
stays ``queued``, and its claim lapses after ``workers.lease`` so another
worker takes it over. Stopping sends SIGTERM (a worker finishes the decision
it is in), waits at most ``grace`` seconds, then kills what is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator import logs

log = logs.get_logger("apx.worker_pool")

#: Longest wait before restarting a worker that keeps dying.
MAX_BACKOFF = 30.0
#: How often the watcher looks at the workers.
WATCH_EVERY = 0.5


def work_command(home: Path) -> list[str]:
    """The command line of one worker: this interpreter running ``apx drain --follow`` on ``home``."""
    return [
        sys.executable,
        "-c",
        "from orchestrator.cli import main; main()",
        "drain",
        "--follow",
        "--home",
        str(home),
    ]


@dataclass
class _Slot:
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    not_before: float = 0.0


class WorkerPool:
    """``count`` worker processes of the home at ``home``; :meth:`start`, then :meth:`stop`."""

    def __init__(self, home: Path, count: int, *, env: dict[str, str] | None = None) -> None:
        if count < 1:
            raise ValueError("a worker pool needs at least one worker")
        self._home = home
        self._env = env
        self._slots = [_Slot() for _ in range(count)]
        self._stopping = threading.Event()
        self._guard = threading.Lock()
        self._watcher: threading.Thread | None = None

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers alive now."""
        with self._guard:
            return [s.process.pid for s in self._slots if s.process is not None and s.process.poll() is None]

    @property
    def restarts(self) -> int:
        with self._guard:
            return sum(s.restarts for s in self._slots)

    def start(self) -> None:
        with self._guard:
            for slot in self._slots:
                self._spawn(slot)
        self._watcher = threading.Thread(target=self._watch, name="apx-worker-pool", daemon=True)
        self._watcher.start()

    def stop(self, grace: float = 30.0) -> bool:
        """SIGTERM every worker, wait up to ``grace`` seconds, kill the rest; whether all stopped in time."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(5.0)
        with self._guard:
            running = [s.process for s in self._slots if s.process is not None and s.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        clean = True
        for process in running:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker_pool.kill", pid=process.pid, grace=grace)
                process.kill()
                process.wait(5.0)
                clean = False
        return clean

    def _spawn(self, slot: _Slot) -> None:
        # Own process group: a Ctrl-C in the terminal reaches `apx serve`, which then
        # stops the workers in order, instead of interrupting them mid-decision.
        slot.process = subprocess.Popen(
            work_command(self._home),
            env=self._env if self._env is not None else os.environ.copy(),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.info("worker_pool.started", pid=slot.process.pid)

    def _watch(self) -> None:
        while not self._stopping.wait(WATCH_EVERY):
            with self._guard:
                for slot in self._slots:
                    self._revive(slot)

    def _revive(self, slot: _Slot) -> None:
        """Restart ``slot``'s worker if it exited, once its back-off has passed."""
        if slot.process is None or slot.process.poll() is None:
            return
        now = time.monotonic()
        if slot.not_before == 0.0:
            backoff = min(MAX_BACKOFF, 0.5 * 2 ** min(slot.restarts, 10))
            slot.not_before = now + backoff
            log.warning(
                "worker_pool.worker_exited",
                pid=slot.process.pid,
                code=slot.process.returncode,
                restart_in=backoff,
            )
        if now >= slot.not_before:
            slot.restarts += 1
            slot.not_before = 0.0
            self._spawn(slot)
