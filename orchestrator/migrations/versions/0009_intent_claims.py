"""Intent claims: which pipeline worker is deciding a queued intent, and until when.

Workers claim the head of an environment's queue with ``FOR UPDATE SKIP LOCKED``
(:meth:`orchestrator.sql_store.SqlIntentStore.claim`); the lease lets another
worker take over from one that died. ``claimed_by`` stays on the row after the
decision, so the log says which worker decided each intent.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("intents") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(128), nullable=True))
        batch.add_column(sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("intents") as batch:
        batch.drop_column("claimed_until")
        batch.drop_column("claimed_by")
