"""Small SQL helpers identity/ uses on several tables: claims with ON CONFLICT DO NOTHING, (type, value) lookups."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Select, Table, and_, bindparam, insert, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, make_transient_to_detached

__all__ = ["by_type_and_value", "claim_many", "insert_attached", "insert_ignore", "row_values"]


def insert_ignore(session: Session, model: Any, values: dict[str, Any]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING (any unique key); True if the row was inserted."""
    return claim_many(session, model, [values]) == 1


def claim_many(session: Session, model: Any, rows: list[dict[str, Any]]) -> int:
    """INSERT … ON CONFLICT DO NOTHING for each row; returns how many rows were inserted."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    result = session.connection().execute(_insert_ignore_stmt(dialect, model.__table__), rows)
    return result.rowcount if dialect == "sqlite" else len(result.all())


@lru_cache(maxsize=64)
def _insert_ignore_stmt(dialect: str, table: Table) -> Any:
    """One constant statement per table, built once: its compiled form is cached whatever the row count.

    How many rows were inserted: on SQLite the driver's executemany sums the rows each INSERT changed
    (a skipped conflict changes none), so a plain executemany tells; that is half the cost of RETURNING,
    which makes SQLAlchemy render and SQLite compile a new multi-row INSERT per batch. Elsewhere an
    executemany's rowcount is not reliably a sum, so the rows RETURNING gives back are counted.
    """
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert_(table).on_conflict_do_nothing()
    return stmt if dialect == "sqlite" else stmt.returning(next(iter(table.primary_key.columns)))


def by_type_and_value(base: Select[Any], model: Any, keys: Sequence[tuple[str, str]]) -> tuple[Any, dict[str, Any]]:
    """`base WHERE (type = :t0 AND value IN :v0) OR …` and its parameters, for `model`'s (type, value) keys.

    The OR of one IN per type uses the (type, value) index on SQLite, where a row-value IN scans. The
    statement depends only on how many types there are, so it is built once per count: building it per
    call cost ~110 µs more than executing it.
    """
    grouped: dict[str, list[str]] = {}
    for type_, value in keys:
        grouped.setdefault(type_, []).append(value)
    params: dict[str, Any] = {}
    for n, type_ in enumerate(sorted(grouped)):
        params[f"t{n}"], params[f"v{n}"] = type_, grouped[type_]
    return _by_type_and_value(base, model, len(grouped)), params


@lru_cache(maxsize=64)
def _by_type_and_value(base: Select[Any], model: Any, types: int) -> Any:
    return base.where(or_(*(
        and_(model.type == bindparam(f"t{n}"), model.value.in_(bindparam(f"v{n}", expanding=True)))
        for n in range(types)
    )))


def row_values(row: Any) -> dict[str, Any]:
    """Every column of a mapped object, as set on it (for a Core INSERT)."""
    return {c.key: getattr(row, c.key) for c in row.__table__.columns}


def insert_attached(session: Session, row: Any) -> Any:
    """INSERT a new row now (Core: no unit-of-work flush) and hand the object to the session as persistent.

    Every column must be set on `row`; later attribute changes are flushed as UPDATEs, batched with the
    other pending changes of the transaction.
    """
    session.connection().execute(insert(row.__table__), row_values(row))
    return attach(session, row)


def attach(session: Session, row: Any) -> Any:
    """Hand a fully set object to the session as persistent, as if it had just been loaded."""
    make_transient_to_detached(row)
    session.add(row)
    return row
