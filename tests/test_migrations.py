"""Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine

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


def _reflected(engine: Engine) -> dict[str, dict[str, dict[str, object]]]:
    """Everything a database says about its tables, in a form two databases can be compared by."""
    insp = inspect(engine)
    return {table: {
        "columns": {c["name"]: (str(c["type"]), c["nullable"], c.get("default")) for c in insp.get_columns(table)},
        "indexes": {i["name"]: (i["column_names"], i["unique"],
                                {k: str(v) for k, v in (i.get("dialect_options") or {}).items()})
                    for i in insp.get_indexes(table)},
        "unique": {u["name"]: u["column_names"] for u in insp.get_unique_constraints(table)},
        "foreign_keys": {f["name"]: (f["constrained_columns"], f["referred_table"], f["options"])
                         for f in insp.get_foreign_keys(table)},
        "checks": {c["name"]: c["sqltext"] for c in insp.get_check_constraints(table)},
    } for table in insp.get_table_names() if table != "alembic_version"}


def _same_as_create_all(migrated_url: str, fresh_url: str) -> None:
    """compare_metadata leaves out server defaults and index predicates: a create_all test database (every test
    hub's) must still be the production schema there too. (0006 gave lookup_failures a default of 0.)"""
    migrated, fresh = create_engine(migrated_url), create_engine(fresh_url)
    try:
        upgrade(migrated)
        Base.metadata.create_all(fresh)
        got, want = _reflected(migrated), _reflected(fresh)
        assert got.keys() == want.keys()
        differ = [(table, kind, name, items.get(name), want[table][kind].get(name))
                  for table, kinds in got.items() for kind, items in kinds.items()
                  for name in items.keys() | want[table][kind].keys() if items.get(name) != want[table][kind].get(name)]
        assert differ == [], "(table, kind, name, migrated, create_all)"
    finally:
        migrated.dispose()
        fresh.dispose()


def test_a_migrated_sqlite_database_reflects_as_one_built_from_the_models(tmp_path: Path) -> None:
    _same_as_create_all(f"sqlite:///{tmp_path / 'migrated.db'}", f"sqlite:///{tmp_path / 'fresh.db'}")


@pytest.mark.postgres
def test_a_migrated_postgresql_database_reflects_as_one_built_from_the_models(pg_url: str) -> None:
    from tests.conftest import PG_ADMIN_URL

    name = f"{pg_url.rsplit('/', 1)[1]}_fresh"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            _same_as_create_all(pg_url, PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def test_migrations_match_models_on_sqlite(tmp_path: Path) -> None:
    _check(f"sqlite:///{tmp_path / 'm.db'}")


@pytest.mark.postgres
def test_migrations_match_models_on_postgresql(pg_url: str) -> None:
    _check(pg_url)


_MIGRATE = """
import sys, time
from sqlalchemy import create_engine
from hub.migrate import upgrade
start = float(sys.argv[2])
while time.time() < start:  # all processes begin together, as docker-compose's api, worker and beat do
    time.sleep(0.005)
engine = create_engine(sys.argv[1])
upgrade(engine)
engine.dispose()
"""


def _migrate_at_once(url: str, processes: int = 3) -> None:
    """serve, worker and beat each migrate at start: on an empty database two of three died (DuplicateTable)."""
    import subprocess
    import sys
    import time

    start = str(time.time() + 2.0)
    procs = [subprocess.Popen([sys.executable, "-c", _MIGRATE, url, start], stderr=subprocess.PIPE)
             for _ in range(processes)]
    errors = [(p.wait(timeout=120), p.stderr.read().decode()[-800:] if p.stderr else "") for p in procs]
    assert [code for code, _ in errors] == [0] * processes, errors
    _check(url)


def test_processes_migrating_an_empty_sqlite_database_at_once_all_succeed(tmp_path: Path) -> None:
    _migrate_at_once(f"sqlite:///{tmp_path / 'race.db'}")


@pytest.mark.postgres
def test_processes_migrating_an_empty_postgresql_database_at_once_all_succeed(pg_url: str) -> None:
    _migrate_at_once(pg_url)


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_0007_points_existing_messages_at_their_customer_as_it_is_now(tmp_path: Path, db: str,
                                                                     request: pytest.FixtureRequest) -> None:
    """Messages made before webhooks/follow.py: one whose event a split moved, one of a merged-away customer."""
    import uuid
    from datetime import UTC, datetime

    from sqlalchemy import select

    from hub.models import EventRow
    from identity.models import CustomerRow
    from webhooks.models import EndpointRow, MessageRow

    url = request.getfixturevalue("pg_url") if db == "postgres" else f"sqlite:///{tmp_path / 'm.db'}"
    engine = create_engine(url)
    try:
        upgrade(engine, "0006")
        now = datetime(2026, 12, 1, tzinfo=UTC)
        original, split_off, survivor, merged = (uuid.uuid4() for _ in range(4))
        moved_event, merged_event, endpoint = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        with engine.begin() as conn:
            conn.execute(CustomerRow.__table__.insert(), [
                {"id": c, "traits": {}, "created_at": now, "updated_at": now, "merged_into": into}
                for c, into in ((original, None), (split_off, None), (survivor, None), (merged, survivor))])
            conn.execute(EventRow.__table__.insert(), [
                {"id": e, "type": "lead.submitted", "source": "test", "source_event_id": str(e), "occurred_at": now,
                 "received_at": now, "stored_at": now, "customer_id": c, "data": {}}
                for e, c in ((moved_event, split_off), (merged_event, merged))])
            conn.execute(EndpointRow.__table__.insert(), [{"id": endpoint, "url": "https://crm.example.com/h",
                                                           "event_types": ["*"], "secret_sealed": "x"}])
            conn.execute(MessageRow.__table__.insert(), [
                {"id": uuid.uuid4(), "endpoint_id": endpoint, "event_id": e, "event_type": "lead.submitted",
                 "customer_id": c, "occurred_at": now, "status": "delivered"}
                for e, c in ((moved_event, original), (merged_event, merged))])
        upgrade(engine)
        with engine.connect() as conn:
            now_named = dict(conn.execute(select(MessageRow.event_id, MessageRow.customer_id)).all())
        assert now_named == {moved_event: split_off, merged_event: survivor}
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_0008_gives_events_without_a_txid_one_every_consumer_then_reads(tmp_path: Path, pg_url: str) -> None:
    """A PostgreSQL row stored without txid (old code during a rolling deploy, a manual insert) was never in the
    feed; after 0008 it is, behind a cursor issued before, and the column defaults to the storing transaction."""
    from alembic import command
    from sqlalchemy import text

    from hub.migrate import alembic_config
    from hub.runtime import set_hub
    from tests.conftest import make_hub, make_settings
    from tests.helpers import ADMIN, client_for
    from tests.identity.conftest import draft, ingest

    engine = create_engine(pg_url)
    upgrade(engine, "0007")
    hub = make_hub(make_settings(tmp_path, pg_url), plugins="identity")
    try:
        client = client_for(hub)
        stored, untracked = ingest(hub, draft(("phone", "13912340011")), draft(("phone", "13912340012")))
        with engine.begin() as conn:
            conn.execute(text("UPDATE events SET txid = NULL WHERE id = :id"), {"id": untracked.id})
        held = client.get("/v1/events", headers=ADMIN).json()
        assert [e["id"] for e in held["items"]] == [str(stored.id)]
        upgrade(engine)
        after = client.get("/v1/events", params={"after": held["next_cursor"]}, headers=ADMIN).json()
        assert [e["id"] for e in after["items"]] == [str(untracked.id)]
        everything = client.get("/v1/events", headers=ADMIN).json()["items"]
        assert [e["id"] for e in everything] == [str(stored.id), str(untracked.id)]

        def default() -> object:
            return next(c["default"] for c in inspect(engine).get_columns("events") if c["name"] == "txid")

        assert default() == "txid_current()"
        cfg = alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0007")
        assert default() is None
    finally:
        hub.engine.dispose()
        set_hub(None)
        engine.dispose()


@pytest.mark.postgres
def test_a_postgresql_schema_built_from_the_models_defaults_txid_as_migrations_do(pg_url: str) -> None:
    """Test hubs and benches use create_all: their events get a txid however they are inserted, as in production."""
    engine = create_engine(pg_url)
    try:
        Base.metadata.create_all(engine)
        (txid,) = [c["default"] for c in inspect(engine).get_columns("events") if c["name"] == "txid"]
        assert txid == "txid_current()"
    finally:
        engine.dispose()


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_0010_adds_the_attempts_outcome_index_and_takes_it_away_again(tmp_path: Path, db: str,
                                                                      request: pytest.FixtureRequest) -> None:
    """Upgraded over a table that has rows, downgraded, upgraded again: the index comes and goes, the rows stay."""
    import uuid
    from datetime import UTC, datetime

    from alembic import command

    from hub.migrate import alembic_config
    from webhooks.models import AttemptRow, EndpointRow, MessageRow

    url = request.getfixturevalue("pg_url") if db == "postgres" else f"sqlite:///{tmp_path / 'm.db'}"
    engine = create_engine(url)

    def indexes() -> set[str]:
        return {str(i["name"]) for i in inspect(engine).get_indexes("attempts")}

    try:
        upgrade(engine, "0009")
        assert "ix_attempts_endpoint_success_at" not in indexes()
        now, endpoint, message = datetime(2026, 12, 1, tzinfo=UTC), uuid.uuid4(), uuid.uuid4()
        with engine.begin() as conn:
            conn.execute(EndpointRow.__table__.insert(), [{"id": endpoint, "url": "https://crm.example.com/h",
                                                           "event_types": ["*"], "secret_sealed": "x"}])
            conn.execute(MessageRow.__table__.insert(), [{"id": message, "endpoint_id": endpoint, "event_id": endpoint,
                                                          "event_type": "lead.submitted", "occurred_at": now}])
            conn.execute(AttemptRow.__table__.insert(), [{"message_id": message, "endpoint_id": endpoint, "at": now,
                                                          "success": i % 2 == 0} for i in range(4)])
        upgrade(engine)
        assert "ix_attempts_endpoint_success_at" in indexes()
        cfg = alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0009")
        assert "ix_attempts_endpoint_success_at" not in indexes()
        upgrade(engine)
        assert "ix_attempts_endpoint_success_at" in indexes()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM attempts")).scalar() == 4
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_0011_widens_the_columns_holding_bigint_ids_on_postgresql(pg_url: str) -> None:
    """Past 2**31 raw requests, an event naming its request failed with "integer out of range"; after 0011 it is
    stored, and rows from before keep their values."""
    import uuid

    from hub.models import QuarantineRow

    engine = create_engine(pg_url)

    def types() -> dict[str, str]:
        insp = inspect(engine)
        return {f"{t}.{c}": str(next(x["type"] for x in insp.get_columns(t) if x["name"] == c))
                for t, c in (("events", "raw_event_id"), ("quarantine", "raw_event_id"), ("messages", "event_seq"))}

    def quarantine(raw_event_id: int) -> None:
        with engine.begin() as conn:
            conn.execute(QuarantineRow.__table__.insert(), [{"id": uuid.uuid4(), "raw_event_id": raw_event_id,
                                                             "reason": "bad_phone"}])

    try:
        upgrade(engine, "0010")
        assert set(types().values()) == {"INTEGER"}
        quarantine(7)
        with pytest.raises(Exception, match="out of range"):
            quarantine(2**31)
        upgrade(engine)
        assert set(types().values()) == {"BIGINT"}
        quarantine(2**31)
        with engine.connect() as conn:
            assert sorted(conn.execute(text("SELECT raw_event_id FROM quarantine")).scalars()) == [7, 2**31]
    finally:
        engine.dispose()
