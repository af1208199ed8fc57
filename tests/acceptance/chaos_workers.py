"""Chaos for ``test_chaos.py``: fork apx workers and ``kill -9`` them at random moments.

Usage: ``python chaos_workers.py HOME KILLS SEED``. Prints one JSON object.

Each worker is a forked child that builds the App from the home (as ``apx`` does),
submits a few intents without waiting (``--no-wait``: recorded as queued, i.e.
acknowledged), then decides what is queued in dev and prod: half of them as a
pipeline worker does (``apx drain``, ``apx serve``: claim an environment's head,
decide it under the environment's lock), half as the scheduler does (each
environment's whole queue under its lock). The parent kills it after a random
delay: while it submits, claims, plans, validates, commits, or records.
The parent opens nothing of apx itself (no database, no repo), so forking is safe;
it has only imported the code, so a child starts in milliseconds.

apx imports much of what a worker uses lazily (the PostgreSQL driver, gitpython,
the secret-scan plugins, prometheus-client), and every forked child would pay for
that again: measured here, a child's first submission took 0.45 s on PostgreSQL
(0.15 s on SQLite), so with kills at most 0.3 s apart PostgreSQL workers died
before submitting anything. So the first worker, which runs to the end, reports
every module it imported, and the parent imports them before forking the rest
(then 0.15 s on PostgreSQL, 0.10 s on SQLite).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import json
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

# Imported before forking (apx imports these lazily), so a child starts in milliseconds.
import alembic.command  # noqa: F401
import langgraph.graph  # noqa: F401
import yaml

import orchestrator.pipeline
import orchestrator.review
import orchestrator.sql_store  # noqa: F401
import validators.policy
import validators.rego
import validators.secrets  # noqa: F401
from orchestrator.bootstrap import build
from orchestrator.intent import Intent
from orchestrator.seed import seed_files
from orchestrator.workers import worker_name

SEED = {path: yaml.safe_load(text) for path, text in seed_files().items()}
ROUTES = sorted(path for path in SEED if path.startswith("Route/"))


def proposal(rng: random.Random) -> tuple[Intent, str]:
    """A canary change on a random route (dev, sometimes prod), from one of a few agents."""
    route: dict[str, Any] = copy.deepcopy(SEED[rng.choice(ROUTES)])
    route["spec"]["canary"] = {"weight": rng.randint(1, 50)}
    environment = "prod" if rng.random() < 0.1 else "dev"
    intent = Intent.of(("update", route), tenant="acme", environment=environment, rationale="chaos")
    return intent, rng.choice(["builder", "optimizer", "security", "autoscaler"])


def work(home: Path, seed: int) -> None:
    rng = random.Random(seed)
    app = build(home)
    for _ in range(rng.randint(0, 3)):
        intent, agent = proposal(rng)
        app.orchestrator.submit(intent, agent=agent, wait=False)
    if rng.random() < 0.5:
        app.orchestrator.work(worker_name("chaos"))
    else:
        for environment in ("dev", "prod"):
            app.orchestrator.drain(environment)


def warm_up(home: Path, seed: int) -> list[str]:
    """Run one worker to the end in a child; return the modules it imported, in order."""
    before = set(sys.modules)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            work(home, seed)
            with os.fdopen(write, "w") as out:
                out.write("\n".join(name for name in sys.modules if name not in before))
        except BaseException:
            os._exit(3)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as report:
        names = report.read().split()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        print(json.dumps({"error": f"the first worker exited with {os.waitstatus_to_exitcode(status)}"}))
        sys.exit(1)
    return names


def main() -> None:
    home, wanted, seed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    kills = finished = 0
    started = time.monotonic()
    # One worker runs to the end first: it compiles the policy bundle into the home's
    # cache (seconds, once per bundle). Killed every time, no worker would get past it.
    for name in warm_up(home, rng.randrange(2**32)):
        # A name some library registers under an alias cannot be imported: children do it.
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    while kills < wanted:
        child_seed = rng.randrange(2**32)
        pid = os.fork()
        if pid == 0:
            try:
                work(home, child_seed)
            except BaseException:  # a crash is a finding: the parent reports the exit code
                os._exit(3)
            os._exit(0)
        time.sleep(rng.uniform(0.0, 0.3))
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            kills += 1
            continue
        if os.waitstatus_to_exitcode(status) != 0:
            print(json.dumps({"error": f"a worker exited with {os.waitstatus_to_exitcode(status)}"}))
            sys.exit(1)
        finished += 1
    print(json.dumps({"kills": kills, "finished": finished, "seconds": round(time.monotonic() - started, 1)}))


if __name__ == "__main__":
    main()
