"""Alembic's environment for the intent log.

:func:`orchestrator.sql_store.migrate` runs it with an open connection in
``config.attributes["connection"]``, already inside the write transaction that
holds the migration lock, so Alembic neither connects nor commits here. A
developer can also run it with a ``sqlalchemy.url`` main option (or offline,
``--sql``) to see or compare the schema; ``target_metadata`` is the models in
:mod:`orchestrator.sql_store`, which a test compares with the migrations.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool
from sqlmodel import SQLModel

import orchestrator.sql_store  # noqa: F401  (registers the tables on SQLModel.metadata)

target_metadata = SQLModel.metadata


def run_offline() -> None:
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url, or run through orchestrator.sql_store.migrate()")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
