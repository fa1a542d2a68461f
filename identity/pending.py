"""New customers and claimed identifiers of a transaction, written with one executemany each.

Why: a batch of 1,000 new contacts sent 1,000 customer INSERTs and as many claim INSERTs, each paying
SQLAlchemy's per-statement cost, several times what SQLite spends on the row. Buffered, they cost two
statements per batch.

The rule that keeps this invisible: the buffer is written before anything can read or change those rows
in the database. That is, before any ORM statement on `customers` or `identities` (`do_orm_execute`:
the resolver's own reads, merges, lookups), before a flush (an UPDATE of a buffered customer would match
nothing) and at commit (`store.write_deferred` writes it first). Core statements on the two tables must
call `write_inserts` themselves. Within a batch the resolver already knows what it claimed: it puts the
new rows in the batch's preload instead of reading them back.

Claims keep their meaning: INSERT … ON CONFLICT DO NOTHING, and a row not inserted means a concurrent
worker claimed the identifier first. That is found when the buffer is written, not at the claim, and
raises RetryableError as before: the whole transaction is rolled back and retried.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event as sa_event, insert
from sqlalchemy.orm import ORMExecuteState, Session

from hub.errors import RetryableError
from identity.models import CustomerRow, IdentityRow
from identity.sql import attach, claim_many, row_values

__all__ = ["add_claims", "add_customer", "write_inserts"]

INSERTS_KEY = "identity_inserts"
_LISTENING_KEY = "identity_inserts_listening"
_TABLES = frozenset({CustomerRow.__table__, IdentityRow.__table__})
_CUSTOMER_INSERT = insert(CustomerRow.__table__)


@dataclass
class _Inserts:
    customers: list[CustomerRow] = field(default_factory=list)
    claims: dict[tuple[str, str, Any], dict[str, Any]] = field(default_factory=dict)


def add_customer(session: Session, row: CustomerRow) -> CustomerRow:
    """Buffer a new customer (every column set) and give it to the session as persistent."""
    _inserts(session).customers.append(row)
    return attach(session, row)  # type: ignore[no-any-return]


def add_claims(session: Session, rows: list[dict[str, Any]]) -> None:
    """Buffer `identities` rows to insert with ON CONFLICT DO NOTHING (every column set)."""
    claims = _inserts(session).claims
    for row in rows:
        key = (row["type"], row["value"], row["customer_id"])
        if key in claims:
            raise AssertionError(f"{key[0]} claimed twice for one customer in a transaction")  # a resolver bug
        claims[key] = row


def write_inserts(session: Session) -> None:
    """Write the buffer (customers first: identities refer to them). Idempotent."""
    pending: _Inserts | None = session.info.pop(INSERTS_KEY, None)
    if pending is None:
        return
    if pending.customers:
        session.connection().execute(_CUSTOMER_INSERT, [row_values(row) for row in pending.customers])
    claims = list(pending.claims.values())
    if claim_many(session, IdentityRow, claims) != len(claims):
        raise RetryableError("an identifier was claimed by a concurrent worker; retrying")


def _inserts(session: Session) -> _Inserts:
    pending: _Inserts | None = session.info.get(INSERTS_KEY)
    if pending is None:
        pending = session.info[INSERTS_KEY] = _Inserts()
        if not session.info.get(_LISTENING_KEY):
            session.info[_LISTENING_KEY] = True
            sa_event.listen(session, "do_orm_execute", _before_statement)
            sa_event.listen(session, "before_flush", _before_flush)
            sa_event.listen(session, "before_commit", write_inserts)
    return pending


def _before_statement(state: ORMExecuteState) -> None:
    """A statement on either table, or one whose tables the ORM cannot name (`select_from`, text), writes first."""
    if INSERTS_KEY in state.session.info:
        mappers = state.all_mappers
        if not mappers or any(m.local_table in _TABLES for m in mappers):
            write_inserts(state.session)


def _before_flush(session: Session, flush_context: Any, instances: Any) -> None:
    write_inserts(session)
