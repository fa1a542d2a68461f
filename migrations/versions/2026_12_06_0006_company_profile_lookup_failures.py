"""company_profiles.lookup_failures: a lookup that failed transiently is retried, with a backoff

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

Why: a registry outage used the lookup task's quick retries (about 6 s) and then nothing retried the lookup,
so the company's profile stayed empty until another event asked for it more than 10 minutes later. The
sweep now retries profiles whose last lookup failed transiently; this counts those failures.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("company_profiles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lookup_failures", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("company_profiles", schema=None) as batch_op:
        batch_op.drop_column("lookup_failures")
