"""events.txid: no PostgreSQL event is left without one (data and a column default)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

Why: the feed compares (txid, seq) with the cursor, so a row whose txid is NULL never appears in
`GET /v1/events`. The pipeline sets txid as it inserts, but a row stored any other way (a process still
running code from before 0004 during a rolling deploy, a manual insert, another tool) had none. Such rows get
this migration's transaction id: no consumer has seen them, and every cursor issued so far is below it, so
each consumer gets them once (txid 0 would put them behind every cursor that carries `x`). From now on the
column defaults to `txid_current()`, the same value the pipeline inserts. SQLite leaves the column NULL.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("UPDATE events SET txid = txid_current() WHERE txid IS NULL")
    op.execute("ALTER TABLE events ALTER COLUMN txid SET DEFAULT txid_current()")


def downgrade() -> None:
    # The txids filled in stay: NULL would only hide those rows from the feed again.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE events ALTER COLUMN txid DROP DEFAULT")
