"""Alembic migrations of the intent log's schema, shipped inside the package.

They are applied by :func:`orchestrator.sql_store.migrate` (no ``alembic.ini``
needed); every revision is written by hand with ``op.create_table`` and friends
so the schema a user gets never depends on autogenerate at runtime. Name a new
revision ``versions/NNNN_what.py`` with ``revision = "NNNN"``: the file name is
how ``migrate`` knows the head without importing Alembic.
"""
