"""Undoing a wrong merge: a new customer takes the named identities and the events that came through them.

An event moves when it carries one of the named identities and none of those the original customer keeps
(an event carrying both is the evidence that linked them, so it stays); a weak line the original keeps
(a landline, a switchboard, a 400 number) is not such evidence, since weak lines never link customers.
Traits learnt from moved events move too. The pair is remembered, so the resolver never merges the two
again (`split_previously`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from hub.errors import InvalidRequest, RetryableError
from hub.ids import new_id
from hub.models import EventRow
from hub.pipeline import database_conflict, reassign_events, store_internal
from hub.retry import backoff_s
from hub.runtime import Hub
from hub.schemas import EventDraft, Identity, utcnow
from identity import sql, store
from identity.models import AccountMemberRow, CustomerRow, IdentityRow, SplitPairRow
from identity.rules import is_weak_line
from identity.views import checked_identity, get_customer

__all__ = ["SPLIT_RETRIES", "split_customer", "split_identities", "split_with_retries"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# Times a split runs again after a transient conflict (0.2 s doubling: 3 s in all), within the request.
SPLIT_RETRIES = 4


def split_with_retries(
    hub: Hub, customer_id: uuid.UUID, identities: list[Identity], reason: str,
    view: Callable[[Session, CustomerRow], T],
) -> T:
    """`split_customer` in a transaction of its own, run again after a deadlock, a serialization failure, a lost
    race or a customer merged meanwhile, as merges are (process_raw's runner retries what `database_conflict`
    names); `view` builds the answer before the commit. Out of retries: 503 `retryable`, never a 500."""
    attempt = 0
    while True:
        try:
            with hub.transaction() as session:
                return view(session, split_customer(hub, session, customer_id, identities, reason))
        except (RetryableError, DBAPIError) as exc:
            if isinstance(exc, DBAPIError) and not database_conflict(exc):
                raise
            if attempt == SPLIT_RETRIES:
                if isinstance(exc, RetryableError):
                    raise
                raise RetryableError(f"database conflict ({type(exc.orig).__name__}) after {SPLIT_RETRIES} retries; "
                                     "send the split again") from exc
            cause = type(exc.orig).__name__ if isinstance(exc, DBAPIError) else exc.message
            log.info("split of customer %s retrying (%d of %d): %s", customer_id, attempt + 1, SPLIT_RETRIES, cause)
            time.sleep(backoff_s(attempt))
            attempt += 1


def split_customer(
    hub: Hub, session: Session, customer_id: uuid.UUID, identities: list[Identity], reason: str
) -> CustomerRow:
    """Split; stores the `customer.split` event and names it as each history entry's evidence."""
    wanted = split_identities(identities)
    original = get_customer(session, customer_id)
    original = store.lock_customers(session, [original.id])[0]
    if not wanted:
        raise InvalidRequest("name at least one identity to split off", code="no_identities")
    rows = list(session.scalars(select(IdentityRow).where(IdentityRow.customer_id == original.id)))
    moving = [r for r in rows if (r.type, r.value) in wanted]
    missing = wanted - {(r.type, r.value) for r in moving}
    if missing:
        raise InvalidRequest("identities not held by this customer", code="identity_not_on_customer",
                             details=[{"type": t, "value": v} for t, v in sorted(missing)])
    keep = {(r.type, r.value) for r in rows if (r.type, r.value) not in wanted}
    if not keep:
        raise InvalidRequest("a split must leave the customer at least one identity", code="split_takes_all")
    now = utcnow()
    new = CustomerRow(id=new_id(), traits={}, created_at=now, updated_at=now)
    session.add(new)
    session.flush()
    for row in moving:
        row.customer_id = new.id
    # A weak line the original keeps (a household landline, a company switchboard) is no evidence that linked
    # the two: weak lines never link customers, so an event carrying one moves with the named identity.
    evidence = {(t, v) for t, v in keep if not is_weak_line(t, v)}
    moved = _events_through(session, [original.id, *store.merged_from(session, original.id)], wanted, evidence)
    reassign_events(session, [e.id for e in moved], new.id)
    _move_traits(original, new, {str(e.id) for e in moved})
    _recompute_activity(session, original)
    _recompute_activity(session, new)
    for account_id in {e.account_id for e in moved if e.account_id is not None}:
        sql.insert_ignore(session, AccountMemberRow, {"account_id": account_id, "customer_id": new.id, "since": now})
    session.add(SplitPairRow(customer_a=original.id, customer_b=new.id, at=now))
    draft = EventDraft(
        type="customer.split", source_event_id=f"split:{new.id}", occurred_at=now,
        properties={"customer_id": str(original.id), "new_customer_id": str(new.id), "reason": reason,
                    "identities": [{"type": t, "value": v} for t, v in sorted(wanted)], "events_moved": len(moved)},
    )
    session.flush()
    store_internal(hub, session, [store.own(session, draft, original.id)], source=store.SOURCE)
    event_id = session.scalars(select(EventRow.id).where(
        EventRow.source == store.SOURCE, EventRow.source_id.is_(None),
        EventRow.source_event_id == draft.source_event_id)).one()
    for row in moving:
        store.record(session, "split", reason, [original.id, new.id], Identity(type=row.type, value=row.value),
                     event_id=event_id, at=now)
    return new


def split_identities(identities: list[Identity]) -> set[tuple[str, str]]:
    """The (type, value) pairs to split off, normalised as ingest does. Every invalid one is named by its path in
    the request body (`identities.1.value`), not as `identity`, so a client sees which item to fix."""
    wanted: set[tuple[str, str]] = set()
    details: list[dict[str, str]] = []
    for n, ident in enumerate(identities):
        try:
            checked = checked_identity(ident.type, ident.value, type_field=f"identities.{n}.type",
                                       value_field=f"identities.{n}.value")
        except InvalidRequest as exc:
            details += exc.details
            continue
        wanted.add((checked.type, checked.value))
    if details:
        raise InvalidRequest(f"invalid identities: {', '.join(d['field'] for d in details)}",
                             code="invalid_identity", details=details)
    return wanted


def _events_through(
    session: Session, customer_ids: list[uuid.UUID], wanted: set[tuple[str, str]], keep: set[tuple[str, str]]
) -> list[EventRow]:
    out = []
    for row in session.scalars(select(EventRow).where(EventRow.customer_id.in_(customer_ids))):
        keys = {(i.get("type"), i.get("value")) for i in row.data.get("identities", []) if isinstance(i, dict)}
        if keys & wanted and not keys & keep:
            out.append(row)
    return out


def _move_traits(original: CustomerRow, new: CustomerRow, event_ids: set[str]) -> None:
    stay: dict[str, Any] = {}
    go: dict[str, Any] = {}
    for name, item in (original.traits or {}).items():
        (go if isinstance(item, dict) and item.get("event_id") in event_ids else stay)[name] = item
    original.traits, new.traits = stay, go


def _recompute_activity(session: Session, customer: CustomerRow) -> None:
    ids = [customer.id, *store.merged_from(session, customer.id)]
    stmt = (
        select(EventRow.occurred_at, EventRow.source)
        .where(EventRow.customer_id.in_(ids), EventRow.source != store.SOURCE)
        .order_by(EventRow.occurred_at.desc()).limit(1)
    )
    latest = session.execute(stmt).first()
    customer.last_activity_at, customer.last_source = (latest[0], latest[1]) if latest else (None, None)
    customer.silent_notified_at = None
