"""The admin API while the database is away: a 503 naming it, logged once per outage, and back when it is."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text

from hub import api
from hub.outage_log import OutageLog
from hub.runtime import Hub
from tests.conftest import PG_ADMIN_URL, make_hub, make_settings, running
from tests.helpers import ADMIN, client_for


@pytest.fixture(autouse=True)
def _fresh_outage_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process's log stays quiet for a minute after an outage it logged: each test starts with its own."""
    monkeypatch.setattr(api, "DATABASE_OUTAGE", OutageLog(api.log, "reaching the database from the API"))


def _refuse_connections(*_: Any) -> None:
    raise sqlite3.OperationalError("unable to open database file")


def _assert_outage_logged_once(caplog: pytest.LogCaptureFixture, failed: int) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None  # one traceback, at the start
    assert errors[0].getMessage().startswith("reaching the database from the API failed: OperationalError")
    assert f"reaching the database from the API works again after 0 s; {failed} failed meanwhile" in caplog.text


def test_a_database_outage_answers_the_api_503_and_logs_it_once(hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    """Was a 500 `internal_error` per request, each with two tracebacks (the handler's and uvicorn's)."""
    client = client_for(hub)
    caplog.set_level(logging.WARNING)
    event.listen(hub.engine, "do_connect", _refuse_connections)
    hub.engine.dispose()  # every pooled connection gone, as when the server restarts
    try:
        for _ in range(3):
            resp = client.get("/v1/sources", headers=ADMIN)
            assert resp.status_code == 503 and resp.headers["retry-after"] == "5"
            assert resp.json()["error"] == {"code": "database_unavailable", "details": None,
                                            "message": "the database is unavailable (OperationalError); retry later"}
    finally:
        event.remove(hub.engine, "do_connect", _refuse_connections)
    assert client.get("/v1/sources", headers=ADMIN).status_code == 200
    _assert_outage_logged_once(caplog, failed=3)


@pytest.fixture
def pg_hub(pg_url: str, tmp_path: Path) -> Iterator[Hub]:
    yield from running(make_hub(make_settings(tmp_path, pg_url)))


@pytest.mark.postgres
def test_api_requests_while_postgres_refuses_connections_are_503_then_served_again(
        pg_hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    """Our own database stops accepting connections and its backends are terminated (a restart, without
    restarting the shared cluster)."""
    client = client_for(pg_hub)
    assert client.get("/v1/sources", headers=ADMIN).status_code == 200
    name = pg_hub.engine.url.database
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    caplog.set_level(logging.WARNING)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db"),
                         {"db": name})
        codes = [client.get("/v1/sources", headers=ADMIN).status_code for _ in range(3)]
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        assert codes == [503, 503, 503]
        assert client.get("/v1/sources", headers=ADMIN).status_code == 200
    finally:
        admin.dispose()
    _assert_outage_logged_once(caplog, failed=3)


def test_a_schema_the_code_does_not_match_is_a_500_not_an_outage(hub: Hub) -> None:
    """SQLite reports a missing table (a migration not applied) as an OperationalError, which the outage handler
    answered 503 "retry later": retrying cannot help. It is a 500 naming an internal error, as a bug is."""
    with hub.engine.begin() as conn:
        conn.execute(text("DROP TABLE inbound_rejections"))
    resp = client_for(hub).get("/v1/health/sources", headers=ADMIN)
    assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error"
