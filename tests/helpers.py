"""Small helpers shared by tests (not fixtures)."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from hub.app import create_app
from hub.models import EventRow, RawEvent
from hub.runtime import Hub

ADMIN = {"authorization": "Bearer test-admin-token"}
CHECKOUT = Path(__file__).resolve().parent.parent  # this checkout's code, not an installed copy


def checkout_pythonpath() -> str:
    """PYTHONPATH for a child process: this checkout first (an editable install may point at another tree)."""
    return os.pathsep.join([str(CHECKOUT), *filter(None, [os.environ.get("PYTHONPATH")])])


def client_for(hub: Hub) -> TestClient:
    return TestClient(create_app(hub, manage_lifecycle=False), raise_server_exceptions=True)


def add_source(client: TestClient, connector: str, name: str, config: dict[str, Any]) -> str:
    resp = client.post("/v1/sources", json={"connector": connector, "name": name, "config": config}, headers=ADMIN)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def basic(user: str, password: str = "") -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def jbody(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()


def wait_processed(hub: Hub, timeout: float = 20.0) -> None:
    """Wait until the runner is idle and no raw row is pending."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hub.runner.join(timeout=max(0.1, deadline - time.monotonic()))
        with hub.sessions() as s:
            pending = s.scalar(select(func.count()).select_from(RawEvent).where(RawEvent.status == "pending"))
        if not pending:
            return
        time.sleep(0.05)
    raise AssertionError("raw events still pending")


def count_events(hub: Hub, **where: Any) -> int:
    with hub.sessions() as s:
        stmt = select(func.count()).select_from(EventRow)
        for key, value in where.items():
            stmt = stmt.where(getattr(EventRow, key) == value)
        return int(s.scalar(stmt) or 0)


def raw_rows(hub: Hub) -> list[RawEvent]:
    with hub.sessions() as s:
        return list(s.scalars(select(RawEvent).order_by(RawEvent.id)))


def first_retry(task: Any, monkeypatch: Any) -> dict[str, Any]:
    """Run a Celery task's body once and return what it asked `task.retry()` for; nothing reaches a broker."""

    class Retried(Exception):
        pass

    asked: list[dict[str, Any]] = []

    def retry(**kwargs: Any) -> Exception:
        asked.append(kwargs)
        return Retried()

    monkeypatch.setattr(task, "retry", retry)
    try:
        task.run()
    except Retried:
        return asked[0]
    raise AssertionError(f"task {task.name} did not ask for a retry")


def sqlite_plans_of_selects(hub: Hub, table: str, run: Any) -> list[str]:
    """SQLite's EXPLAIN QUERY PLAN of each SELECT on `table` that `run()` issues: tests assert a log is read by
    index, never scanned whole."""
    from sqlalchemy import event

    statements: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if table in statement and statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(hub.engine, "before_cursor_execute", keep)
    try:
        run()
    finally:
        event.remove(hub.engine, "before_cursor_execute", keep)
    with hub.engine.connect() as conn:
        return [" | ".join(row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters))
                for statement, parameters in statements]
