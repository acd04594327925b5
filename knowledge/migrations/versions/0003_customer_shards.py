"""customer shards: several workers on one database

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 02:30:00

Adds ``shard`` to the three work queues (inbound events, due touchpoints, outbox), fills it for the rows already
there with the same hash the application uses (knowledge/shards.py), and indexes each queue by shard.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the shard of a customer id in SQL, as knowledge.shards.shard_of computes it (a copy: a migration is frozen)
_SHARD = "(('x' || substr(md5(coalesce(customer_id, '')), 1, 2))::bit(8)::int % 64)"
_QUEUES = (("inboundevent", "ix_inbound_shard", "received_at"), ("duetouchpoint", "ix_due_shard", "due_at"),
           ("outbox", "ix_outbox_shard", "not_before"))


def upgrade() -> None:
    for table, index, at in _QUEUES:
        op.add_column(table, sa.Column('shard', sa.Integer(), nullable=True))
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"UPDATE {table} SET shard = {_SHARD} WHERE status = 'pending'")
            op.create_index(index, table, ['shard', 'status', at], unique=False)


def downgrade() -> None:
    for table, index, _ in _QUEUES:
        if op.get_bind().dialect.name == "postgresql":
            op.drop_index(index, table_name=table)
        op.drop_column(table, 'shard')
