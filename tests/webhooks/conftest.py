"""Fixtures for outbound delivery: a hub that may deliver to loopback, and a scriptable local receiver."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from hub import hookimpl
from hub.inprocess import InProcessRunner
from hub.pipeline import store_internal
from hub.runtime import Hub, set_hub
from hub.schemas import EventDraft, Identity, utcnow
from tests.conftest import make_hub, make_settings
from tests.helpers import ADMIN, client_for
from webhooks.models import MSG_PENDING, MessageRow


class FixedResolver:
    """Customer = uuid5 of the event's first identity, so ordering tests don't depend on identity/."""

    @hookimpl(tryfirst=True)
    def resolve_identity(self, event: Any, session: Any) -> tuple[uuid.UUID | None, None] | None:
        if not event.identities:
            return None
        ident = event.identities[0]
        return uuid.uuid5(uuid.NAMESPACE_URL, f"{ident.type}:{ident.value}"), None


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float
    status: int = 0
    path: str = ""

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def source_event_id(self) -> str:
        return str(self.json["data"]["source_event_id"])


Script = Callable[[Received], tuple[int, dict[str, str], bytes]]


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1; `script` decides each answer (default 200)."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    script: Script = lambda _r: (200, {}, b'{"ok":true}')
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self) -> list[Received]:
        return [r for r in self.received if 200 <= r.status < 300]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            rec = Received({k.lower(): v for k, v in self.headers.items()}, body, time.monotonic(), path=self.path)
            with state.lock:
                status, headers, payload = state.script(rec)
                rec.status = status
                state.received.append(rec)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/crm/hook"
    yield state
    server.shutdown()
    server.server_close()


def _build(tmp_path: Path, url: str | None = None, workers: int = 2, **overrides: object) -> Hub:
    overrides.setdefault("allow_private_endpoints", True)
    overrides.setdefault("retry_schedule", "0,30,30")
    hub = make_hub(make_settings(tmp_path, url, **overrides), runner=InProcessRunner(workers=workers))
    hub.pm.register(FixedResolver(), name="test-fixed-resolver")
    hub.start()
    return hub


@pytest.fixture
def hub_factory(tmp_path: Path) -> Iterator[Callable[..., Hub]]:
    made: list[Hub] = []

    def factory(url: str | None = None, **overrides: object) -> Hub:
        hub = _build(tmp_path, url, **overrides)
        made.append(hub)
        return hub

    yield factory
    for hub in made:
        hub.stop()
        hub.engine.dispose()
    set_hub(None)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def whub(request: pytest.FixtureRequest, hub_factory: Callable[..., Hub]) -> Hub:
    """Delivery hub on SQLite and PostgreSQL; loopback endpoints allowed; retries 0 s, 30 s, 30 s."""
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    return hub_factory(url)


@pytest.fixture
def shub(hub_factory: Callable[..., Hub]) -> Hub:
    """SQLite only."""
    return hub_factory()


def client(hub: Hub) -> TestClient:
    return client_for(hub)


def add_endpoint(hub: Hub, url: str, **body: Any) -> dict[str, Any]:
    resp = client_for(hub).post("/v1/endpoints", json={"url": url, **body}, headers=ADMIN)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def draft(sei: str, *, phone: str | None = "+8613800138000", at: datetime | None = None,
          type: str = "lead.submitted") -> EventDraft:
    return EventDraft(type=type, source_event_id=sei, occurred_at=at or utcnow(),
                      identities=[Identity(type="phone", value=phone)] if phone else [], properties={"n": sei})


def store(hub: Hub, *drafts: EventDraft) -> None:
    with hub.transaction() as session:
        store_internal(hub, session, drafts, source="test")


def settle(hub: Hub, timeout: float = 20.0) -> None:
    """Idle twice, 0.5 s apart: a task retried after a busy database sits on the runner's timer meanwhile."""
    for _ in range(2):
        assert hub.runner.join(timeout), "runner did not go idle"
        time.sleep(0.5)
    assert hub.runner.join(timeout), "runner did not go idle"


def make_due(hub: Hub) -> None:
    """Skip the wait: every pending message is due now and every delayed task runs."""
    with hub.transaction() as session:
        session.execute(update(MessageRow).where(MessageRow.status == MSG_PENDING)
                        .values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    hub.runner.run_due_timers()
    settle(hub)


def t0(minutes: int = 0) -> datetime:
    return datetime(2026, 1, 25, 6, 0, tzinfo=UTC) + timedelta(minutes=minutes)
