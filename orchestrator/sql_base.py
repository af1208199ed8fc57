"""What every SQL adapter here shares: engines, UTC timestamps, one-line storage errors.

The intent store, the audit log, the data plane's metrics and the notification
outbox all live in one database. They must open it the same way (SQLite in WAL
with a busy timeout, writes starting with ``BEGIN IMMEDIATE``), store times the
same way, and fail the same way, so those three things are defined once, here.
Nothing of ours is imported, so any adapter module can import this one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect, Engine, Integer, TypeDecorator, event
from sqlalchemy import create_engine as _sqlalchemy_engine
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError

from orchestrator.errors import StorageError

#: How long a SQLite writer waits for another process's write to finish.
#: Writes here take milliseconds; 30 s only runs out if something is stuck.
SQLITE_BUSY_TIMEOUT_MS = 30_000

#: Autoincrementing keys: BIGINT on PostgreSQL, but SQLite only aliases the rowid
#: (and so only autoincrements) for a column declared exactly INTEGER.
SEQ = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is timezone-aware UTC going in and coming out, on every database.

    SQLite keeps no offset, so values are converted to UTC on write and tagged
    UTC on read; a naive datetime is refused rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given to the database; use UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        # SQLite hands back the naive UTC value we wrote; PostgreSQL an aware
        # one in the session's time zone.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def create_engine(url: str) -> Engine:
    """An engine for ``url``: PostgreSQL with pre-ping; SQLite in WAL with a busy timeout,
    and transactions opened with ``execution_options(apx_write=True)`` starting as writers."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # pre_ping: `apx serve` outlives server restarts and idle-connection reapers.
        return _sqlalchemy_engine(parsed, pool_pre_ping=True)
    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = _sqlalchemy_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Autocommit at the driver level: pysqlite would otherwise issue its own
        # deferred BEGIN, and we need BEGIN IMMEDIATE for writes (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get("apx_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def one_line(exc: BaseException) -> str:
    """A database error's first line (drivers put the useful part there)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def transaction(engine: Engine, what: str, *, write: bool = False) -> Iterator[Connection]:
    """One transaction on ``engine``; a database error comes out as one-line :class:`StorageError`
    saying what could not be done. ``write`` starts it as a writer (``BEGIN IMMEDIATE`` on SQLite)."""
    try:
        with (engine.execution_options(apx_write=True) if write else engine).begin() as conn:
            yield conn
    except SQLAlchemyError as exc:
        raise StorageError(f"could not {what}: {one_line(exc)}") from exc
