"""The pipeline worker of ``apx serve``: decides queued intents in the background.

The API admits an intent and answers 202 at once (async by default); this
worker then claims and decides queued intents (:meth:`Orchestrator.work`). A
submit wakes it at once (:meth:`DrainWorker.wake`); it also polls every
``interval`` seconds, which picks up intents queued by other processes (``apx
submit --no-wait``) and environments whose change window has opened.

With ``apx serve --workers N`` the deciding moves to N ``apx drain --follow`` processes
(:mod:`orchestrator.worker_pool`) and this thread only re-checks for decisions
(``decide=False``), so requests waiting with ``?wait=`` see what the workers
decided.

Claims (``FOR UPDATE SKIP LOCKED`` on PostgreSQL) spread environments over the
workers of every process and host; the environment lock (flock, or
PostgreSQL's advisory lock) keeps each decision apart from other threads and
``apx`` processes. In-process it shares :data:`PIPELINE_LOCK` with review
actions, so a drain and a merge of this process do not interleave their audit
checkpoints and review-thread resumes. Callers waiting for a decision (``?wait=``) block on
:meth:`DrainWorker.wait_for`, which wakes after every drain.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from orchestrator import logs

if TYPE_CHECKING:
    from orchestrator.bootstrap import App

log = logs.get_logger("apx.worker")

#: Serialises pipeline work (drain, review actions) within one server process.
PIPELINE_LOCK = threading.RLock()


def worker_name(role: str = "") -> str:
    """How a worker names itself in its claims: host and pid, so an engineer finds the process."""
    return f"{socket.gethostname()}:{os.getpid()}" + (f":{role}" if role else "")


class DrainWorker:
    """One thread that decides queued intents when woken and every ``interval`` seconds.

    ``decide=False``: it only re-checks, for :meth:`wait_for`, what worker
    processes decided.
    """

    def __init__(self, app: App, *, interval: float = 2.0, decide: bool = True) -> None:
        self._app = app
        self._interval = interval
        self._decide = decide
        self.name = worker_name("serve")
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._drained = threading.Condition()
        self._rounds = 0
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="apx-drain", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Ask the thread to finish its current drain and stop; whether it stopped within ``timeout``."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.warning("worker.stop_timeout", timeout=timeout)
            return False
        return True

    def wake(self) -> None:
        """Drain soon: something was queued."""
        self._wake.set()

    def wait_for(self, done: Callable[[], bool], timeout: float) -> bool:
        """Block until ``done()`` holds (checked after every drain, and every second), or ``timeout``.

        The re-check covers a decision made by another process (``apx drain``,
        a worker process) that this thread's rounds would not signal; it runs
        four times a second when worker processes do all the deciding.
        """
        deadline = time.monotonic() + timeout
        while True:
            if done():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with self._drained:
                self._drained.wait(min(left, 1.0 if self._decide else 0.25))

    def drain_once(self, *, stoppable: bool = False) -> int:
        """Decide what is claimable now, in this thread; the number of decisions made.

        ``stoppable``: give up between intents once :meth:`stop` was called
        (the worker's own rounds, so shutdown waits for one decision at most).
        """
        made = 0
        if self._decide:
            try:
                with PIPELINE_LOCK:
                    made = len(
                        self._app.orchestrator.work(self.name, stop=lambda: stoppable and self._stop.is_set())
                    )
            except Exception as exc:  # a bad round must not kill the worker; the next round retries
                log.exception("worker.drain_failed", error=str(exc))
        if made:
            try:
                self._app.audit.checkpoint()
            except Exception as exc:
                log.exception("worker.checkpoint_failed", error=str(exc))
        with self._drained:
            self._rounds += 1
            self._drained.notify_all()
        return made

    def _run(self) -> None:
        log.info("worker.started", interval=self._interval)
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            self.drain_once(stoppable=True)
        log.info("worker.stopped")
