"""drop the redundant events.customer_id index

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04

Why: ix_events_customer_occurred (customer_id, occurred_at) serves every lookup by customer (journey,
split, merges), so ix_events_customer_id only cost each stored event one more insert at a random place
in an index, and the page writes that go with it at commit.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_customer_id")


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_customer_id", ["customer_id"], unique=False)
