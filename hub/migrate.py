"""Applying Alembic migrations programmatically (used by `crmhub serve` and tests)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Engine

try:
    import fcntl
except ImportError:  # Windows has no fcntl: there, concurrent first starts on one SQLite file are not guarded
    fcntl = None  # type: ignore[assignment]

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


# Any constant: the key of the PostgreSQL advisory lock that lets one process migrate at a time.
_ADVISORY_LOCK_KEY = 0x63726D68  # "crmh"


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to `revision`, one process at a time.

    `serve`, `worker` and `beat` each migrate when they start, and docker-compose starts them together: on an
    empty database two of them created the same tables and died (`DuplicateTable`). The first to take the lock
    migrates; the others wait, then find the schema at head and do nothing.
    """
    cfg = alembic_config()
    with _one_at_a_time(engine), engine.begin() as connection:
        if connection.dialect.name == "postgresql":  # held to this transaction's end, migration included
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


@contextmanager
def _one_at_a_time(engine: Engine) -> Iterator[None]:
    """SQLite has no advisory lock: an exclusive lock on a file beside the database does the same."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:") or fcntl is None:
        yield
        return
    try:
        lock = open(f"{database}.migrate-lock", "a+b")  # noqa: SIM115 - closed below
    except OSError:  # a missing or read-only folder: the database itself will say so, more clearly
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
