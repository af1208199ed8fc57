"""The audit log's tables, and appending to them inside a caller's transaction.

:func:`append_in` is what makes "no decision without its entry, no entry for a
change that rolled back" true: the intent log calls it on the connection of
the very transaction that records the state change, so both commit or neither
does. Appends are serialised so the chain has exactly one head: SQLite's
``BEGIN IMMEDIATE`` already admits one writer at a time; on PostgreSQL a
transaction-scoped advisory lock does the same (and is released at commit).

The database refuses ``UPDATE``, ``DELETE`` (and on PostgreSQL ``TRUNCATE``) of
these tables through triggers made by migration 0003. The triggers stop
mistakes and casual edits; verification does not rely on them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, LargeBinary, Text, func, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

from audit.checkpoint import Checkpoint
from audit.entry import AuditEvent
from audit.hashing import GENESIS, Frontier, leaf_hash, link
from audit.ports import Row

#: Key of the PostgreSQL advisory lock that keeps one chain head.
APPEND_LOCK_KEY = 0x41505802  # "APX" + 2
#: Rows fetched per round trip while streaming the log.
STREAM_BATCH = 20_000

_SEQ = BigInteger().with_variant(Integer(), "sqlite")


class AuditEntryRow(SQLModel, table=True):
    __tablename__ = "audit_entries"

    seq: int = Field(sa_column=Column(_SEQ, primary_key=True, autoincrement=False))
    #: Canonical JSON of the entry (:meth:`audit.entry.AuditEvent.body`): what is hashed.
    body: bytes = Field(sa_column=Column(LargeBinary(), nullable=False))
    #: The chain link: sha256(previous link + leaf hash).
    link: bytes = Field(sa_column=Column(LargeBinary(), nullable=False))


class AuditCheckpointRow(SQLModel, table=True):
    __tablename__ = "audit_checkpoints"

    size: int = Field(sa_column=Column(_SEQ, primary_key=True, autoincrement=False))
    #: The signed checkpoint as JSON (:meth:`audit.checkpoint.Checkpoint.as_json`), kept verbatim.
    checkpoint: str = Field(sa_column=Column(Text(), nullable=False))
    #: The tree frontier at ``size`` (hex hashes), so the next checkpoint hashes only new entries.
    frontier: str = Field(sa_column=Column(Text(), nullable=False))


_entries = SQLModel.metadata.tables["audit_entries"]
_HEAD = "SELECT seq, link FROM audit_entries ORDER BY seq DESC LIMIT 1"
_checkpoints = SQLModel.metadata.tables["audit_checkpoints"]


def append_in(conn: Connection, events: Sequence[AuditEvent]) -> list[int]:
    """Append ``events`` in the caller's (write) transaction; their sequence numbers."""
    if not events:
        return []
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": APPEND_LOCK_KEY})
    # A fixed statement through the driver: about a quarter of SQLAlchemy Core's cost for
    # a one-row read, and this read is in every write the intent log makes.
    head = conn.exec_driver_sql(_HEAD).first()
    seq, previous = (int(head[0]), bytes(head[1])) if head is not None else (0, GENESIS)
    rows: list[dict[str, Any]] = []
    numbers: list[int] = []
    for event in events:
        seq += 1
        body = event.body(seq)
        previous = link(previous, leaf_hash(body))
        rows.append({"seq": seq, "body": body, "link": previous})
        numbers.append(seq)
    conn.execute(_entries.insert(), rows)
    return numbers


