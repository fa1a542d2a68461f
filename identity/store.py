"""Database operations of identity/: claims, locks, merges, history and traits. Never commits."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Table, bindparam, case, event as sa_event, func, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from hub.errors import RetryableError
from hub.ids import new_id
from hub.pipeline import BATCH_CACHE, emit
from hub.schemas import EventDraft, Identity, utcnow
from identity.models import (
    AccountMemberRow,
    CustomerRow,
    HistoryCustomerRow,
    HistoryRow,
    IdentityRow,
    SplitPairRow,
)
from identity.pending import add_claims, add_customer, add_shared_line, write_pending
from identity.rules import is_weak_line
from identity.sql import by_type_and_value, claim_many

OWNER_KEY = "identity_owner"
SOURCE = "identity"
ROWS_KEY = "identity_rows"
CUSTOMERS_KEY = "identity_loaded"
DEFERRED_KEY = "identity_deferred"
COUNTS_KEY = "identity_type_counts"
LOCKED_KEY = "identity_locked"  # PostgreSQL: customers this transaction holds FOR UPDATE (batch cache)


@dataclass(slots=True)
class Held:
    """One `identities` row as the resolver reads it: plain values (read with Core, no ORM object per row).

    Views of the same row are shared through the batch's preload, so the resolver's changes (a merge
    moving the row, a line becoming shared, last_seen) are seen by every later event of the batch.
    """

    id: uuid.UUID
    type: str
    value: str
    customer_id: uuid.UUID
    shared: bool
    last_seen: datetime


def rows_for(session: Session, identities: Sequence[Identity]) -> dict[tuple[str, str], list[Held]]:
    """Every row holding each identifier; answered from the batch's preload where it has the key."""
    keys = list(dict.fromkeys((i.type, i.value) for i in identities))
    cache = row_cache(session)
    missing = keys if cache is None else [k for k in keys if k not in cache]
    loaded = _load_rows(session, missing)
    if cache is None:
        return loaded
    cache.update(loaded)
    return {k: list(cache[k]) for k in keys}


_HELD_COLUMNS = (IdentityRow.id, IdentityRow.type, IdentityRow.value, IdentityRow.customer_id, IdentityRow.shared,
                 IdentityRow.last_seen)


_HELD = select(*_HELD_COLUMNS)


def _load_rows(session: Session, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[Held]]:
    out: dict[tuple[str, str], list[Held]] = {k: [] for k in keys}
    for i in range(0, len(keys), 400):
        stmt, params = by_type_and_value(_HELD, IdentityRow, keys[i : i + 400])
        for row in session.execute(stmt, params):
            out.setdefault((row.type, row.value), []).append(Held(*row))
    return out


def batch_cache(session: Session) -> dict[str, Any]:
    """The pipeline batch's cache (`events_prepared`), or an empty throwaway dict outside a batch."""
    return session.info.get(BATCH_CACHE, {})  # type: ignore[no-any-return]


def row_cache(session: Session) -> dict[tuple[str, str], list[Held]] | None:
    return batch_cache(session).get(ROWS_KEY)


def preload(session: Session, keys: Iterable[tuple[str, str]]) -> None:
    """Load a whole batch's identifiers and their owners in a few queries (`events_prepared`).

    The customers land in the session's identity map; `rows_for` then answers from the preload and
    `lock_customers` from the identity map. On PostgreSQL the owners are locked here, all at once in id
    order, so an event needs no lock query of its own; an identifier row read a moment before the lock can
    still point at a customer a concurrent worker merged, and using it means a retry, as before.
    """
    batch = session.info.setdefault(BATCH_CACHE, {})
    cache = batch.setdefault(ROWS_KEY, {})
    wanted = [k for k in dict.fromkeys(keys) if k not in cache]
    loaded = _load_rows(session, wanted)
    cache.update(loaded)
    owners = sorted({r.customer_id for rows in loaded.values() for r in rows})
    locked = batch.setdefault(LOCKED_KEY, set())
    _load_owners(session, owners, locked)
    if owners and session.get_bind().dialect.name == "postgresql":
        owners = _reread_after_lock(session, loaded, locked)
        cache.update(loaded)
    batch.setdefault(COUNTS_KEY, {}).update(_count_types(session, owners))


