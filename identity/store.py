"""Database operations of identity/: claims, locks, merges, history and traits. Never commits."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, inspect, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from hub.errors import RetryableError
from hub.pipeline import emit
from hub.schemas import EventDraft, Identity, utcnow
from identity.models import (
    AccountMemberRow,
    CustomerRow,
    HistoryCustomerRow,
    HistoryRow,
    IdentityRow,
    SplitPairRow,
)

OWNER_KEY = "identity_owner"
SOURCE = "identity"


def insert_ignore(session: Session, model: Any, values: dict[str, Any]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING (any unique key); True if the row was inserted."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    key = inspect(model).primary_key[0]
    # RETURNING, not rowcount: the ORM-enabled INSERT reports rowcount 1 even when nothing was inserted.
    stmt = insert(model).values(**values).on_conflict_do_nothing().returning(key)
    return session.execute(stmt).first() is not None


def claim_many(session: Session, model: Any, rows: list[dict[str, Any]]) -> int:
    """Multi-row INSERT … ON CONFLICT DO NOTHING; returns how many rows were inserted."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = model.__table__
    key = table.c[inspect(model).primary_key[0].name]
    # One constant statement run as executemany: compiled once and cached, whatever len(rows) is
    # (a multi-row VALUES clause is a new statement for every row count).
    stmt = insert(table).on_conflict_do_nothing().returning(key)
    return len(session.connection().execute(stmt, rows).all())


def by_type_and_value(model: Any, keys: Sequence[tuple[str, str]]) -> Any:
    """`(type = t AND value IN (…)) OR …`: uses the (type, value) index on SQLite, where a row-value IN scans."""
    grouped: dict[str, list[str]] = {}
    for type_, value in keys:
        grouped.setdefault(type_, []).append(value)
    return or_(*(and_(model.type == t, model.value.in_(values)) for t, values in sorted(grouped.items())))


def rows_for(session: Session, identities: Sequence[Identity]) -> dict[tuple[str, str], list[IdentityRow]]:
    keys = [(i.type, i.value) for i in identities]
    out: dict[tuple[str, str], list[IdentityRow]] = {k: [] for k in keys}
    if keys:
        stmt = select(IdentityRow).where(by_type_and_value(IdentityRow, keys))
        for row in session.scalars(stmt):
            out.setdefault((row.type, row.value), []).append(row)
    return out


def lock_customers(session: Session, ids: Iterable[uuid.UUID]) -> list[CustomerRow]:
    """Lock in id order (no deadlock between two workers locking the same pair); a merged one → retry."""
    wanted = sorted(set(ids))
    if not wanted:
        return []
    if session.get_bind().dialect.name == "postgresql":
        stmt = select(CustomerRow).where(CustomerRow.id.in_(wanted)).order_by(CustomerRow.id).with_for_update()
        rows = list(session.scalars(stmt.execution_options(populate_existing=True)))
    else:  # SQLite has one writer at a time: the identity map (no SQL when the row is loaded) is current
        rows = [r for r in (session.get(CustomerRow, cid) for cid in wanted) if r is not None]
    if len(rows) != len(wanted) or any(r.merged_into is not None for r in rows):
        raise RetryableError("customer merged or removed by a concurrent worker")
    return rows


def surviving(session: Session, customer_id: uuid.UUID) -> CustomerRow | None:
    """The customer itself, or the one it was merged into (merged-away ids keep resolving)."""
    row = session.get(CustomerRow, customer_id)
    for _ in range(32):
        if row is None or row.merged_into is None:
            return row
        row = session.get(CustomerRow, row.merged_into)
    return row


def merged_from(session: Session, customer_id: uuid.UUID) -> list[uuid.UUID]:
    stmt = select(CustomerRow.id).where(CustomerRow.merged_into == customer_id).order_by(CustomerRow.created_at)
    return list(session.scalars(stmt))


def type_counts(session: Session, customer_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, dict[str, int]]:
    ids = list(customer_ids)
    out: dict[uuid.UUID, dict[str, int]] = {c: {} for c in ids}
    if ids:
        stmt = (
            select(IdentityRow.customer_id, IdentityRow.type, func.count())
            .where(IdentityRow.customer_id.in_(ids), IdentityRow.shared.is_(False))
            .group_by(IdentityRow.customer_id, IdentityRow.type)
        )
        for cid, type_, n in session.execute(stmt):
            out[cid][type_] = int(n)
    return out


def split_between(session: Session, ids: Sequence[uuid.UUID]) -> bool:
    if len(ids) < 2:
        return False
    stmt = select(SplitPairRow.customer_a).where(SplitPairRow.customer_a.in_(ids), SplitPairRow.customer_b.in_(ids))
    return session.scalars(stmt.limit(1)).first() is not None


def record(
    session: Session,
    action: str,
    reason: str,
    customer_ids: Sequence[uuid.UUID],
    identity: Identity | None = None,
    event_id: uuid.UUID | None = None,
    at: datetime | None = None,
) -> None:
    unique = list(dict.fromkeys(customer_ids))
    row = HistoryRow(
        id=uuid.uuid4(), action=action, reason=reason, at=at or utcnow(), customer_ids=[str(c) for c in unique],
        identity_type=identity.type if identity else None, identity_value=identity.value if identity else None,
        event_id=event_id,
    )
    session.add(row)
    session.add_all(HistoryCustomerRow(history_id=row.id, customer_id=c) for c in unique)


