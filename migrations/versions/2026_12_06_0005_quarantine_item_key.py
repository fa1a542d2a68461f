"""quarantine.item_key: an item set aside once per source, however many requests bring it back

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

Why: a re-import whose batches shifted by a row stores new raw batches holding the same bad rows, and each
was quarantined again (a 3,000-row file with one row inserted at the top doubled its 31 quarantine rows).
Connectors now name an item's stable id; the pipeline skips one already quarantined for the source.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.add_column(sa.Column("item_key", sa.String(length=300), nullable=True))
        batch_op.create_index("ix_quarantine_source_item", ["source_id", "item_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_index("ix_quarantine_source_item")
        batch_op.drop_column("item_key")