def _reread_after_lock(session: Session, loaded: dict[tuple[str, str], list[Held]], locked: set[uuid.UUID],
                       rounds: int = 3) -> list[uuid.UUID]:
    """Read identifiers of split customers again now that their owners are locked; returns the owners, all locked.

    They were read before the lock, and a split moves identifiers off a customer while holding its lock: rows
    read just before the split committed still name the old owner, and an event would land on the wrong
    customer, or merge it with someone the split separated. Once we hold the lock such a split has committed,
    and recorded its pair, so only the identifiers of customers that were ever split need reading again.
    """
    for _ in range(rounds):
        owners = sorted({r.customer_id for rows in loaded.values() for r in rows})
        split = _ever_split(session, owners)
        held = [key for key, rows in loaded.items() if any(r.customer_id in split for r in rows)]
        if not held:
            break
        fresh = _load_rows(session, held)
        changed = {k: v for k, v in fresh.items() if _owners_of(v) != _owners_of(loaded[k])}
        loaded.update(changed)
        new_owners = sorted({r.customer_id for rows in changed.values() for r in rows} - locked)
        if not new_owners:
            break
        _load_owners(session, new_owners, locked)
    return sorted({r.customer_id for rows in loaded.values() for r in rows})


def _ever_split(session: Session, customer_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    found: set[uuid.UUID] = set()
    for i in range(0, len(customer_ids), 400):
        found.update(session.scalars(_SPLIT_FROM, {"ids": customer_ids[i : i + 400]}))
        found.update(session.scalars(_SPLIT_INTO, {"ids": customer_ids[i : i + 400]}))
    return found


_SPLIT_FROM = select(SplitPairRow.customer_a).where(SplitPairRow.customer_a.in_(bindparam("ids", expanding=True)))
_SPLIT_INTO = select(SplitPairRow.customer_b).where(SplitPairRow.customer_b.in_(bindparam("ids", expanding=True)))


def _owners_of(rows: list[Held]) -> list[tuple[uuid.UUID, uuid.UUID, bool]]:
    return sorted((r.id, r.customer_id, r.shared) for r in rows)


def _load_owners(session: Session, owners: list[uuid.UUID], locked: set[uuid.UUID]) -> None:
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres and owners:
        write_deferred(session)  # the locking re-read replaces loaded state: pending changes go first
        session.flush()
    stmt = _LOCK_OWNERS if postgres else _OWNERS
    for i in range(0, len(owners), 400):
        for customer in session.scalars(stmt, {"ids": owners[i : i + 400]}):
            keep_alive(session, customer)
            if postgres:
                locked.add(customer.id)


# Statements run per batch or per event are built once (building one cost ~110 µs more than running it).
_OWNERS = select(CustomerRow).where(CustomerRow.id.in_(bindparam("ids", expanding=True)))
_LOCK_OWNERS = (_OWNERS.order_by(CustomerRow.id).with_for_update()
                .execution_options(populate_existing=True))


def blank_customer(now: datetime) -> CustomerRow:
    return CustomerRow(id=new_id(), traits={}, created_at=now, updated_at=now, merged_into=None,
                       last_activity_at=None, last_source=None, silent_notified_at=None)


def new_customer(session: Session, now: datetime, row: CustomerRow | None = None) -> CustomerRow:
    """A new customer (a blank one, or `row` as prepared), inserted with the batch (identity.pending)."""
    row = add_customer(session, row if row is not None else blank_customer(now))
    batch = batch_cache(session)
    if COUNTS_KEY in batch:
        batch[COUNTS_KEY][row.id] = {}
    if LOCKED_KEY in batch:  # nobody else can see it before we commit: as good as locked
        batch[LOCKED_KEY].add(row.id)
        keep_alive(session, row)
    return row


def claim(
    session: Session, customer_id: uuid.UUID, idents: Sequence[Identity], source: str, *, shared: bool = False
) -> None:
    """Claim identifiers for `customer_id` (written with the batch, see identity.pending).

    The batch's preload learns the new rows at once, so a later event of the batch matches them without
    reading them back, and exclusive ones count against the customer's per-type limits.
    """
    now = utcnow()
    rows = [{"id": new_id(), "type": i.type, "value": i.value, "customer_id": customer_id, "shared": shared,
             "source": source, "first_seen": now, "last_seen": now} for i in idents]
    add_claims(session, rows)
    if not shared:
        _count_claimed(session, customer_id, [i.type for i in idents if not is_weak_line(i.type, i.value)])
    cache = row_cache(session)
    if cache is None:
        return
    for row in rows:
        key = (row["type"], row["value"])
        if key in cache:  # a key the batch never loaded stays unknown: reading it writes the claim first
            cache[key] = [*cache[key], Held(row["id"], row["type"], row["value"], customer_id, shared, now)]


def share_line(session: Session, type_: str, value: str, rows: list[Held]) -> None:
    """Every holder's row of this line becomes shared (written with the batch). A weak line, so it never
    counted against the per-type limits (`type_counts`)."""
    for row in rows:
        row.shared = True
    add_shared_line(session, type_, value)


def lock_customers(session: Session, ids: Iterable[uuid.UUID]) -> list[CustomerRow]:
    """Lock in id order (no deadlock between two workers locking the same pair); a merged one → retry."""
    wanted = sorted(set(ids))
    if not wanted:
        return []
    locked = batch_cache(session).get(LOCKED_KEY)
    if session.get_bind().dialect.name == "postgresql" and not (locked is not None and locked.issuperset(wanted)):
        write_deferred(session)  # the re-read below replaces loaded state: pending changes must be written first
        session.flush()
        stmt = select(CustomerRow).where(CustomerRow.id.in_(wanted)).order_by(CustomerRow.id).with_for_update()
        rows = list(session.scalars(stmt.execution_options(populate_existing=True)))
        if locked is not None:
            locked.update(wanted)
    else:  # locked by this transaction already, or SQLite (one writer at a time): the identity map is current
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


def survivors_of(session: Session, customer_ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, uuid.UUID]:
    """Merged-away id → its survivor, for those of `customer_ids` that were merged (chains are flattened)."""
    ids = {i for i in customer_ids if i is not None}
    if not ids:
        return {}
    stmt = select(CustomerRow.id, CustomerRow.merged_into).where(CustomerRow.id.in_(ids),
                                                                 CustomerRow.merged_into.is_not(None))
    return {old: new for old, new in session.execute(stmt)}


def merged_from(session: Session, customer_id: uuid.UUID) -> list[uuid.UUID]:
    stmt = select(CustomerRow.id).where(CustomerRow.merged_into == customer_id).order_by(CustomerRow.created_at)
    return list(session.scalars(stmt))


def type_counts(session: Session, customer_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, dict[str, int]]:
    """Exclusive (non-shared) strong identifiers per type of each customer: the per-type limits count these.
    Weak lines (landlines, 400/800) never count, shared or not: they never merge anybody (docs/identity.md).

    Within a batch the counts are cached and kept current by claims, merges and shared lines.
    """
    ids = list(dict.fromkeys(customer_ids))
    cache = batch_cache(session).get(COUNTS_KEY)
    if cache is None:
        return _count_types(session, ids)
    cache.update(_count_types(session, [c for c in ids if c not in cache]))
    return {c: dict(cache[c]) for c in ids}


def _count_types(session: Session, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[str, int]]:
    out: dict[uuid.UUID, dict[str, int]] = {c: {} for c in ids}
    for i in range(0, len(ids), 400):
        for cid, type_, phone, n in session.execute(_COUNT_TYPES, {"ids": ids[i : i + 400]}):
            if phone is None or not is_weak_line(type_, phone):
                out[cid][type_] = out[cid].get(type_, 0) + int(n)
    return out


# Phones are counted one by one (a customer holds a few): only Python knows which are weak lines.
_PHONE = case((IdentityRow.type == "phone", IdentityRow.value), else_=None)
_COUNT_TYPES = (
    select(IdentityRow.customer_id, IdentityRow.type, _PHONE, func.count())
    .where(IdentityRow.customer_id.in_(bindparam("ids", expanding=True)), IdentityRow.shared.is_(False))
    .group_by(IdentityRow.customer_id, IdentityRow.type, _PHONE)
)


def _count_claimed(session: Session, customer_id: uuid.UUID, types: Iterable[str]) -> None:
    """Exclusive identifiers were just claimed for `customer_id`: keep the batch's counts current."""
    counts = (batch_cache(session).get(COUNTS_KEY) or {}).get(customer_id)
    if counts is not None:
        for type_ in types:
            counts[type_] = counts.get(type_, 0) + 1


def split_between(session: Session, ids: Sequence[uuid.UUID]) -> bool:
    if len(ids) < 2:
        return False
    return session.scalars(_SPLIT_BETWEEN, {"ids": list(ids)}).first() is not None


_SPLIT_BETWEEN = select(SplitPairRow.customer_a).where(
    SplitPairRow.customer_a.in_(bindparam("ids", expanding=True)),
    SplitPairRow.customer_b.in_(bindparam("ids", expanding=True)),
).limit(1)


def record(
    session: Session,
    action: str,
    reason: str,
    customer_ids: Sequence[uuid.UUID],
    identity: Identity | None = None,
    event_id: uuid.UUID | None = None,
    at: datetime | None = None,
) -> None:
    """Add one history row (and its customer index rows) to the transaction's deferred writes."""
    unique = list(dict.fromkeys(customer_ids))
    pending = _deferred(session)
    history_id = new_id()
    pending.history.append({
        "id": history_id, "action": action, "reason": reason, "at": at or utcnow(),
        "customer_ids": [str(c) for c in unique], "identity_type": identity.type if identity else None,
        "identity_value": identity.value if identity else None, "event_id": event_id,
    })
    pending.history_customers.extend({"history_id": history_id, "customer_id": c} for c in unique)


@dataclass
class _Deferred:
    """Writes buffered until the transaction commits, then sent with one executemany per statement.

    History is append-only; a customer's traits and activity and an identifier's last_seen change on
    nearly every event, and the ORM would flush each of those as its own UPDATE. Nothing in the pipeline
    reads them back from the database within the transaction (the objects in the session are current).
    """

    history: list[dict[str, Any]] = field(default_factory=list)
    history_customers: list[dict[str, Any]] = field(default_factory=list)
    customers: dict[uuid.UUID, CustomerRow] = field(default_factory=dict)
    seen: dict[uuid.UUID, Held] = field(default_factory=dict)
    members: dict[tuple[uuid.UUID, uuid.UUID], datetime] = field(default_factory=dict)


_ACTIVITY_COLUMNS = ("traits", "last_activity_at", "last_source", "updated_at")


def _deferred(session: Session) -> _Deferred:
    pending: _Deferred | None = session.info.get(DEFERRED_KEY)
    if pending is None:
        pending = session.info[DEFERRED_KEY] = _Deferred()
        sa_event.listen(session, "before_commit", write_deferred, once=True)
    return pending


def defer_activity(session: Session, customer: CustomerRow) -> None:
    """The customer's traits/activity columns, as set on the object, are written at commit (not flushed)."""
    for column in _ACTIVITY_COLUMNS:
        set_committed_value(customer, column, getattr(customer, column))
    _deferred(session).customers[customer.id] = customer


def defer_seen(session: Session, row: Held, at: datetime) -> None:
    row.last_seen = at
    _deferred(session).seen[row.id] = row


def defer_membership(session: Session, account_id: uuid.UUID, customer_id: uuid.UUID, since: datetime) -> None:
    """The customer is a member of the account (INSERT … ON CONFLICT DO NOTHING at commit)."""
    _deferred(session).members.setdefault((account_id, customer_id), since)


def move_deferred_memberships(session: Session, loser: uuid.UUID, survivor: uuid.UUID) -> None:
    """Memberships of `loser` not yet written go to `survivor` in memory; the written ones are moved in SQL.

    Writing the whole deferred buffer here instead split a batch's executemany at every merge.
    """
    pending: _Deferred | None = session.info.get(DEFERRED_KEY)
    if pending is None:
        return
    for account_id, customer_id in [key for key in pending.members if key[1] == loser]:
        since = pending.members.pop((account_id, customer_id))
        pending.members.setdefault((account_id, survivor), since)


def keep_alive(session: Session, row: Any) -> None:
    """Hold a loaded row for the rest of the batch (the session's identity map only holds it weakly)."""
    batch_cache(session).setdefault(CUSTOMERS_KEY, []).append(row)


def write_deferred(session: Session) -> None:
    """Send the deferred writes (idempotent; a rolled-back transaction drops them with the session)."""
    write_pending(session)  # the updates below may touch customers inserted in this transaction
    pending: _Deferred | None = session.info.pop(DEFERRED_KEY, None)
    if pending is None:
        return
    conn = session.connection()
    if pending.history:
        conn.execute(insert(HistoryRow.__table__), pending.history)
        conn.execute(insert(HistoryCustomerRow.__table__), pending.history_customers)
    if pending.customers:
        conn.execute(_update_by_id(CustomerRow.__table__, _ACTIVITY_COLUMNS), [
            {"_id": c.id, **{k: getattr(c, k) for k in _ACTIVITY_COLUMNS}} for c in pending.customers.values()
        ])
    if pending.seen:
        conn.execute(_update_by_id(IdentityRow.__table__, ("last_seen",)),
                     [{"_id": r.id, "last_seen": r.last_seen} for r in pending.seen.values()])
    if pending.members:
        claim_many(session, AccountMemberRow, [{"account_id": a, "customer_id": c, "since": since}
                                               for (a, c), since in pending.members.items()])


@lru_cache(maxsize=8)
def _update_by_id(table: Table, columns: tuple[str, ...]) -> Any:
    return update(table).where(table.c.id == bindparam("_id")).values({c: bindparam(c) for c in columns})


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
    at_text, event_text = at.isoformat(), (str(event_id) if event_id else None)  # once, not per trait
    for name, value in traits.items():
        if _empty(value):
            continue
        known = current.get(name)
        known_at = _at(known.get("at")) if isinstance(known, dict) else None
        if known_at is None or known_at <= at:
            current[name] = {"value": value, "source": source, "at": at_text, "event_id": event_text}
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


def history_for(session: Session, customer_ids: Sequence[uuid.UUID], limit: int = 500) -> list[HistoryRow]:
    write_deferred(session)
    sub = select(HistoryCustomerRow.history_id).where(HistoryCustomerRow.customer_id.in_(customer_ids))
    stmt = select(HistoryRow).where(HistoryRow.id.in_(sub)).order_by(HistoryRow.at.desc(), HistoryRow.id.desc())
    return list(session.scalars(stmt.limit(limit)))
