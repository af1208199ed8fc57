"""What the benchmarks in this directory share: timing helpers and app set-up.

Imported as ``common`` because the benchmarks run as scripts (``python bench/x.py``),
which puts this directory first on ``sys.path``.
"""

from __future__ import annotations

import functools
import os
import platform
import secrets
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, make_url, pool

from orchestrator.bootstrap import App
from orchestrator.home import SIGNER
from orchestrator.seed import seed_files
from orchestrator.settings import Settings
from orchestrator.signing import SigningKey, create_signing_key, write_allowed_signers

#: Where the benches find a PostgreSQL server when ``--database-url`` is not given.
DATABASE_URL_VARIABLE = "APX_BENCH_DATABASE_URL"


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


class Breakdown:
    """Wall time per wrapped callable, summed; ``outer`` counts only calls not made
    from inside another wrapped one, so the outer figures add up."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.outer: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._depth = 0

    def wrap(self, name: str | Callable[..., str], fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            label = name(*args, **kwargs) if callable(name) else name
            outermost = self._depth == 0
            self._depth += 1
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                self._depth -= 1
                self.seconds[label] += elapsed
                self.calls[label] += 1
                if outermost:
                    self.outer[label] += elapsed

        return wrapper

    def per_op(self, n: int) -> dict[str, dict[str, float]]:
        return {
            "breakdown_ms_per_op": {k: v * 1000 / n for k, v in sorted(self.seconds.items())},
            "outer_ms_per_op": {k: v * 1000 / n for k, v in sorted(self.outer.items())},
            "calls_per_op": {k: v / n for k, v in sorted(self.calls.items())},
        }

    def reset(self) -> None:
        self.seconds.clear()
        self.outer.clear()
        self.calls.clear()


def raised_limits(settings: Settings) -> Settings:
    rules = settings.admission
    admission = rules.model_copy(
        update={
            "rate_limit": rules.rate_limit.model_copy(update={"deploys": 10**9}),
            "breaker": rules.breaker.model_copy(update={"max_deploys": 10**9}),
        }
    )
    return settings.model_copy(update={"admission": admission})


def on_database(settings: Settings, url: str | None) -> Settings:
    """``settings`` with its intent log at ``url`` (as the tests' ``settings`` fixture does)."""
    if url is None:
        return settings
    return settings.model_copy(update={"database": settings.database.model_copy(update={"url": url})})


def database_url_default() -> str | None:
    return os.environ.get(DATABASE_URL_VARIABLE)


def check_postgres_url(url: str | None) -> str | None:
    """None, or why ``url`` cannot be used (the benches take PostgreSQL URLs only)."""
    if url and make_url(url).get_backend_name() != "postgresql":
        return "--database-url must be a postgresql+psycopg:// URL"
    return None


@contextmanager
def postgres_schema(base_url: str, prefix: str = "apx_bench") -> Iterator[str]:
    """A fresh schema on the server at ``base_url``; the URL that uses it. Dropped afterwards."""
    schema = f"{prefix}_{secrets.token_hex(4)}"
    admin = create_engine(base_url, poolclass=pool.NullPool)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


def libpq_conninfo(url: str) -> str:
    """A SQLAlchemy ``postgresql+psycopg://`` URL as the bare driver takes it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def server_version(url: str) -> str:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            return str(conn.exec_driver_sql("SHOW server_version").scalar()).split()[0]
    finally:
        engine.dispose()


def git(*args: str, cwd: Path, stdin: bytes | None = None) -> None:
    subprocess.run(["git", *args], cwd=cwd, input=stdin, check=True, capture_output=True)


def signed_scratch_repo(repo: Path, *, keys: Path, branch: str = "dev") -> SigningKey:
    """A git repository set up as ``GitConfigRepo.create`` sets up the config repo (an Ed25519
    key made by the same ``create_signing_key``, ``gpg.format=ssh``, allowed signers,
    ``commit.gpgsign``), seeded with the same files in one signed commit on ``branch``."""
    key = create_signing_key(keys)
    allowed = keys / "allowed_signers"
    write_allowed_signers(allowed, principal=SIGNER, public_line=key.public_line)
    repo.mkdir(parents=True)
    git("init", "-q", "-b", branch, cwd=repo)
    for name, value in (
        ("user.name", "apx"),
        ("user.email", SIGNER),
        ("user.signingkey", str(key.private_path.resolve())),
        ("gpg.format", "ssh"),
        ("gpg.ssh.allowedSignersFile", str(allowed.resolve())),
        ("commit.gpgsign", "true"),
    ):
        git("config", name, value, cwd=repo)
    for path, text in seed_files().items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    git("add", "-A", cwd=repo)
    git("commit", "-S", "-q", "-m", "Seed the environments", cwd=repo)
    return key


def close(app: App) -> None:
    app.store.close()
    app.repo.close()


def render_table(rows: Sequence[Sequence[str]], *, left: tuple[int, ...] = (0,)) -> str:
    """``rows`` (the first is the header) as aligned text: columns in ``left`` flush left, the rest right."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

    def line(row: Sequence[str]) -> str:
        cells = zip(row, widths, strict=True)
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(cells))

    lines = [line(r) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def machine() -> dict[str, str]:
    """What every benchmark records about where it ran (scripts add their libraries' versions)."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "date": datetime.now(UTC).date().isoformat(),
        "cpus": str(os.cpu_count()),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "loadavg_1m_at_start": f"{load[0]:.2f}",
    }
