"""Indexes for ``apx intents list`` over a large log (issue 4; measured by bench/intent_queries.py).

Every list is newest first (``ORDER BY seq DESC LIMIT n``). A single-column
index finds one filter's matches but not in that order, so PostgreSQL sorts all
of them (or walks the whole table backwards) before it can stop at ``n``;
with ``seq`` as the last column the matches come out in order. The old
single-column indexes are prefixes of the new ones and are dropped. The
filters that had no index at all get one: ``caused_by`` (``--caused-by``, and
``intents show``'s children), ``received_at`` (``--since``/``--until`` without
``--env``), and the targets table by (target, intent id), so ``--target`` reads
the intent ids from the index alone.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

#: (name, table, columns) of the indexes made here, and of those they replace.
_NEW = (
    ("ix_intents_agent_seq", "intents", ["agent", "seq"]),
    ("ix_intents_status_seq", "intents", ["status", "seq"]),
    ("ix_intents_tenant_seq", "intents", ["tenant", "seq"]),
    ("ix_intents_environment_status_seq", "intents", ["environment", "status", "seq"]),
    ("ix_intents_caused_by", "intents", ["caused_by"]),
    ("ix_intents_received_at_seq", "intents", ["received_at", "seq"]),
    ("ix_intent_targets_target_intent_id", "intent_targets", ["target", "intent_id"]),
)
_REPLACED = (
    ("ix_intents_agent", "intents", ["agent"]),
    ("ix_intents_status", "intents", ["status"]),
    ("ix_intents_tenant", "intents", ["tenant"]),
    ("ix_intents_environment_status", "intents", ["environment", "status"]),
    ("ix_intent_targets_target", "intent_targets", ["target"]),
)


def upgrade() -> None:
    for name, table, columns in _NEW:
        op.create_index(name, table, columns)
    for name, table, _ in _REPLACED:
        op.drop_index(name, table_name=table)


def downgrade() -> None:
    for name, table, columns in _REPLACED:
        op.create_index(name, table, columns)
    for name, table, _ in _NEW:
        op.drop_index(name, table_name=table)
