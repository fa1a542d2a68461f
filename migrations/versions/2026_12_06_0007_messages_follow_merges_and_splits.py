"""messages.customer_id names each message's customer as it is now (data only)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

Why: a message's body now takes its customer_id from the message row, which a merge or a split re-points
(webhooks/follow.py). Messages created before that were never re-pointed, so a replay of one whose event a
split moved, or whose customer was merged away, would name the old customer while the event feed names the
current one (helper-32). This points every message at its event's customer, then through merges.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    # A split moved the event rows themselves; merges leave them, and chains of merges are flattened.
    op.execute(sa.text(
        "UPDATE messages SET customer_id = (SELECT e.customer_id FROM events e WHERE e.id = messages.event_id) "
        "WHERE EXISTS (SELECT 1 FROM events e WHERE e.id = messages.event_id AND e.customer_id IS NOT NULL "
        "AND (messages.customer_id IS NULL OR e.customer_id <> messages.customer_id))"))
    op.execute(sa.text(
        "UPDATE messages SET customer_id = (SELECT c.merged_into FROM customers c WHERE c.id = messages.customer_id) "
        "WHERE customer_id IN (SELECT id FROM customers WHERE merged_into IS NOT NULL)"))


def downgrade() -> None:
    pass  # the old ids were stale; nothing to restore
