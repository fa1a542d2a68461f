"""The resolver's writes to `customers` and `identities` within a transaction, sent in a few statements.

Why: a batch of 1,000 events sent a customer INSERT and a claim INSERT per new contact, and a merge read
both customers' identifiers and flushed its moves one row at a time; each statement pays SQLAlchemy's
per-statement cost, several times what SQLite spends on the row. Buffered, a batch sends one executemany
per kind: new customers, claims, lines that became shared, then merges (set-based, in order).

The rule that keeps this invisible: the buffer is written before anything can read or change those rows
in the database. That is, before any ORM statement on `customers` or `identities`, or one whose tables the
ORM cannot name (`do_orm_execute`: the resolver's own reads, lookups, splits), before a flush (an UPDATE of
a buffered customer would match nothing) and at commit (`store.write_deferred` writes it first). Core
statements on the two tables must call `write_pending` themselves. Within a batch the resolver keeps its
preload current instead of reading back what it buffered.

Claims keep their meaning: INSERT … ON CONFLICT DO NOTHING, and a row not inserted means a concurrent
worker claimed the identifier first. That is found when the buffer is written, not at the claim, and
raises RetryableError as before: the whole transaction is rolled back and retried.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, bindparam, delete, event as sa_event, exists, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import ORMExecuteState, Session

from hub.errors import RetryableError
from identity.models import AccountMemberRow, CustomerRow, IdentityRow
from identity.sql import attach, claim_many, row_values

__all__ = ["add_claims", "add_customer", "add_merge", "add_shared_line", "write_pending"]

PENDING_KEY = "identity_pending"
_LISTENING_KEY = "identity_pending_listening"
_TABLES = frozenset({CustomerRow.__table__, IdentityRow.__table__})


@dataclass
class _Pending:
    customers: list[CustomerRow] = field(default_factory=list)
    claims: dict[tuple[str, str, Any], dict[str, Any]] = field(default_factory=dict)
    shared_lines: dict[tuple[str, str], None] = field(default_factory=dict)  # an ordered set
    merges: list[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=list)  # (loser, survivor), in order


def add_customer(session: Session, row: CustomerRow) -> CustomerRow:
    """Buffer a new customer (every column set) and give it to the session as persistent."""
    _pending(session).customers.append(row)
    return attach(session, row)  # type: ignore[no-any-return]


def add_claims(session: Session, rows: list[dict[str, Any]]) -> None:
    """Buffer `identities` rows to insert with ON CONFLICT DO NOTHING (every column set)."""
    claims = _pending(session).claims
    for row in rows:
        key = (row["type"], row["value"], row["customer_id"])
        if key in claims:
            raise AssertionError(f"{key[0]} claimed twice for one customer in a transaction")  # a resolver bug
        claims[key] = row


def add_shared_line(session: Session, type_: str, value: str) -> None:
    """Every row holding this identifier becomes `shared` (including rows claimed earlier in the buffer)."""
    _pending(session).shared_lines[(type_, value)] = None


def add_merge(session: Session, loser: uuid.UUID, survivor: uuid.UUID) -> None:
    """Move the loser's identifiers (dropping ones the survivor holds too) and memberships to the survivor,
    mark the loser merged into it and re-point customers merged into the loser. The survivor's traits and
    activity stay on its ORM object (the caller's); `merged_into` is written here, in merge order, so a
    customer merged into the loser earlier in the same transaction is re-pointed too (a chain B→A→Z left
    by an ORM flush after these statements named A, a merged-away customer, as B's survivor)."""
    _pending(session).merges.append((loser, survivor))


def write_pending(session: Session) -> None:
    """Write the buffer: customers, claims (they refer to customers), shared lines, merges. Idempotent."""
    pending: _Pending | None = session.info.pop(PENDING_KEY, None)
    if pending is None:
        return
    conn = session.connection()
    if pending.customers:
        conn.execute(insert(CustomerRow.__table__), [row_values(row) for row in pending.customers])
    claims = list(pending.claims.values())
    if claim_many(session, IdentityRow, claims) != len(claims):
        raise RetryableError("an identifier was claimed by a concurrent worker; retrying")
    if pending.shared_lines:
        conn.execute(_SHARE_LINE, [{"line_type": t, "line_value": v} for t, v in pending.shared_lines])
    if pending.merges:
        _write_merges(conn, pending.merges)


def _write_merges(conn: Connection, merges: list[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """One executemany per statement when no customer takes part in two merges; else merge by merge, in
    order (dropping A's duplicates before B→A has moved B's rows into A would miss some)."""
    params = [{"loser": loser, "survivor": survivor} for loser, survivor in merges]
    involved = [c for pair in merges for c in pair]
    groups = [params] if len(set(involved)) == len(involved) else [[p] for p in params]
    for group in groups:
        for stmt in _merge_statements(conn.dialect.name):
            conn.execute(stmt, group)


_IDS = IdentityRow.__table__
_MEMBERS = AccountMemberRow.__table__
_SHARE_LINE = (update(_IDS).where(_IDS.c.type == bindparam("line_type"), _IDS.c.value == bindparam("line_value"))
               .values(shared=True))


@lru_cache(maxsize=4)
def _merge_statements(dialect: str) -> tuple[Any, ...]:
    held = _IDS.alias("held")
    survivor_holds_it = exists().where(held.c.customer_id == bindparam("survivor"), held.c.type == _IDS.c.type,
                                       held.c.value == _IDS.c.value)
    # A line both held: the survivor's row stays, last seen when either of them last used it.
    loser_used_later = (
        select(held.c.last_seen)
        .where(held.c.customer_id == bindparam("loser"), held.c.type == _IDS.c.type, held.c.value == _IDS.c.value,
               held.c.last_seen > _IDS.c.last_seen)
        .scalar_subquery()
    )
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    copy_members = insert_(_MEMBERS).from_select(
        ["account_id", "customer_id", "since"],
        select(_MEMBERS.c.account_id, bindparam("survivor", type_=_MEMBERS.c.customer_id.type), _MEMBERS.c.since)
        .where(_MEMBERS.c.customer_id == bindparam("loser")),
    ).on_conflict_do_nothing()
    customers = CustomerRow.__table__
    return (
        update(_IDS).where(_IDS.c.customer_id == bindparam("survivor"), loser_used_later.is_not(None))
        .values(last_seen=loser_used_later),
        delete(_IDS).where(_IDS.c.customer_id == bindparam("loser"), survivor_holds_it),
        update(_IDS).where(_IDS.c.customer_id == bindparam("loser")).values(customer_id=bindparam("survivor")),
        copy_members,
        delete(_MEMBERS).where(_MEMBERS.c.customer_id == bindparam("loser")),
        update(customers).where(customers.c.id == bindparam("loser")).values(merged_into=bindparam("survivor")),
        update(customers).where(customers.c.merged_into == bindparam("loser"))
        .values(merged_into=bindparam("survivor")),
    )


def _pending(session: Session) -> _Pending:
    pending: _Pending | None = session.info.get(PENDING_KEY)
    if pending is None:
        pending = session.info[PENDING_KEY] = _Pending()
        if not session.info.get(_LISTENING_KEY):
            session.info[_LISTENING_KEY] = True
            sa_event.listen(session, "do_orm_execute", _before_statement)
            sa_event.listen(session, "before_flush", _before_flush)
            sa_event.listen(session, "before_commit", write_pending)
    return pending


def _before_statement(state: ORMExecuteState) -> None:
    """A statement on either table, or one whose tables the ORM cannot name (`select_from`, text), writes first."""
    if PENDING_KEY in state.session.info:
        mappers = state.all_mappers
        if not mappers or any(m.local_table in _TABLES for m in mappers):
            write_pending(state.session)


def _before_flush(session: Session, flush_context: Any, instances: Any) -> None:
    write_pending(session)
