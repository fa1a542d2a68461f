"""Retention of the delivery log: `attempts` older than CRMHUB_ATTEMPTS_RETENTION_DAYS, per endpoint.

What is kept whatever its age, so that an endpoint's health answers the same before and after a prune
(webhooks/health.py reads nothing else):
- its newest successful attempt and its newest failed one: `last_success_at` and `last_failure_at`;
- every attempt since its newest success: `consecutive_failures` counts them. A streak ends with a success, or
  after CRMHUB_ENDPOINT_DISABLE_AFTER_DAYS when the endpoint is disabled, so this holds days of attempts, not years.
Messages are not pruned: they carry the webhook-id receivers dedupe on and are what a replay re-sends; each keeps its
last attempt's status code and error (`last_status_code`, `last_error`) after that attempt is gone.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select

from hub.retention import Pruner, cutoff, run_pruning
from hub.runtime import Hub
from hub.tasks import task
from webhooks.models import AttemptRow, EndpointRow

PRUNE_TASK = "webhooks.retention.prune_attempts"


@task(PRUNE_TASK, queue="deliver", max_retries=3)
def prune_attempts_task() -> int:
    return run_pruning(PRUNE_TASK, prune_attempts)


def prune_attempts(hub: Hub, pruner: Pruner, now: datetime | None = None) -> int:
    before = cutoff(hub.settings.attempts_retention_days, now)
    if before is None:
        return 0
    with hub.sessions() as session:
        endpoints = list(session.scalars(select(EndpointRow.id).order_by(EndpointRow.id)))
    deleted = 0
    for endpoint_id in endpoints:
        success_id, success_at = _newest(hub, endpoint_id, success=True)
        if success_at is None:  # never delivered: every attempt is the current streak
            continue
        failure_id, _ = _newest(hub, endpoint_id, success=False)
        deleted += pruner.delete_before(AttemptRow.__table__, AttemptRow.at, min(before, success_at),
                                        AttemptRow.endpoint_id == endpoint_id,
                                        keep={i for i in (success_id, failure_id) if i is not None})
        if pruner.exhausted:
            break
    return deleted


def _newest(hub: Hub, endpoint_id: uuid.UUID, *, success: bool) -> tuple[int | None, datetime | None]:
    """The endpoint's newest attempt with that outcome. As max(at), then the row at it: two probes of
    ix_attempts_endpoint_success_at, where `ORDER BY at DESC LIMIT 1` let PostgreSQL walk ix_attempts_endpoint_at back
    through the other outcome's rows whenever its statistics said they were few."""
    same = (AttemptRow.endpoint_id == endpoint_id, AttemptRow.success.is_(success))
    with hub.sessions() as session:
        newest = session.scalar(select(func.max(AttemptRow.at)).where(*same))
        if newest is None:
            return None, None
        return session.scalar(select(AttemptRow.id).where(*same, AttemptRow.at == newest).limit(1)), newest
