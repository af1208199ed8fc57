"""The order of arrival in ``intent_targets``: ``apx intents list --target`` as one index range.

A target row named its intent by id only, so a resource's newest intents had to
be found by looking all of them up and sorting, or by walking the whole log
newest first (docs/performance.md, "Intent-log queries"). ``intent_seq`` is the
intent's ``seq``, written by ``receive()`` beside the id; the index
(target, intent_seq) gives a resource's intents newest first, from a keyset
cursor on, so ``LIMIT`` stops early. It replaces (target, intent_id), which
only that query used.

The backfill is one UPDATE with a correlated subquery (a point lookup on the
unique ``intents.id`` per row), the same statement on SQLite and PostgreSQL. It
runs before the new index exists, so it maintains no index but the primary key,
and inside the migration's transaction, so no other writer adds rows between
the backfill and ``NOT NULL``: an apx older than this migration then fails to
write a target rather than writing one without its place in the order.
Making the column NOT NULL rebuilds the table on SQLite (batch mode).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None

# As intents.seq: SQLite's INTEGER, PostgreSQL's BIGINT.
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_BACKFILL = """
UPDATE intent_targets
SET intent_seq = (SELECT intents.seq FROM intents WHERE intents.id = intent_targets.intent_id)
"""


def upgrade() -> None:
    # Dropped first, so the SQLite rebuild below does not copy it.
    op.drop_index("ix_intent_targets_target_intent_id", table_name="intent_targets")
    with op.batch_alter_table("intent_targets") as batch:
        batch.add_column(sa.Column("intent_seq", _SEQ, nullable=True))
    op.execute(_BACKFILL)
    with op.batch_alter_table("intent_targets") as batch:
        batch.alter_column("intent_seq", existing_type=_SEQ, nullable=False)
    op.create_index("ix_intent_targets_target_intent_seq", "intent_targets", ["target", "intent_seq"])


def downgrade() -> None:
    op.drop_index("ix_intent_targets_target_intent_seq", table_name="intent_targets")
    with op.batch_alter_table("intent_targets") as batch:
        batch.drop_column("intent_seq")
    op.create_index("ix_intent_targets_target_intent_id", "intent_targets", ["target", "intent_id"])
