"""Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

import enrichment.models  # noqa: F401
import hub.models  # noqa: F401
import identity.models  # noqa: F401
import webhooks.models  # noqa: F401
from hub.db import Base
from hub.migrate import upgrade


def _check(url: str) -> None:
    engine = create_engine(url)
    try:
        upgrade(engine)
        upgrade(engine)  # a second run is a no-op
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == [], f"models and migrations differ: {diff}"
        tables = set(inspect(engine).get_table_names())
        assert {"sources", "raw_events", "events", "quarantine", "customers", "identities", "endpoints",
                "messages", "attempts", "asr_jobs", "company_profiles"} <= tables
    finally:
        engine.dispose()


def test_migrations_match_models_on_sqlite(tmp_path: Path) -> None:
    _check(f"sqlite:///{tmp_path / 'm.db'}")


@pytest.mark.postgres
def test_migrations_match_models_on_postgresql(pg_url: str) -> None:
    _check(pg_url)
