"""The data plane's metric samples (``orchestrator.dataplane.sql``).

Append-mostly and pruned by age; ``at`` is microseconds since the Unix epoch
(UTC). One index, (environment, at), serves the reads and the pruning.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "dataplane_metrics",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("environment", sa.String(128), nullable=False),
        sa.Column("commit", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(300), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
    )
    op.create_index("ix_dataplane_metrics_environment_at", "dataplane_metrics", ["environment", "at"])


def downgrade() -> None:
    op.drop_table("dataplane_metrics")
