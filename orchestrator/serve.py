"""``apx serve``: the whole control plane in one process, and a clean stop.

One process runs three things over one :class:`~orchestrator.bootstrap.App`:

* the HTTP API (:func:`orchestrator.api.app.create_api`) on uvicorn, in a thread
  of its own; the API's lifespan starts and stops the
  :class:`~orchestrator.workers.DrainWorker` that decides queued intents, or,
  with ``--workers N``, only watches what N ``apx drain --follow`` processes
  (:class:`~orchestrator.worker_pool.WorkerPool`) decide;
* the scheduler (:func:`orchestrator.scheduler.build_scheduler`): retention,
  audit checkpoints, canaries, review expiry, notifications, periodic agents;
* the main thread, which only waits for SIGTERM or SIGINT.

Why uvicorn runs in a thread rather than in the main thread: uvicorn handles
signals itself when it owns the main thread, and after a graceful stop it
raises the signal again, which would end the process before the scheduler and
the worker are stopped. Off the main thread it installs no handlers, so this
module owns the signals and stops the parts in order.

A stop is bounded: open requests get :data:`HTTP_GRACE` seconds (an SSE stream
never ends by itself), the worker finishes the drain it is in, running jobs get
:data:`JOBS_GRACE` seconds. What is still running then is abandoned: an intent
in the middle of being decided stays ``queued`` in the intent log and the next
start decides it, so nothing is lost. A second signal stops at once.

The socket is bound here, before uvicorn starts, so a port in use is one clear
error (exit 2) and ``--port 0`` picks a free port and prints it.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from orchestrator import logs
from orchestrator.errors import BadInput, InternalError

if TYPE_CHECKING:
    import uvicorn
    from apscheduler.schedulers.base import BaseScheduler
    from fastapi import FastAPI

    from orchestrator.bootstrap import App
    from orchestrator.principals import Principals
    from orchestrator.worker_pool import WorkerPool

log = logs.get_logger("apx.serve")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8700
#: Seconds open requests get to finish once a stop begins.
HTTP_GRACE = 5.0
#: Seconds the drain worker gets to finish the drain it is in (the lifespan stops it).
WORKER_GRACE = 30.0
#: Seconds running scheduler jobs (an agent run, a canary rollback) get to finish.
JOBS_GRACE = 30.0
#: Seconds the API gets to come up (the App's parts are built before this starts).
STARTUP_TIMEOUT = 60.0
#: Scheduler jobs that drive the review flow (a canary rollback, an expiry). They take the
#: pipeline lock, as the API's review actions do, so one review thread is resumed by one
#: caller at a time. Agent runs do not: an LLM may take seconds to plan, and their submits
#: are ordered by the environment lock like any other.
PIPELINE_JOBS = ("check_canaries", "expire_reviews")
#: The scheduler's own drain is the worker's job while the API runs.
REPLACED_JOBS = ("drain_queued",)


class Service:
    """The API, the drain worker and the scheduler of one App; :meth:`start`, then :meth:`stop`.

    ``jobs=False`` leaves the scheduler out (tests that only need the API and
    the worker). ``workers``: how many ``apx drain --follow`` processes decide; 0 (the
    default) decides in a thread of this process.
    """

    def __init__(
        self,
        app: App,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        jobs: bool = True,
        principals: Principals | None = None,
        workers: int = 0,
    ) -> None:
        self.app = app
        self.workers = workers
        self.pool: WorkerPool | None = None
        self.host = host
        self.port = port
        self._jobs = jobs
        self._principals = principals
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._scheduler: BaseScheduler | None = None
        self._api: FastAPI | None = None
        self.url = ""

    def start(self) -> str:
        """Bind, start the scheduler and the API, wait until the API answers; return its URL."""
        import uvicorn

        from orchestrator.api.app import create_api

        sock = bind(self.host, self.port)
        bound_port = sock.getsockname()[1]
        self.url = f"http://{_url_host(self.host)}:{bound_port}"
        try:
            if self.workers:
                from orchestrator.worker_pool import WorkerPool
                from orchestrator.workers import DrainWorker

                self.pool = WorkerPool(self.app.settings.home, self.workers)
                self.pool.start()
                watcher = DrainWorker(self.app, interval=0.25, decide=False)
                self._api = create_api(self.app, principals=self._principals, worker=watcher)
                self._api.state.pool = self.pool
            else:
                self._api = create_api(self.app, principals=self._principals, drain_interval=2.0)
            config = uvicorn.Config(
                self._api,
                lifespan="on",
                log_level="warning",
                access_log=False,
                ws="none",
                server_header=False,
                timeout_graceful_shutdown=int(HTTP_GRACE),
            )
            self._server = uvicorn.Server(config)
            if self._jobs:
                self._scheduler = self._build_scheduler()
                self._scheduler.start()
            self._thread = threading.Thread(
                target=self._server.run, kwargs={"sockets": [sock]}, name="apx-http", daemon=True
            )
            self._thread.start()
            self._wait_started()
        except BaseException:
            self.stop()
            sock.close()
            raise
        log.info("serve.listening", url=self.url, home=str(self.app.settings.home))
        return self.url

    def _build_scheduler(self) -> BaseScheduler:
        from orchestrator.scheduler import build_scheduler
        from orchestrator.workers import PIPELINE_LOCK

        scheduler = build_scheduler(self.app)
        for job_id in REPLACED_JOBS:
            if scheduler.get_job(job_id) is not None:
                scheduler.remove_job(job_id)
        for job_id in PIPELINE_JOBS:
            job = scheduler.get_job(job_id)
            if job is not None:
                job.modify(func=_holding(PIPELINE_LOCK, job.func))
        return scheduler

    def _wait_started(self) -> None:
        assert self._server is not None and self._thread is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive():
                raise InternalError(f"the API did not start on {self.url}; the log says why")
            if time.monotonic() > deadline:
                raise InternalError(f"the API did not start on {self.url} within {STARTUP_TIMEOUT:.0f}s")
            time.sleep(0.05)

    @property
    def jobs(self) -> list[str]:
        """The scheduled jobs' ids (none before :meth:`start`, or with ``jobs=False``)."""
        return [job.id for job in self._scheduler.get_jobs()] if self._scheduler is not None else []

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, *, force: bool = False) -> bool:
        """Stop the API (and with it the worker) and the scheduler; whether all stopped in time."""
        stopped = True
        scheduler_done = threading.Thread(target=self._stop_scheduler, name="apx-stop-jobs", daemon=True)
        scheduler_done.start()
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = force
        if self._thread is not None:
            self._thread.join(HTTP_GRACE + WORKER_GRACE + 5.0)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(5.0)
            if self._thread.is_alive():
                log.error("serve.http_stop_timeout")
                stopped = False
        if self._api is not None:
            # The lifespan stops the worker; a forced exit skips the lifespan, so make sure.
            stopped = self._api.state.worker.stop(timeout=0 if force else WORKER_GRACE) and stopped
        if self.pool is not None:
            stopped = self.pool.stop(grace=0 if force else WORKER_GRACE) and stopped
        scheduler_done.join(0 if force else JOBS_GRACE)
        if scheduler_done.is_alive():
            log.error("serve.jobs_stop_timeout", grace=JOBS_GRACE)
            stopped = False
        return stopped

    def _stop_scheduler(self) -> None:
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=True)


