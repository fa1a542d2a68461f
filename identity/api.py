"""Customers and accounts API (contract §3): lookup, profile, journey, history, split."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from hub.api import AdminDep, HubDep
from hub.cursors import cursor_int, cursor_time, decode_cursor, encode_cursor
from hub.errors import NotFound
from hub.models import EventRow
from hub.schemas import Identity, RequestBody, UnifiedEvent
from identity import store
from identity.split import split_with_retries
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

__all__ = ["events_out", "router"]

router = APIRouter(prefix="/v1", dependencies=[AdminDep])
MAX_LIMIT = 500


class SplitRequest(RequestBody):
    identities: list[Identity] = Field(min_length=1)
    reason: str = "manual split"


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
    return split_with_retries(hub, customer_id, body.identities, body.reason, customer_view)


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
