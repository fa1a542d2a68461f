"""Engines, sessions and the declarative base every package's models share."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, MetaData, String, TypeDecorator, event, func, select
from sqlalchemy.engine import Engine, create_engine
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import Uuid

from hub.ids import new_id
from hub.schemas import utcnow

log = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL wants BIGINT.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")
# A column holding such an id (events.raw_event_id, messages.event_seq): BIGINT like the key it names. As INTEGER it
# overflowed on PostgreSQL once the key passed 2**31 ("integer out of range", every later event failing); SQLite's
# INTEGER is 64-bit already.
BigIntRef = BigIntPK


class UTCDateTime(TypeDecorator[datetime]):
    """TIMESTAMP WITH TIME ZONE that always comes back aware and in UTC.

    SQLite forgets the zone; PostgreSQL answers in the session's zone, which is the server's `timezone` setting
    (initdb takes the machine's, so Asia/Shanghai on a server in China), and the API's times came out +08:00 there.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime stored; use an aware time")
        return value.astimezone(UTC)  # SQLite keeps no zone: store every instant as UTC

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        uuid.UUID: Uuid(),
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
        str: String(),
    }


class UUIDPk:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


_WRITE_LOCKS: dict[int, threading.RLock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


@contextmanager
def try_advisory_lock(engine: Engine, name: bytes, what: str) -> Iterator[bool]:
    """PostgreSQL: yield whether this session took the advisory lock `name`; never waits.

    Held on a connection of its own, so it covers every process and goes with one that is killed. A connection lost
    meanwhile (its backend terminated or restarted) took the lock with it: there is nothing to release, and raising
    from here would replace the outcome of the work the lock covered. Connecting or asking may raise DBAPIError.
    """
    key = int.from_bytes(hashlib.sha256(name).digest()[:8], "big", signed=True)
    with engine.connect() as conn:
        acquired = bool(conn.scalar(select(func.pg_try_advisory_lock(key))))
        conn.commit()
        try:
            yield acquired
        finally:
            if acquired:
                try:
                    conn.scalar(select(func.pg_advisory_unlock(key)))
                    conn.commit()
                except DBAPIError as exc:
                    log.warning("the lock of %s went with its connection (%s); nothing to release", what,
                                exc.__class__.__name__)


@contextmanager
def write_lock(engine: Engine) -> Iterator[None]:
    """Serialise this process's write transactions on SQLite (a no-op elsewhere).

    SQLite allows one writer. Threads that race for it otherwise fall into its busy handler,
    which sleeps in growing steps, or fail outright when a read snapshot must upgrade to a
    write ("database is locked"). Taking a Python lock first turns that into a fair, instant
    hand-over between this process's threads. Other processes are still handled by SQLite.
    """
    if engine.dialect.name != "sqlite":
        yield
        return
    with _WRITE_LOCKS_GUARD:
        lock = _WRITE_LOCKS.setdefault(id(engine), threading.RLock())
    with lock:
        yield


class JSONText(str):
    """A value for a JSON column that is JSON text already, stored as it is instead of dumped again.

    Why: an event is stored as `model_dump_json()`, which pydantic writes in one pass in Rust; dumping
    it to Python objects and then through json.dumps cost ~19 µs an event against ~12, and json.dumps
    escaped every Chinese character (943 characters against 791 for an import row). Readers parse
    either form to the same value.
    """


def _json_serializer(value: Any) -> str:
    """JSON text for a JSON column; NaN and ±Infinity, which JSON has no words for, as null.

    A platform sends them as `NaN` or `1e999`, Python's json reads them, and json.dumps writes them back as `NaN`
    and `Infinity`, which PostgreSQL refuses: one such value in a quarantined item or a customer's trait failed the
    whole request. pydantic writes them as null in the events' own JSON, and so does this.
    """
    if isinstance(value, JSONText):
        return str.__str__(value)
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:  # the rare value holding one: walk it once
        return json.dumps(_finite(value))


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def make_engine(url: str, **kwargs: Any) -> Engine:
    try:
        return _make_engine(url, **kwargs)
    except ImportError as exc:  # a dialect whose driver is not installed (mysql:// without mysqlclient)
        raise ArgumentError(f"no database driver installed for this URL: {exc}") from exc


def _make_engine(url: str, **kwargs: Any) -> Engine:
    kwargs.setdefault("json_serializer", _json_serializer)  # SQLAlchemy's default is json.dumps
    # A failed statement's message otherwise carries its bound values: raw request bodies and headers (signatures,
    # Basic credentials), phones, emails. It goes to the log, and to a failed raw request's `error`.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        connect_args = {"check_same_thread": False, "timeout": 30}
        engine = create_engine(url, connect_args=connect_args, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets readers run beside the one writer; NORMAL sync is durable across
            # process crashes in WAL mode (only an OS crash can lose the last commits).
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            # SQLite's default page cache is 2 MiB: past a few hundred thousand identities each index
            # insert and lookup reads its pages back from the OS. 32 MiB per connection (allocated as
            # pages are used; a pool holds several connections, so not more) keeps the hot index pages.
            cur.execute("PRAGMA cache_size=-32768")
            # Checkpoint the WAL into the database every ~80 MB rather than every 4 MB: a batch dirties
            # pages all over the identity indexes, and copying them back after nearly every commit wrote
            # each hot page many times (identity benchmark, 20,000 people: 335-353 against 365-373 µs
            # per event). Readers and crash recovery read a longer WAL; nothing is less durable.
            cur.execute("PRAGMA wal_autocheckpoint=20000")
            cur.close()

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, pool_pre_ping=True, **kwargs)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """The request/task boundary: commit on success, roll back on error, then run after-commit work.

    A failing after-commit callback is logged, not raised, and the others still run: the work is committed, and
    an enqueue refused by a broker that is down raised out of `process_raw`, which then marked its handled row
    failed (the in-process runner never raises there). What such a callback would have queued, the periodic
    sweeps find (raw requests, deliveries, ASR jobs); a registry lookup waits for the company's next event.
    """
    session = factory()
    bind = factory.kw.get("bind")
    with write_lock(bind) if isinstance(bind, Engine) else nullcontext():
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            session.info.pop("after_commit", None)
            raise
        finally:
            callbacks = session.info.pop("after_commit", [])
            session.close()
    for callback in callbacks:
        try:
            callback()
        except Exception:
            log.exception("after-commit work failed; the transaction stands")


def after_commit(session: Session, callback: Any) -> None:
    """Run `callback()` once the surrounding `transaction()` has committed (never on rollback)."""
    session.info.setdefault("after_commit", []).append(callback)
