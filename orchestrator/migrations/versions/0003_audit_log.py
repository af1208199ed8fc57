"""The tamper-evident audit log, and payload digests on intents for retention.

The audit tables refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL) by
trigger: appending is the only change the database accepts.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TABLES = ("audit_entries", "audit_checkpoints")


def upgrade() -> None:
    op.create_table(
        "audit_entries",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("link", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("size", _SEQ, primary_key=True, autoincrement=False),
        sa.Column("checkpoint", sa.Text(), nullable=False),
        sa.Column("frontier", sa.Text(), nullable=False),
    )
    with op.batch_alter_table("intents") as batch:
        batch.add_column(sa.Column("payload_digest", sa.String(80), nullable=True))
        batch.add_column(sa.Column("pruned_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_intents_pruned_at_decided_at", "intents", ["pruned_at", "decided_at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION apx_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'the audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME;
            END $$
            """
        )
        for table in _TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION apx_audit_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION apx_audit_append_only()"
            )
    else:
        for table in _TABLES:
            for operation in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: {operation} on {table} "
                    "refused'); END"
                )


def downgrade() -> None:
    for table in _TABLES:
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION apx_audit_append_only()")
    op.drop_index("ix_intents_pruned_at_decided_at", "intents")
    with op.batch_alter_table("intents") as batch:
        batch.drop_column("pruned_at")
        batch.drop_column("payload_digest")
