"""`GET /v1/quality`: the data-health report (see hub/quality_report.py) over HTTP."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query

from hub.api import AdminDep, HubDep
from hub.quality_report import build_report, quarantined_rows
from hub.schemas import QueryTime

router = APIRouter(prefix="/v1", dependencies=[AdminDep])


@router.get("/quality")
def get_quality(
    hub: HubDep,
    since: QueryTime | None = None,
    source_id: uuid.UUID | None = None,
    quarantine_limit: int = Query(default=0, ge=0, le=1000),
) -> dict[str, Any]:
    """The report for events stored since `since` (default: the last 24 hours); optionally the newest
    `quarantine_limit` quarantined rows under `quarantined_rows`."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    report = build_report(hub, since=since, source_id=source_id)
    if quarantine_limit:  # the report's window (default 24 h), as the CLI lists them: not every row ever kept
        window = datetime.fromisoformat(report["since"])
        report["quarantined_rows"] = quarantined_rows(hub, since=window, source_id=source_id, limit=quarantine_limit)
    return report
