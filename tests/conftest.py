"""Fixtures every test directory may use: a frozen clock, a PostgreSQL URL, and an intent store.

``store`` runs a test over every implementation of the intent-log ports (the
in-memory fake, SQLite, PostgreSQL), which is what keeps the fake honest.
PostgreSQL cases run when ``APX_TEST_DATABASE_URL`` is set (for example
``postgresql+psycopg://postgres@127.0.0.1:5432/test``) and are skipped otherwise.
Database libraries are imported inside fixtures so unit tests never pay for them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from orchestrator.testing import FrozenClock, InMemoryIntentStore

if TYPE_CHECKING:
    from orchestrator.settings import Settings
    from orchestrator.sql_store import SqlIntentStore

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

# Every test makes its own home; they share one compiled-policy cache (keyed by the
# bundle's exact content), as homes on one machine may, so the bundle is compiled
# and safety-checked once per run rather than once per test. Set before any test
# runs, so `apx` subprocesses of the acceptance tests inherit it too.
# The policy time budget (250 ms by default) is a production guard; on a loaded
# 2-core CI runner a first evaluation can take longer, and these tests are about
# decisions, not timing. The budget's own behaviour is tested with a tiny budget.
os.environ.setdefault("APX_POLICY__BUDGET", "10s")
# litellm fetches a model cost map from GitHub when imported unless told not to (agents/llm.py
# sets this before its own import; test modules that import litellm directly need it too).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault(
    "APX_POLICY__CACHE_DIR", str(Path(os.environ.get("TMPDIR", "/tmp")) / f"apx-test-policy-{os.getuid()}")
)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@contextmanager
def _fresh_pg_schema() -> Iterator[str]:
    base = os.environ.get("APX_TEST_DATABASE_URL")
    if not base:
        pytest.skip("set APX_TEST_DATABASE_URL to run against PostgreSQL")
    from sqlalchemy import create_engine, make_url, pool

    schema = f"apx_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base, poolclass=pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """``APX_TEST_DATABASE_URL`` with its search_path set to a fresh schema, dropped afterwards.

    Every test gets empty tables (and its own ``alembic_version``), so tests are
    isolated and can run again and again on one server.
    """
    with _fresh_pg_schema() as url:
        yield url


@pytest.fixture(scope="module")
def module_pg_url() -> Iterator[str]:
    """Like ``pg_url``, but one schema for a whole module: for module-scoped fixtures
    (a home that several tests share, such as the API fuzz's)."""
    with _fresh_pg_schema() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    # A subdirectory that does not exist yet: opening the store must create it.
    return f"sqlite:///{tmp_path / 'home' / 'apx.db'}"


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(
    request: pytest.FixtureRequest, clock: FrozenClock
) -> Iterator[InMemoryIntentStore | SqlIntentStore]:
    """An empty intent store (also the breaker store) of each kind, its clock frozen at ``T0``."""
    if request.param == "memory":
        yield InMemoryIntentStore(clock=clock)
        return
    from orchestrator.sql_store import SqlIntentStore

    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    with SqlIntentStore.open(url, clock=clock) as sql:
        yield sql


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """A fresh home made as ``apx init`` makes it; its intent log on SQLite, and on PostgreSQL too."""
    from orchestrator.home import init_home
    from orchestrator.settings import load_settings

    home = tmp_path / "home"
    init_home(home)
    loaded = load_settings(home)
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
        loaded = loaded.model_copy(update={"database": loaded.database.model_copy(update={"url": url})})
    return loaded
