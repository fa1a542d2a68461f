"""Health numbers ops can trust: per endpoint (from attempts) and per source (from the kernel's tables, read-only).

Endpoint status rule (documented in docs/webhooks.md):
- `disabled`: the endpoint is disabled (by an operator, a 410, or a long failure streak);
- `failing`: 5 or more consecutive failed attempts, or attempts in the last hour and none succeeded;
- `degraded`: the last attempt failed, or fewer than 95 % of the last hour's attempts succeeded;
- `healthy`: otherwise (including an endpoint with no traffic yet).
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.models import RAW_PENDING, InboundRejection, QuarantineRow, RawEvent, SourceCursor, SourceRow
from hub.pull import HEALTH_KEY as PULL_HEALTH_KEY
from hub.schemas import utcnow
from webhooks.models import MSG_FAILED, MSG_PENDING, AttemptRow, EndpointRow, MessageRow

FAILING_STREAK = 5
DEGRADED_BELOW = 0.95
WINDOW = timedelta(hours=1)
HANDSHAKE = "handshake"  # inbound_rejections code of an answered verification request (Douyin, WeCom GET)
_KINDS = ("duplicate", "auth", "other", HANDSHAKE)
STATUS_ORDER = {"failing": 0, "disabled": 1, "degraded": 2, "healthy": 3}
PULL_FAILING_STREAK = 3


def _percentile(values: list[float], q: float) -> float | None:
    """Nearest rank: the smallest latency that at least `q` of the attempts did not exceed, so "p95 = X ms" means
    95 % took X ms or less. Rounding an index (half to even) gave 29 for 1..31 ms (only 29 of 31 within it)."""
    if not values:
        return None
    values = sorted(values)
    index = max(0, math.ceil(round(q * len(values), 9)) - 1)  # round: 0.95 * 60 is 56.99999999999999
    return round(values[index], 3)


def rate_percent(rate: float) -> str:
    """A share as the CLI and /ops show it: one decimal, and never 100.0 % unless every attempt succeeded (/ops
    rounded 0.995 to "100%" while the CLI said 99.5 %, and both showed 0.9996 as 100 %)."""
    percent = round(rate * 100, 1)
    return f"{min(percent, 99.9) if rate < 1 else percent:.1f}%"


def endpoint_status(enabled: bool, consecutive: int, attempts_1h: int, ok_1h: int) -> str:
    """From counts, not the rounded `success_rate_1h`: 1 success in 30,000 attempts rounds to 0.0 but is not none."""
    if not enabled:
        return "disabled"
    if consecutive >= FAILING_STREAK or (attempts_1h > 0 and ok_1h == 0):
        return "failing"
    if consecutive > 0 or ok_1h < DEGRADED_BELOW * attempts_1h:
        return "degraded"
    return "healthy"


def endpoint_health(session: Session, endpoint: EndpointRow, now: datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    eid = endpoint.id
    recent = session.execute(
        select(AttemptRow.success, AttemptRow.latency_ms)
        .where(AttemptRow.endpoint_id == eid, AttemptRow.at >= now - WINDOW)
    ).all()
    ok = sum(1 for success, _ in recent if success)
    rate = round(ok / len(recent), 4) if recent else None
    latencies = [lat for _, lat in recent if lat is not None]
    last_success = session.scalar(
        select(func.max(AttemptRow.at)).where(AttemptRow.endpoint_id == eid, AttemptRow.success.is_(True)))
    last_failure = session.scalar(
        select(func.max(AttemptRow.at)).where(AttemptRow.endpoint_id == eid, AttemptRow.success.is_(False)))
    streak = select(func.count()).select_from(AttemptRow).where(AttemptRow.endpoint_id == eid,
                                                                AttemptRow.success.is_(False))
    if last_success is not None:
        streak = streak.where(AttemptRow.at > last_success)
    consecutive = int(session.scalar(streak) or 0)
    counts = dict(session.execute(
        select(MessageRow.status, func.count()).where(MessageRow.endpoint_id == eid,
                                                      MessageRow.status.in_([MSG_PENDING, MSG_FAILED]))
        .group_by(MessageRow.status)).all())
    return {
        "status": endpoint_status(endpoint.enabled, consecutive, len(recent), ok),
        "success_rate_1h": rate,
        "latency_p50_ms": _percentile(latencies, 0.5),
        "latency_p95_ms": _percentile(latencies, 0.95),
        "consecutive_failures": consecutive,
        "last_success_at": last_success,
        "last_failure_at": last_failure,
        "pending": int(counts.get(MSG_PENDING, 0)),
        "failed": int(counts.get(MSG_FAILED, 0)),
        "attempts_1h": len(recent),
        "disabled_reason": None if endpoint.enabled else endpoint.disabled_reason,
    }


def _by_source(session: Session, stmt: Any) -> dict[uuid.UUID, Any]:
    return {sid: value for sid, value in session.execute(stmt).all()}


def source_health(session: Session, now: datetime | None = None) -> list[dict[str, Any]]:
    """Per source, last hour, in requests (received = accepted + duplicates + rejected).

    Duplicates are the `duplicate` rows the raw writer logs in inbound_rejections: redelivered requests. Seen
    events inside a new request (what its reply counts as `duplicates`) are `raw_events.events_duplicate`,
    reported per event by the quality report; mixing them in here would break the sum above.
    """
    now = now or utcnow()
    since = now - WINDOW
    # Per source, correlated: each reads a short range of ix_raw_events_source_received, not the whole table.
    accepted = _by_source(session, select(SourceRow.id, select(func.count()).where(
        RawEvent.source_id == SourceRow.id, RawEvent.received_at >= since).scalar_subquery()))
    last_raw = _by_source(session, select(SourceRow.id, select(func.max(RawEvent.received_at)).where(
        RawEvent.source_id == SourceRow.id).scalar_subquery()))
    oldest_pending = _by_source(session, select(RawEvent.source_id, func.min(RawEvent.received_at))
                                .where(RawEvent.status == RAW_PENDING).group_by(RawEvent.source_id))
    # The hour's ids first: grouped directly, SQLite (no statistics) walked ix_quarantine_source_id through the whole
    # table to save a sort, reading each row's created_at, which is stored after its payload of up to 100 kB.
    quarantined = _by_source(session, select(QuarantineRow.source_id, func.count()).where(
        QuarantineRow.id.in_(select(QuarantineRow.id).where(QuarantineRow.created_at >= since)))
        .group_by(QuarantineRow.source_id))
    # Every logged request counts as received, refused ones included: a source whose platform only ever fails
    # the signature check must still show when it last called. Not limited to the hour, like `last_raw`; one
    # correlated max per source reads the end of ix_inbound_rejections_source_at, not the whole log.
    last_logged = _by_source(session, select(
        SourceRow.id,
        select(func.max(InboundRejection.at)).where(InboundRejection.source_id == SourceRow.id).scalar_subquery(),
    ))
    pulls = _by_source(session, select(SourceCursor.source_id, SourceCursor.value)
                       .where(SourceCursor.key == PULL_HEALTH_KEY))
    rejections: dict[uuid.UUID, dict[str, int]] = {}
    # Joined from sources, so each source reads its hour from ix_inbound_rejections_source_at: filtered on `at` alone,
    # the index could not be ranged and every duplicate and refusal ever logged was read.
    for sid, code, status_code, n in session.execute(
        select(SourceRow.id, InboundRejection.code, InboundRejection.status_code, func.count())
        .join(InboundRejection, (InboundRejection.source_id == SourceRow.id) & (InboundRejection.at >= since))
        .group_by(SourceRow.id, InboundRejection.code, InboundRejection.status_code)
    ).all():
        bucket = rejections.setdefault(sid, dict.fromkeys(_KINDS, 0))
        kind = code if code in ("duplicate", HANDSHAKE) else "auth" if status_code == 401 else "other"
        bucket[kind] += int(n)
    items = []
    for source in session.scalars(select(SourceRow).order_by(SourceRow.created_at)).all():
        sid = source.id
        rej = rejections.get(sid, dict.fromkeys(_KINDS, 0))
        n_accepted = int(accepted.get(sid, 0))
        lasts = [t for t in (last_raw.get(sid), last_logged.get(sid)) if t is not None]
        pending_since = oldest_pending.get(sid)
        items.append({
            "source_id": sid, "connector": source.connector, "name": source.name, "enabled": source.enabled,
            "received_1h": n_accepted + sum(rej.values()),
            "accepted_1h": n_accepted,
            "duplicates_1h": rej["duplicate"],
            "rejected_auth_1h": rej["auth"],
            "rejected_other_1h": rej["other"],
            "handshakes_1h": rej[HANDSHAKE],
            "quarantined_1h": int(quarantined.get(sid, 0)),
            "last_received_at": max(lasts) if lasts else None,
            "processing_lag_s": round(max(0.0, (now - pending_since).total_seconds()), 3) if pending_since else 0.0,
            "pull": pulls.get(sid),  # None unless it pulls; else last_success_at, last_error(_at), consecutive_failures
        })
        items[-1]["status"] = source_status(items[-1])
    return items


def source_status(item: dict[str, Any]) -> str:
    """`failing` when everything in the hour was refused for authentication, processing lags over 5 minutes, or its
    pull failed 3 times running; `degraded` when anything was rejected or quarantined or its last pull failed."""
    if not item["enabled"]:
        return "disabled"
    pull_failures = int((item.get("pull") or {}).get("consecutive_failures") or 0)
    # Every request refused, not merely none accepted: a redelivery (duplicate) or a handshake passed the check.
    only_refused = 0 < item["rejected_auth_1h"] == item["received_1h"]
    if item["processing_lag_s"] > 300 or only_refused or pull_failures >= PULL_FAILING_STREAK:
        return "failing"
    if item["quarantined_1h"] or item["rejected_auth_1h"] or item["rejected_other_1h"] or pull_failures:
        return "degraded"
    return "healthy"
