"""`customer.silent` (contract §7): once per silence period, for customers quiet longer than CRMHUB_SILENT_DAYS.

A customer is notified when its last activity is older than the threshold and it has not been notified
since that activity. New activity starts a new period, so the customer can go silent (and be told) again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select

from hub.pipeline import store_internal
from hub.runtime import Hub, get_hub
from hub.schemas import EventDraft, utcnow
from hub.tasks import task
from identity import store
from identity.models import CustomerRow

__all__ = ["SCAN_EVERY_S", "SCAN_TASK", "scan_silent", "scan_silent_task"]

SCAN_TASK = "identity.silence.scan_silent_task"
BATCH = 500
SCAN_EVERY_S = 3600.0  # hourly: silence is counted in days, an hour late is on time


def scan_silent(hub: Hub, now: datetime | None = None) -> int:
    """Emit `customer.silent` for every newly silent customer; returns how many. Idempotent."""
    now = now or utcnow()
    cutoff = now - timedelta(days=hub.settings.silent_days)
    total = 0
    while True:
        with hub.transaction() as session:
            stmt = (
                select(CustomerRow)
                .where(CustomerRow.merged_into.is_(None), CustomerRow.last_activity_at.is_not(None),
                       CustomerRow.last_activity_at < cutoff,
                       or_(CustomerRow.silent_notified_at.is_(None),
                           CustomerRow.silent_notified_at < CustomerRow.last_activity_at))
                .order_by(CustomerRow.id).limit(BATCH)
            )
            if session.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            rows = list(session.scalars(stmt))
            drafts = []
            for row in rows:
                assert row.last_activity_at is not None
                row.silent_notified_at = now
                days = (now - row.last_activity_at).days
                drafts.append(store.own(session, EventDraft(
                    type="customer.silent", source_event_id=f"silent:{row.id}:{row.last_activity_at.isoformat()}",
                    occurred_at=now,
                    properties={"last_activity_at": row.last_activity_at.isoformat(), "last_source": row.last_source,
                                "days_silent": days},
                ), row.id))
            total += store_internal(hub, session, drafts, source=store.SOURCE)
        if len(rows) < BATCH:
            return total


@task(SCAN_TASK, queue="ingest", max_retries=3)
def scan_silent_task() -> int:
    return scan_silent(get_hub())
