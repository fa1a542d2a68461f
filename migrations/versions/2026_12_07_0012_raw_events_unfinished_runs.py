"""raw_events.unfinished_runs: a request whose processing kills its worker is set aside, not re-run for ever

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

Why: a request whose processing killed the process running it (out of memory, a crash in a C library) stayed
pending, since the attempt counter rolled back with the work. The requeue sweep queued it again every minute: a
Celery worker child died every minute, and the in-process server crash-looped at every start. A run of a row left
pending is now counted in a transaction of its own before it starts and uncounted when it ends in Python; a row
with three counted runs that never ended is failed instead (hub.pipeline.process_raw).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("raw_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unfinished_runs", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("raw_events", schema=None) as batch_op:
        batch_op.drop_column("unfinished_runs")
