"""Canary watches: changes whose error rate apx compares with before, to roll back a regression.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "canary_watches",
        sa.Column("intent_id", sa.String(64), sa.ForeignKey("intents.id"), primary_key=True),
        sa.Column("environment", sa.String(128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_canary_watches_status", "canary_watches", ["status"])


def downgrade() -> None:
    op.drop_index("ix_canary_watches_status", "canary_watches")
    op.drop_table("canary_watches")
