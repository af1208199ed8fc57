"""The data plane's metrics in SQL: table ``dataplane_metrics`` beside the intent log.

:class:`SqlMetricsStore` implements :class:`orchestrator.dataplane.metrics.MetricsStore`.
The table comes from migration 0005 like every other table; this module holds its
model so the migration test can compare the two, and :mod:`orchestrator.sql_store`
imports it to register the model. So this module must never import
:mod:`orchestrator.sql_store` at import time (that would be a cycle): the engine
factory and :func:`~orchestrator.sql_store.migrate` are imported in :meth:`SqlMetricsStore.open`.

Metrics are many (about 250 samples per environment per tick with the seeded
tenant) and only ever appended, read by time range, and pruned, so:

* ``at`` is an integer, microseconds since the Unix epoch (UTC): exact, compact,
  compared the same way on SQLite and PostgreSQL, and cheap to index;
* one index, ``(environment, at)``, serves every read and the pruning;
* a tick is one executemany in one transaction; pruning deletes in batches so a
  SQLite writer (``apx submit``) never waits long behind it.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Column, Float, Index, Integer, String, delete, select
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Field, SQLModel

from orchestrator.dataplane.metrics import POOL, Metric, Sample, weighted_error_rate
from orchestrator.records import utc
from orchestrator.sql_base import create_engine, transaction

__all__ = ["MetricSampleRow", "SqlMetricsStore"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
#: Rows per executemany: well within PostgreSQL's and SQLite's parameter limits.
_INSERT_CHUNK = 5_000
#: Rows deleted per pruning transaction.
_PRUNE_BATCH = 10_000

_ID = BigInteger().with_variant(Integer(), "sqlite")


class MetricSampleRow(SQLModel, table=True):
    __tablename__ = "dataplane_metrics"
    __table_args__ = (Index("ix_dataplane_metrics_environment_at", "environment", "at"),)

    id: int | None = Field(default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True))
    #: Microseconds since 1970-01-01T00:00:00Z.
    at: int = Field(sa_column=Column(BigInteger(), nullable=False))
    environment: str = Field(sa_column=Column(String(128), nullable=False))
    #: The config-repo commit the data plane was running.
    commit: str = Field(sa_column=Column(String(64), nullable=False))
    #: ``pool/<name>`` or ``route/<name>``.
    scope: str = Field(sa_column=Column(String(300), nullable=False))
    metric: str = Field(sa_column=Column(String(64), nullable=False))
    value: float = Field(sa_column=Column(Float(), nullable=False))


_table = SQLModel.metadata.tables["dataplane_metrics"]
_c = _table.c


def _micros(at: datetime) -> int:
    return (utc(at) - _EPOCH) // _MICROSECOND


def _datetime(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


class SqlMetricsStore:
    """Samples in the intent log's database (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # Writes open with BEGIN IMMEDIATE on SQLite when the engine comes from
        # orchestrator.sql_store (its "begin" listener reads this option).
        self._writer = engine.execution_options(apx_write=True)

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> SqlMetricsStore:
        """The store on the database at ``url`` (SQLite tuned as the intent log is), migrated first."""
        # Imported here, not at the top: sql_store imports this module (see the docstring).
        from orchestrator import sql_store

        if migrate:
            sql_store.migrate(url)
        return cls(create_engine(url))

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> SqlMetricsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqlMetricsStore({self._engine.url.render_as_string(hide_password=True)!r})"

    def publish(self, samples: Sequence[Sample]) -> None:
        rows = [
            {
                "at": _micros(s.at),
                "environment": s.environment,
                "commit": s.commit,
                "scope": s.scope,
                "metric": s.metric,
                "value": float(s.value),
            }
            for s in samples
        ]
        if not rows:
            return
        with self._transaction(f"publish {len(rows)} metric samples", write=True) as conn:
            for start in range(0, len(rows), _INSERT_CHUNK):
                conn.execute(_table.insert(), rows[start : start + _INSERT_CHUNK])

    def read(
        self,
        *,
        environment: str,
        since: datetime,
        until: datetime,
        scope: str | None = None,
        metric: str | None = None,
    ) -> list[Sample]:
        stmt = select(_c.at, _c.environment, _c.commit, _c.scope, _c.metric, _c.value).where(
            _c.environment == environment, _c.at >= _micros(since), _c.at < _micros(until)
        )
        if scope is not None:
            kind = scope.endswith("/")
            stmt = stmt.where(_c.scope.startswith(scope, autoescape=True) if kind else _c.scope == scope)
        if metric is not None:
            stmt = stmt.where(_c.metric == metric)
        stmt = stmt.order_by(_c.at, _c.scope, _c.metric, _c.id)
        with self._transaction(f"read the metrics of {environment}") as conn:
            return [_sample(row) for row in conn.execute(stmt)]

    def error_rate(self, environment: str, since: datetime, until: datetime) -> float | None:
        stmt = select(_c.at, _c.environment, _c.commit, _c.scope, _c.metric, _c.value).where(
            _c.environment == environment,
            _c.at >= _micros(since),
            _c.at < _micros(until),
            _c.scope.startswith(POOL, autoescape=True),
            _c.metric.in_([Metric.ERROR_RATE.value, Metric.RPS.value]),
        )
        with self._transaction(f"read the error rate of {environment}") as conn:
            return weighted_error_rate(_sample(row) for row in conn.execute(stmt))

    def prune(self, before: datetime) -> int:
        cutoff = _micros(before)
        pruned = 0
        with self._transaction("list the environments with metrics") as conn:
            environments = list(conn.execute(select(_c.environment).distinct()).scalars())
        for environment in environments:
            # Batches by id through the (environment, at) index: short write transactions.
            batch = select(_c.id).where(_c.environment == environment, _c.at < cutoff).limit(_PRUNE_BATCH)
            while True:
                with self._transaction("prune old metric samples", write=True) as conn:
                    deleted = conn.execute(delete(_table).where(_c.id.in_(batch))).rowcount
                pruned += deleted
                if deleted < _PRUNE_BATCH:
                    break
        return pruned

    def _transaction(self, what: str, *, write: bool = False) -> AbstractContextManager[Connection]:
        return transaction(self._engine, what, write=write)


def _sample(row: Any) -> Sample:
    return Sample(
        at=_datetime(row.at),
        environment=row.environment,
        commit=row.commit,
        scope=row.scope,
        metric=row.metric,
        value=row.value,
    )


if TYPE_CHECKING:
    from orchestrator.dataplane.metrics import MetricsStore

    _store: type[MetricsStore] = SqlMetricsStore
