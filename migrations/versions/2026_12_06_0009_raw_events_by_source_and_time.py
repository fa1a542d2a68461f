"""index raw_events by (source_id, received_at)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

Why: source health (/v1/health/sources, /ops) asks per source for the last hour's requests and the last
one received. Without this index both read the whole raw_events table on every page load, which grows with
every request ever stored; with it each source is one short range read at the end of its index.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("raw_events", schema=None) as batch_op:
        batch_op.create_index("ix_raw_events_source_received", ["source_id", "received_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("raw_events", schema=None) as batch_op:
        batch_op.drop_index("ix_raw_events_source_received")