def run(app: App, *, host: str, port: int, echo: Callable[[str], None], workers: int = 0) -> int:
    """``apx serve``: start, say where, wait for SIGTERM or SIGINT, stop. The exit code."""
    service = Service(app, host=host, port=port, workers=workers)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            # The operator asked twice: do not wait for anything (queued intents stay queued).
            echo("apx serve: second signal: stopping now")
            _exit_now(4)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        url = service.start()
        jobs = ", ".join(service.jobs) or "none"
        echo(f"apx serve: listening on {url} (home {app.settings.home.resolve()})")
        deciding = (
            f"{workers} worker processes (pids {', '.join(map(str, service.pool.pids))})"
            if service.pool is not None
            else "drain worker"
        )
        echo(f"apx serve: {deciding} running; scheduled jobs: {jobs}; SIGTERM or Ctrl-C stops")
        while not stop.wait(0.5):
            if not service.running:
                log.error("serve.http_died")
                echo("apx serve: the HTTP server stopped unexpectedly; stopping")
                break
        echo("apx serve: stopping")
        clean = service.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not clean:
        echo("apx serve: some work did not finish in time and was abandoned; queued intents stay queued")
        app.close()
        _exit_now(4)
    app.close()
    echo("apx serve: stopped")
    log.info("serve.stopped", clean=clean)
    return 0 if stop.is_set() else 4


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: any free port), or a BadInput why not."""
    if not 0 <= port <= 65535:
        raise BadInput(f"--port {port}: use a port from 0 to 65535 (0 picks a free one)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BadInput(f"--host {host!r}: cannot resolve it ({exc.strerror})") from exc
    family, _, _, _, address = infos[0]
    try:
        return socket.create_server(address, family=family, backlog=2048)
    except OSError as exc:
        raise BadInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _holding(lock: Any, func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def job(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return func(*args, **kwargs)

    return job


def _exit_now(code: int) -> None:
    """Leave without waiting for abandoned threads (the interpreter would join them at exit)."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
