"""index attempts by (endpoint_id, success, at)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

Why: endpoint health asks for an endpoint's newest successful attempt, its newest failed one, and how many failures
came after that success; retention (webhooks/retention.py) asks the first two on every run to keep those rows.
With only (endpoint_id, at) each of them walked back over the endpoint's attempts, reading every row to test
`success`: a healthy endpoint whose last failure was 500,000 attempts ago took 231 ms a /health read on SQLite (52 ms on
PostgreSQL), 2 ms (9 ms) with this index, where each is a probe and the count reads only the streak itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.create_index("ix_attempts_endpoint_success_at", ["endpoint_id", "success", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_attempts_endpoint_success_at")
