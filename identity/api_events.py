"""The event feed (contract "Event feed"): every stored event in storage order, with an opaque cursor.

A read-only view of the kernel's events table. It lives here rather than in hub/ because it is part of
the customer-facing read API this package serves; the cursor is the row's `seq`, so it is stable.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import select

from hub.api import AdminDep, HubDep
from hub.errors import InvalidRequest, NotFound
from hub.models import EventRow
from hub.schemas import UnifiedEvent
from identity.api import MAX_LIMIT, decode_cursor, encode_cursor, event_out

__all__ = ["router"]

router = APIRouter(prefix="/v1", dependencies=[AdminDep])


@router.get("/events")
def event_feed(
    hub: HubDep, after: str | None = None, types: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> dict[str, Any]:
    stmt = select(EventRow)
    last = 0
    if after:
        try:
            last = int(decode_cursor(after)["s"])
        except (KeyError, ValueError, TypeError) as exc:
            raise InvalidRequest("invalid cursor", code="invalid_cursor") from exc
        stmt = stmt.where(EventRow.seq > last)
    wanted = [t.strip() for t in (types or "").split(",") if t.strip()]
    if wanted:
        stmt = stmt.where(EventRow.type.in_(wanted))
    with hub.sessions() as session:
        rows = list(session.scalars(stmt.order_by(EventRow.seq).limit(limit)))
    if rows:
        last = rows[-1].seq
    # Always a cursor: a consumer at the end of the feed polls again with it and gets only newer events.
    return {"items": [event_out(r) for r in rows], "next_cursor": encode_cursor({"s": last})}


@router.get("/events/{event_id}")
def get_event(event_id: uuid.UUID, hub: HubDep) -> UnifiedEvent:
    with hub.sessions() as session:
        row = session.scalars(select(EventRow).where(EventRow.id == event_id)).first()
        if row is None:
            raise NotFound(f"no event {event_id}", code="event_not_found")
        return event_out(row)
