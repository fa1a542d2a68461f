"""Customers and accounts API (contract §3): lookup, profile, journey, history, split."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from hub.api import AdminDep, HubDep
from hub.errors import InvalidRequest, NotFound
from hub.models import EventRow
from hub.schemas import Identity, RequestBody, UnifiedEvent
from identity import store
from identity.split import split_customer
from identity.views import (
    AccountView,
    CustomerView,
    HistoryEntry,
    account_view,
    customer_view,
    find_account,
    find_customer,
    get_customer,
    history_entry,
    parse_identity,
)

__all__ = ["cursor_int", "decode_cursor", "encode_cursor", "events_out", "invalid_cursor", "router"]

router = APIRouter(prefix="/v1", dependencies=[AdminDep])
MAX_LIMIT = 500


class SplitRequest(RequestBody):
    identities: list[Identity] = Field(min_length=1)
    reason: str = "manual split"


def encode_cursor(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def invalid_cursor(param: str) -> InvalidRequest:
    return InvalidRequest("invalid cursor", code="invalid_cursor",
                          details=[{"field": param, "message": "pass back a next_cursor unchanged"}])


def decode_cursor(cursor: str, param: str = "cursor") -> dict[str, Any]:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(data, dict):
            raise ValueError("not an object")
        return data
    except (ValueError, TypeError) as exc:
        raise invalid_cursor(param) from exc


def cursor_int(data: dict[str, Any], key: str, param: str, default: int | None = None) -> int:
    """A position number from a cursor: an integer the database can compare (0 … 2**63-1), else 422."""
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise invalid_cursor(param)
    return value


def cursor_time(data: dict[str, Any], key: str, param: str) -> datetime:
    """A time from a cursor: ISO text with its offset (as next_cursor carries it), else 422."""
    value = data.get(key)
    try:
        at = datetime.fromisoformat(value) if isinstance(value, str) else None
        if at is None or at.tzinfo is None:
            raise ValueError("not an aware time")
        at.astimezone(UTC)  # a time the database can store; year 1 at +08:00 cannot
    except (ValueError, OverflowError) as exc:
        raise invalid_cursor(param) from exc
    return at


def events_out(session: Session, rows: Sequence[EventRow]) -> list[UnifiedEvent]:
    """Stored events as the API shows them, each naming its customer as it is now.

    A split re-points the rows themselves; a merge leaves them (merging stays cheap) and is resolved here,
    so a journey or a backfill never names a customer that was merged away (one query per page).
    """
    current = store.survivors_of(session, (r.customer_id for r in rows))
    out = []
    for row in rows:
        event = UnifiedEvent.model_validate(row.data)
        event.customer_id = current.get(row.customer_id, row.customer_id) if row.customer_id else None
        event.account_id = row.account_id
        out.append(event)
    return out


@router.get("/customers")
def lookup_customers(hub: HubDep, identity: Annotated[str, Query()]) -> dict[str, list[CustomerView]]:
    ident = parse_identity(identity)
    with hub.sessions() as session:
        row = find_customer(session, ident)
        return {"items": [customer_view(session, row)] if row else []}


@router.get("/customers/{customer_id}")
def get_customer_route(customer_id: uuid.UUID, hub: HubDep) -> CustomerView:
    with hub.sessions() as session:
        return customer_view(session, get_customer(session, customer_id))


@router.get("/customers/{customer_id}/events")
def customer_events(
    customer_id: uuid.UUID, hub: HubDep, limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    with hub.sessions() as session:
        row = get_customer(session, customer_id)
        ids = [row.id, *store.merged_from(session, row.id)]
        stmt = select(EventRow).where(EventRow.customer_id.in_(ids))
        if cursor:
            data = decode_cursor(cursor)
            at, seq = cursor_time(data, "t", "cursor"), cursor_int(data, "s", "cursor")
            stmt = stmt.where(or_(EventRow.occurred_at > at, and_(EventRow.occurred_at == at, EventRow.seq > seq)))
        rows = list(session.scalars(stmt.order_by(EventRow.occurred_at, EventRow.seq).limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        items = events_out(session, rows)
    next_cursor = encode_cursor({"t": rows[-1].occurred_at.isoformat(), "s": rows[-1].seq}) if more else None
    return {"items": items, "next_cursor": next_cursor}


@router.get("/customers/{customer_id}/history")
def customer_history(customer_id: uuid.UUID, hub: HubDep) -> dict[str, list[HistoryEntry]]:
    with hub.sessions() as session:
        row = get_customer(session, customer_id)
        ids = list(dict.fromkeys([customer_id, row.id, *store.merged_from(session, row.id)]))
        return {"items": [history_entry(h) for h in store.history_for(session, ids)]}


@router.post("/customers/{customer_id}/split", status_code=201)
def split_route(customer_id: uuid.UUID, body: SplitRequest, hub: HubDep) -> CustomerView:
    with hub.transaction() as session:
        return customer_view(session, split_customer(hub, session, customer_id, body.identities, body.reason))


@router.get("/accounts")
def lookup_accounts(hub: HubDep, identity: Annotated[str, Query()]) -> dict[str, list[AccountView]]:
    ident = parse_identity(identity)
    with hub.sessions() as session:
        row = find_account(session, ident)
        return {"items": [account_view(session, row)] if row else []}


@router.get("/accounts/{account_id}")
def get_account(account_id: uuid.UUID, hub: HubDep) -> AccountView:
    from identity.models import AccountRow

    with hub.sessions() as session:
        row = session.get(AccountRow, account_id)
        if row is None:
            raise NotFound(f"no account {account_id}", code="account_not_found")
        return account_view(session, row)
