"""index messages by endpoint and due time

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

Why: webhooks/claim.py leases one endpoint's due messages in due order; without this index
PostgreSQL sorts every pending row of the table when its statistics are stale.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index("ix_messages_endpoint_due", ["endpoint_id", "status", "next_attempt_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_endpoint_due")
