"""BIGINT for the columns that hold BIGINT ids: events/quarantine.raw_event_id, messages.event_seq

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

Why: raw_events.id and events.seq are BIGINT on PostgreSQL, but the columns naming them were INTEGER. Past 2**31
raw requests or events, storing an event, a quarantine row or a delivery failed with "integer out of range": every
later request would fail. SQLite's INTEGER is 64-bit already: nothing changes there.

On PostgreSQL this rewrites `events`, `quarantine` and `messages` under an exclusive lock: 4.6-5.8 s over 500,000
events on the 2-core test machine (the hub migrates at start: docker-compose.yml's api allows 10 minutes). Downgrading narrows them back, which
fails if a value no longer fits.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

COLUMNS = (("events", "raw_event_id", True), ("quarantine", "raw_event_id", True), ("messages", "event_seq", False))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column, nullable in COLUMNS:
        op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer(), existing_nullable=nullable)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column, nullable in COLUMNS:
        op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger(), existing_nullable=nullable)
