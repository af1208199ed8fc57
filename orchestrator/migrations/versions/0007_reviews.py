"""Human review of PRs: reviews bound to a head commit, PR expiry, merge and publication.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("pull_requests") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("merge_commit", sa.String(64), nullable=True))
        batch.add_column(sa.Column("closed_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("publication", sa.JSON(), nullable=True))
    op.create_table(
        "pr_reviews",
        sa.Column("id", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("pr_id", sa.String(128), sa.ForeignKey("pull_requests.id"), nullable=False),
        sa.Column("head", sa.String(64), nullable=False),
        sa.Column("reviewer", sa.String(128), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_pr_reviews_pr_id", "pr_reviews", ["pr_id"])


def downgrade() -> None:
    op.drop_index("ix_pr_reviews_pr_id", "pr_reviews")
    op.drop_table("pr_reviews")
    with op.batch_alter_table("pull_requests") as batch:
        for column in ("publication", "closed_reason", "merge_commit", "expires_at"):
            batch.drop_column(column)