class SqlAuditStore:
    """:class:`audit.ports.AuditStore` on the intent log's database."""

    def __init__(self, engine: Engine, *, writer: Engine | None = None) -> None:
        self._engine = engine
        #: An engine whose transactions start as writers (``BEGIN IMMEDIATE`` on SQLite).
        self._writer = writer or engine

    def append(self, events: Sequence[AuditEvent]) -> list[int]:
        with self._writer.begin() as conn:
            return append_in(conn, events)

    def size(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(_entries.c.seq), 0))).scalar_one())

    def rows(self, start: int = 1, stop: int | None = None) -> Iterator[Row]:
        """Entries ``start`` ≤ seq ≤ ``stop``, ascending, read through the driver's own cursor.

        Not through SQLAlchemy's rows: a ``Row`` and the binary result
        processors per entry cost about as much as verifying the entry does,
        and ``apx audit verify`` reads every row (``bench/audit_log.py``: a million
        rows in ~0.8 s through the bare ``sqlite3`` cursor against ~3 s through
        Core). On PostgreSQL the rows come in key-ordered pages (``seq > last …
        LIMIT``) as binary results, all in one REPEATABLE READ transaction, so
        every page is read from one snapshot as a single query's rows would be.
        That is several times faster here than a server-side cursor over text
        results, where every bytea arrives as hex to decode.
        """
        with self._engine.connect() as conn:
            raw: Any = conn.connection.driver_connection  # the sqlite3 or psycopg connection
            if conn.dialect.name == "sqlite":
                upper = "" if stop is None else " AND seq <= :stop"
                cursor = raw.cursor()
                try:
                    cursor.execute(
                        f"SELECT seq, body, link FROM audit_entries WHERE seq >= :start{upper} ORDER BY seq",
                        {"start": start, "stop": stop},
                    )
                    yield from cursor
                finally:
                    cursor.close()
                return
            if conn.dialect.driver == "psycopg":
                conn.execution_options(isolation_level="REPEATABLE READ")
                upper = "" if stop is None else " AND seq <= %(stop)s"
                page_sql = (
                    f"SELECT seq, body, link FROM audit_entries WHERE seq > %(last)s{upper} "
                    "ORDER BY seq LIMIT %(limit)s"
                )
                params = {"last": start - 1, "stop": stop, "limit": STREAM_BATCH}
                with raw.cursor(binary=True) as cursor:
                    while True:
                        cursor.execute(page_sql, params)
                        page = cursor.fetchall()
                        yield from page
                        if len(page) < STREAM_BATCH:
                            return
                        params["last"] = page[-1][0]
            # Any other driver: SQLAlchemy Core, streamed.
            stmt = select(_entries.c.seq, _entries.c.body, _entries.c.link).where(_entries.c.seq >= start)
            if stop is not None:
                stmt = stmt.where(_entries.c.seq <= stop)
            stmt = stmt.order_by(_entries.c.seq)
            result = conn.execution_options(stream_results=True, yield_per=STREAM_BATCH).execute(stmt)
            for partition in result.partitions():
                for seq, body, chain in partition:
                    yield seq, bytes(body), bytes(chain)

    def checkpoints(self) -> list[Checkpoint]:
        stmt = select(_checkpoints.c.checkpoint).order_by(_checkpoints.c.size)
        with self._engine.connect() as conn:
            return [Checkpoint.from_json(json.loads(data)) for (data,) in conn.execute(stmt)]

    def latest(self) -> tuple[Checkpoint, Frontier] | None:
        stmt = select(_checkpoints).order_by(_checkpoints.c.size.desc()).limit(1)
        with self._engine.connect() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            return None
        checkpoint = Checkpoint.from_json(json.loads(row.checkpoint))
        return checkpoint, Frontier(checkpoint.size, [bytes.fromhex(h) for h in json.loads(row.frontier)])

    def add_checkpoint(self, checkpoint: Checkpoint, frontier: Frontier) -> bool:
        values: dict[str, Any] = {
            "size": checkpoint.size,
            "checkpoint": json.dumps(checkpoint.as_json(), sort_keys=True),
            "frontier": json.dumps([h.hex() for h in frontier.stack]),
        }
        try:
            with self._writer.begin() as conn:
                conn.execute(_checkpoints.insert().values(values))
        except IntegrityError:
            return False
        return True


__all__ = ["AuditCheckpointRow", "AuditEntryRow", "SqlAuditStore", "append_in"]
