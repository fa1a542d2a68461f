"""The data-health report (`crmhub quality report`, `GET /v1/quality`, daily `quality.report` event).

Why computed from stored rows: events carry their quality issues and the quarantine table keeps every rejected
input with its reason, so the report needs no counters of its own and is the same wherever it is asked for.
It scans the events stored in the window (default: the last 24 hours) in chunks.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select

from hub.models import EventRow, QuarantineRow, RawEvent
from hub.runtime import Hub, get_hub
from hub.schemas import EventDraft, utcnow
from hub.tasks import task

DAILY_TASK = "hub.quality_report.daily"
DEFAULT_WINDOW = timedelta(days=1)
ABNORMAL_CODES = frozenset({"invisible_chars_removed", "formula_residue"})
INVALID_CODES = ("invalid_phone", "invalid_email", "invalid_uscc", "placeholder")
_SCAN_CHUNK = 1000


def build_report(hub: Hub, *, since: datetime | None = None, until: datetime | None = None,
                 source_id: Any = None) -> dict[str, Any]:
    """Duplicate rate, empty-value rate per field, abnormal-character rate, quarantine and invalid-id counts,
    over `[since, until)` (`until` None: up to now)."""
    since = since or utcnow() - DEFAULT_WINDOW
    events = 0
    abnormal = 0
    codes: Counter[str] = Counter()
    records = 0
    present: Counter[str] = Counter()
    fields: set[str] = set()
    with hub.sessions() as session:
        stmt = select(EventRow.data).where(EventRow.stored_at >= since)
        if until is not None:
            stmt = stmt.where(EventRow.stored_at < until)
        if source_id is not None:
            stmt = stmt.where(EventRow.source_id == source_id)
        for data in session.scalars(stmt.execution_options(yield_per=_SCAN_CHUNK)):
            events += 1
            found = {i.get("code") for i in (data.get("quality") or {}).get("issues", []) if isinstance(i, dict)}
            codes.update(c for c in found if isinstance(c, str))
            abnormal += bool(found & ABNORMAL_CODES)
            properties = data.get("properties") or {}
            record = properties.get("record")
            if data.get("type") == "record.imported" and isinstance(record, dict):
                records += 1
                fields.update(record)
                mapped = properties.get("fields")  # also the file's fields that are empty in this row
                if isinstance(mapped, list):
                    fields.update(f for f in mapped if isinstance(f, str))
                present.update(record.keys())
        duplicates, received = _duplicates(session, since, until, source_id)
        quarantine = _quarantine_counts(session, since, until, source_id)
        rejected = _quarantined_issue_codes(session, since, until, source_id)
    return {
        "since": since.isoformat(),
        "until": None if until is None else until.isoformat(),
        "generated_at": utcnow().isoformat(),
        "events": events,
        "duplicate_rate": _rate(duplicates, received),
        "duplicates": duplicates,
        "empty_value_rate": {f: _rate(records - present[f], records) for f in sorted(fields)},
        "records": records,
        "abnormal_char_rate": _rate(abnormal, events),
        "abnormal_char_events": abnormal,
        "issues": dict(sorted(codes.items())),
        # Bad identifiers count wherever they were seen: a row quarantined for having no valid phone has one too.
        "invalid_identifiers": {code: codes.get(code, 0) + rejected.get(code, 0) for code in INVALID_CODES},
        "quarantine": quarantine,
        "quarantined": sum(quarantine.values()),
    }


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _duplicates(session: Any, since: datetime, until: datetime | None, source_id: Any) -> tuple[int, int]:
    stmt = select(func.coalesce(func.sum(RawEvent.events_duplicate), 0),
                  func.coalesce(func.sum(RawEvent.events_stored + RawEvent.events_duplicate), 0))
    stmt = stmt.where(RawEvent.received_at >= since)
    if until is not None:
        stmt = stmt.where(RawEvent.received_at < until)
    if source_id is not None:
        stmt = stmt.where(RawEvent.source_id == source_id)
    duplicates, received = session.execute(stmt).one()
    return int(duplicates), int(received)


def _quarantined_since(stmt: Any, since: datetime, until: datetime | None, source_id: Any) -> Any:
    stmt = stmt.where(QuarantineRow.created_at >= since)
    if until is not None:
        stmt = stmt.where(QuarantineRow.created_at < until)
    return stmt if source_id is None else stmt.where(QuarantineRow.source_id == source_id)


def _quarantine_counts(session: Any, since: datetime, until: datetime | None, source_id: Any) -> dict[str, int]:
    stmt = _quarantined_since(select(QuarantineRow.reason, func.count()), since, until, source_id)
    return {reason: int(n) for reason, n in session.execute(stmt.group_by(QuarantineRow.reason).order_by(
        QuarantineRow.reason))}


def _quarantined_issue_codes(session: Any, since: datetime, until: datetime | None, source_id: Any) -> Counter[str]:
    """Issue codes of quarantined inputs that kept their issues (import rows do: `payload.item.issues`)."""
    stmt = _quarantined_since(select(QuarantineRow.payload), since, until, source_id)
    codes: Counter[str] = Counter()
    for payload in session.scalars(stmt.execution_options(yield_per=_SCAN_CHUNK)):
        item = payload.get("item") if isinstance(payload, dict) else None
        issues = item.get("issues") if isinstance(item, dict) else None
        found = {i.get("code") for i in issues or () if isinstance(i, dict)}
        codes.update(c for c in found if isinstance(c, str))
    return codes


def quarantined_rows(hub: Hub, *, since: datetime | None = None, source_id: Any = None,
                     limit: int | None = None) -> list[dict[str, Any]]:
    """Quarantined inputs, newest first, flattened for listing and export (import rows show their cells)."""
    stmt = select(QuarantineRow).order_by(QuarantineRow.created_at.desc())
    if since is not None:
        stmt = stmt.where(QuarantineRow.created_at >= since)
    if source_id is not None:
        stmt = stmt.where(QuarantineRow.source_id == source_id)
    if limit is not None:
        stmt = stmt.limit(limit)
    out = []
    with hub.sessions() as session:
        for row in session.scalars(stmt):
            item = (row.payload or {}).get("item") if isinstance(row.payload, dict) else None
            item = item if isinstance(item, dict) else {}
            out.append({"id": str(row.id), "created_at": row.created_at.isoformat(), "reason": row.reason,
                        "detail": row.detail or "", "file": item.get("file", ""), "row": item.get("row", ""),
                        "values": item.get("values", {})})
    return out


@task(DAILY_TASK, queue="ingest")
def daily() -> int:
    """Store the report on the previous UTC day as a `quality.report` event, once per UTC day, so endpoints
    receive it.

    Run hourly (`QUALITY_REPORT_CHECK_S`), not every 24 h: a schedule's clock starts with the process, so a
    hub restarted more often than daily never reached its first run. The first run of a day builds and
    stores the report; the rest find it stored and stop after one indexed read. The window is that whole
    day, not the 24 hours before the run: those windows overlapped or left gaps as the run's minute moved
    (a restart, downtime), so the daily numbers did not add up to what the database holds.
    """
    from hub.pipeline import store_internal

    hub = get_hub()
    today = utcnow().date()
    event_id = f"quality.report:{today.isoformat()}"
    with hub.sessions() as session:
        if _stored(session, event_id):
            return 0
    until = datetime.combine(today, time(0), tzinfo=UTC)
    report = build_report(hub, since=until - DEFAULT_WINDOW, until=until)
    draft = EventDraft(type="quality.report", source_event_id=event_id, occurred_at=utcnow(), properties=report,
                       about_a_person=False)
    with hub.transaction() as session:
        # Hub-made events have no source_id, and PostgreSQL's unique (source_id, source_event_id) lets NULLs
        # repeat: two overlapping runs (two beats, a redelivered task) each stored the day's report, and every
        # endpoint got it twice under two webhook-ids. So the check is repeated here, under a lock held to commit.
        _lock_day(session, event_id)
        if _stored(session, event_id):
            return 0
        return store_internal(hub, session, [draft], source="hub")


def _stored(session: Any, event_id: str) -> bool:
    return session.scalar(select(EventRow.seq).where(EventRow.source_id.is_(None), EventRow.source == "hub",
                                                     EventRow.source_event_id == event_id)) is not None


def _lock_day(session: Any, event_id: str) -> None:
    """PostgreSQL: a transaction advisory lock per report day. SQLite needs none: one writer at a time, and a
    transaction whose read went stale cannot write (SQLITE_BUSY_SNAPSHOT)."""
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(event_id.encode()).digest()[:8], "big", signed=True)
        session.execute(select(func.pg_advisory_xact_lock(key)))
