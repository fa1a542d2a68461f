"""events.txid: the feed reads PostgreSQL events in commit-safe order

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05

Why: on PostgreSQL `events.seq` is taken from a sequence before commit, so a consumer of `GET /v1/events`
could see seq 2 (committed) while seq 1 was still uncommitted, store the cursor past it and never see it.
Each event now records the id of the transaction that stored it; the feed orders by (txid, seq) and reads
only rows of transactions older than every running one. Rows stored before this revision get txid 0 (they
are all committed, and come first, in seq order). SQLite leaves the column NULL: it has one writer at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

_NOT_NULL = sa.text("txid IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("txid", sa.BigInteger(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("UPDATE events SET txid = 0 WHERE txid IS NULL")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_txid_seq", ["txid", "seq"], unique=False, postgresql_where=_NOT_NULL,
                              sqlite_where=_NOT_NULL)


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_txid_seq")
        batch_op.drop_column("txid")
