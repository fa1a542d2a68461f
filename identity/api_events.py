"""The event feed (contract "Event feed"): every stored event in storage order, with an opaque cursor.

A read-only view of the kernel's events table. It lives here rather than in hub/ because it is part of
the customer-facing read API this package serves. The cursor is the last row's `seq` (and on PostgreSQL its
`txid`, see hub.models.EventRow), so it is stable and never skips an event that commits late.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import Select, literal, literal_column, select, tuple_
from sqlalchemy.orm import Session

from hub.api import AdminDep, HubDep
from hub.cursors import cursor_int, decode_cursor, encode_cursor, invalid_cursor
from hub.errors import Conflict, InvalidRequest, NotFound
from hub.models import EventRow
from hub.schemas import UnifiedEvent, unstorable_text
from identity.api import MAX_LIMIT, events_out

__all__ = ["router"]

router = APIRouter(prefix="/v1", dependencies=[AdminDep])


@router.get("/events")
def event_feed(
    hub: HubDep, after: str | None = None, types: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> dict[str, Any]:
    position = _position(after)
    wanted = [t.strip() for t in (types or "").split(",") if t.strip()]
    problem = unstorable_text(types)
    if problem:  # `%00`: PostgreSQL refuses it even in a comparison
        raise InvalidRequest(f"invalid types: {problem}", details=[{"field": "types", "message": problem}])
    with hub.sessions() as session:
        postgres = session.get_bind().dialect.name == "postgresql"
        # Explicit order on both: with a type filter the database may walk the index on type instead.
        stmt = (_after_pg(position) if postgres
                else select(EventRow).where(EventRow.seq > position[1]).order_by(EventRow.seq))
        if wanted:
            stmt = stmt.where(EventRow.type.in_(wanted))
        rows = list(session.scalars(stmt.limit(limit)))
        if postgres and not rows and position[0]:  # such a cursor finds nothing: check only then
            _reached(session, position[0])
        items = events_out(session, rows)
    if rows:
        position = (rows[-1].txid or 0, rows[-1].seq)
    # Always a cursor: a consumer at the end of the feed polls again with it and gets only newer events.
    cursor = {"x": position[0], "s": position[1]} if position[0] else {"s": position[1]}
    return {"items": items, "next_cursor": encode_cursor(cursor)}


def _position(after: str | None) -> tuple[int, int]:
    """(txid, seq) of the last event a consumer has; a cursor without `x` is (0, seq).

    Only a cursor this feed issued: a journey cursor (`t`, `s`) also decodes, and would silently be read as a
    feed position.
    """
    if not after:
        return 0, 0
    cursor = decode_cursor(after, param="after")
    if "s" not in cursor or not cursor.keys() <= _FEED_KEYS:
        raise invalid_cursor("after")
    return cursor_int(cursor, "x", "after", default=0), cursor_int(cursor, "s", "after")


_FEED_KEYS = frozenset({"x", "s"})


def _reached(session: Session, txid: int) -> None:
    """409 for a cursor naming a transaction this database has not reached yet.

    Only a restore (pg_dump onto another server, point-in-time recovery) makes one: transaction ids are the
    server's own, and every event stored before its ids pass this one would sort behind the cursor, unseen
    (docs/operations.md).
    """
    if txid >= session.scalars(select(_XMAX)).one():
        raise Conflict("this cursor was issued before the database was restored or moved; read the feed again "
                       "from the start and skip the event ids you have", code="cursor_ahead_of_database",
                       details=[{"field": "after", "message": "re-read from the start: docs/operations.md"}])


@router.get("/events/{event_id}")
def get_event(event_id: uuid.UUID, hub: HubDep) -> UnifiedEvent:
    with hub.sessions() as session:
        row = session.scalars(select(EventRow).where(EventRow.id == event_id)).first()
        if row is None:
            raise NotFound(f"no event {event_id}", code="event_not_found")
        return events_out(session, [row])[0]


def _after_pg(position: tuple[int, int]) -> Select[tuple[EventRow]]:
    """Events after `position` in (txid, seq) order, stored by transactions older than any still running here.

    Transaction ids are cluster-wide, so the snapshot also lists transactions of other databases; those are
    left out when pg_stat_activity says so (anything unknown counts as ours, which only delays). Every
    transaction of this database below the horizon has ended, so no event can later appear at or before the
    last one returned: the cursor never skips an event that commits late (see EventRow).
    """
    return (select(EventRow)
            .where(tuple_(EventRow.txid, EventRow.seq) > tuple_(literal(position[0]), literal(position[1])),
                   EventRow.txid < _HORIZON)
            .order_by(EventRow.txid, EventRow.seq))


_XMAX = literal_column("txid_snapshot_xmax(txid_current_snapshot())")
_HORIZON = literal_column("""(SELECT coalesce(
    (SELECT min(xid) FROM txid_snapshot_xip(txid_current_snapshot()) AS xid
     WHERE xid % 4294967296 NOT IN (
       SELECT backend_xid::text::bigint FROM pg_stat_activity
       WHERE backend_xid IS NOT NULL AND datid <> (SELECT oid FROM pg_database WHERE datname = current_database()))),
    txid_snapshot_xmax(txid_current_snapshot())))""")