def own(session: Session, draft: EventDraft, customer_id: uuid.UUID) -> EventDraft:
    """Mark an identity-made event as belonging to `customer_id` (the resolver reads the owner back)."""
    session.info.setdefault(OWNER_KEY, {})[draft.source_event_id] = (customer_id, None)
    return draft


def emit_owned(session: Session, draft: EventDraft, customer_id: uuid.UUID) -> None:
    """Emit (store within the pipeline's transaction) an identity event that belongs to `customer_id`."""
    emit(session, own(session, draft, customer_id), source=SOURCE)


# ---------------------------------------------------------------- traits and activity


def _at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | dict | tuple) and len(value) == 0)


def apply_traits(
    customer: CustomerRow, traits: dict[str, Any], source: str, at: datetime, event_id: uuid.UUID | None
) -> None:
    """Latest non-empty value of each trait wins, kept with the source and time it came from."""
    if not traits:
        return
    current = dict(customer.traits or {})
    changed = False
    for name, value in traits.items():
        if _empty(value):
            continue
        known = current.get(name)
        known_at = _at(known.get("at")) if isinstance(known, dict) else None
        if known_at is None or known_at <= at:
            current[name] = {"value": value, "source": source, "at": at.isoformat(),
                             "event_id": str(event_id) if event_id else None}
            changed = True
    if changed:
        customer.traits = current


def merge_traits(into: CustomerRow, other: CustomerRow) -> None:
    merged = dict(into.traits or {})
    for name, item in (other.traits or {}).items():
        mine = merged.get(name)
        if mine is None or (_at(mine.get("at")) or datetime.min) < (_at(item.get("at")) or datetime.min):
            merged[name] = item
    into.traits = merged


def touch_activity(customer: CustomerRow, at: datetime, source: str) -> None:
    if customer.last_activity_at is None or at > customer.last_activity_at:
        customer.last_activity_at = at
        customer.last_source = source


# ---------------------------------------------------------------- merge


def merge_into(
    session: Session,
    survivor: CustomerRow,
    loser: CustomerRow,
    *,
    reason: str,
    identity: Identity | None,
    event_id: uuid.UUID | None,
) -> None:
    """Fold `loser` into `survivor` (both locked): identities, memberships, traits, activity, history."""
    mine = select(IdentityRow).where(IdentityRow.customer_id == survivor.id)
    held = {(r.type, r.value) for r in session.scalars(mine)}
    for row in session.scalars(select(IdentityRow).where(IdentityRow.customer_id == loser.id)):
        if (row.type, row.value) in held:
            session.delete(row)
        else:
            row.customer_id = survivor.id
    session.flush()
    memberships = select(AccountMemberRow.account_id).where(AccountMemberRow.customer_id == loser.id)
    for account_id in list(session.scalars(memberships)):
        insert_ignore(session, AccountMemberRow, {"account_id": account_id, "customer_id": survivor.id})
    session.execute(delete(AccountMemberRow).where(AccountMemberRow.customer_id == loser.id))
    merge_traits(survivor, loser)
    if loser.last_activity_at is not None:
        touch_activity(survivor, loser.last_activity_at, loser.last_source or "")
    loser.merged_into = survivor.id
    session.execute(update(CustomerRow).where(CustomerRow.merged_into == loser.id).values(merged_into=survivor.id))
    _inherit_splits(session, survivor.id, loser.id)
    session.flush()
    record(session, "merge", reason, [survivor.id, loser.id], identity, event_id)
    draft = EventDraft(
        type="customer.merged", source_event_id=f"merged:{loser.id}", occurred_at=utcnow(),
        properties={
            "surviving_customer_id": str(survivor.id), "merged_customer_ids": [str(loser.id)], "reason": reason,
            "identity": identity.model_dump() if identity else None, "event_id": str(event_id) if event_id else None,
        },
    )
    emit_owned(session, draft, survivor.id)


def history_for(session: Session, customer_ids: Sequence[uuid.UUID], limit: int = 500) -> list[HistoryRow]:
    sub = select(HistoryCustomerRow.history_id).where(HistoryCustomerRow.customer_id.in_(customer_ids))
    stmt = select(HistoryRow).where(HistoryRow.id.in_(sub)).order_by(HistoryRow.at.desc(), HistoryRow.id.desc())
    return list(session.scalars(stmt.limit(limit)))


def _inherit_splits(session: Session, survivor: uuid.UUID, loser: uuid.UUID) -> None:
    """A customer split from the loser stays apart from the survivor too."""
    stmt = select(SplitPairRow).where(or_(SplitPairRow.customer_a == loser, SplitPairRow.customer_b == loser))
    for pair in list(session.scalars(stmt)):
        other = pair.customer_b if pair.customer_a == loser else pair.customer_a
        session.delete(pair)
        if other != survivor:
            insert_ignore(session, SplitPairRow, {"customer_a": survivor, "customer_b": other, "at": pair.at})
