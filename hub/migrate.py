"""Applying Alembic migrations programmatically (used by `crmhub serve` and tests)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
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


SchemaState = Literal["absent", "current", "behind", "unknown", "unversioned"]


def schema_state(engine: Engine) -> SchemaState:
    """Where the database stands, without changing it (a dry run must not migrate, nor create a SQLite file).

    `absent`: no database file, or no tables yet; `current`: at this code's head; `behind`: an older revision
    (`crmhub serve` would migrate it); `unknown`: a revision this code does not know (a newer crmhub's);
    `unversioned`: tables and no revision (made by `create_all`, as tests and benchmarks do).
    """
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if database and database != ":memory:" and not database.startswith("file:") and not Path(database).exists():
        return "absent"
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_heads()
        if not current:
            return "unversioned" if inspect(connection).get_table_names() else "absent"
    script = ScriptDirectory.from_config(alembic_config())
    if set(current) == set(script.get_heads()):
        return "current"
    known = all(_known(script, revision) for revision in current)
    return "behind" if known else "unknown"


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except Exception:  # alembic raises its own ResolutionError/CommandError for a revision it has never seen
        return False


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
