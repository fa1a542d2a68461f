"""One test per hook spec: a fresh PluginManager with a test plugin, never entry points."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import click
import pytest
from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import select

from hub import Connector, EventDraft, Identity, InboundRequest, ParseContext, hookimpl
from hub.app import create_app
from hub.db import Base
from hub.demo import DemoRequest, DemoSource
from hub.models import EventRow
from hub.pipeline import BATCH_CACHE, store_internal
from hub.plugins import make_plugin_manager
from hub.runtime import Hub, set_hub
from hub.schemas import UnifiedEvent, utcnow
from tests.conftest import make_settings


class EchoConfig(BaseModel):
    token: str = "t"


class EchoConnector(Connector):
    name = "echo"
    title = "Echo"
    config_model = EchoConfig

    def verify(self, request: InboundRequest, config: Any) -> None:
        return None

    def parse(self, request: InboundRequest, config: Any, ctx: ParseContext) -> list[EventDraft]:
        return [EventDraft(type="echo", source_event_id="1", occurred_at=utcnow())]


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    @hookimpl
    def register_connectors(self, register: Any) -> None:
        register(EchoConnector())

    @hookimpl
    def register_routes(self, router: APIRouter) -> None:
        @router.get("/echo-route")
        def echo_route() -> dict[str, str]:
            return {"hello": "from a plugin"}

    @hookimpl
    def register_hot_routes(self, add: Any) -> None:
        from starlette.responses import PlainTextResponse

        async def hot(scope: Any, receive: Any, send: Any) -> None:
            await PlainTextResponse(f"hot {scope['path_params']['n']}")(scope, receive, send)

        add("/hot/{n:int}", hot, methods=["GET"])

    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        self.calls.append(("register_commands", cli))

    @hookimpl
    def queue_depths(self, session: Any) -> dict[str, int]:
        self.calls.append(("queue_depths", None))
        return {"echo_waiting": 3}

    @hookimpl
    def register_schedules(self, schedule: Any) -> None:
        schedule("hub.pipeline.requeue_pending", 5)

    @hookimpl
    def events_prepared(self, events: list[UnifiedEvent], session: Any) -> None:
        self.calls.append(("events_prepared", [e.source_event_id for e in events]))
        session.info[BATCH_CACHE]["recorder"] = len(events)

    @hookimpl
    def resolve_identity(self, event: UnifiedEvent, session: Any) -> tuple[uuid.UUID, None]:
        self.calls.append(("resolve_identity", event.type))
        assert session.info[BATCH_CACHE]["recorder"] >= 1  # the batch's preload is there for every event
        return uuid.UUID(int=7), None

    @hookimpl
    def event_stored(self, event: UnifiedEvent, session: Any) -> None:
        self.calls.append(("event_stored", event.type))

    @hookimpl
    def enrich_event(self, event: UnifiedEvent) -> list[EventDraft] | None:
        if event.type != "note":
            return None
        return [EventDraft(type="note.derived", source_event_id=f"{event.source_event_id}:d", occurred_at=utcnow())]

    @hookimpl
    def demo_sources(self) -> list[DemoSource]:
        return [DemoSource("echo", "echo-demo", {}, lambda: [DemoRequest(b"{}")])]

    @hookimpl
    def demo_stand_ins(self) -> list[Callable[[], AbstractContextManager[dict[str, Any]]]]:
        @contextmanager
        def echo_stand_in() -> Iterator[dict[str, Any]]:
            self.calls.append(("stand_in", "started"))
            yield {"asr_endpoint": "127.0.0.1:9"}
            self.calls.append(("stand_in", "stopped"))

        return [echo_stand_in]


@pytest.fixture
def plugged(tmp_path: Path) -> Any:
    pm = make_plugin_manager()
    recorder = Recorder()
    pm.register(recorder, name="recorder")
    hub = Hub(make_settings(tmp_path), pm=pm)
    Base.metadata.create_all(hub.engine)
    set_hub(hub)
    yield hub, recorder
    hub.stop()
    set_hub(None)


def _store_note(hub: Hub) -> None:
    note = EventDraft(type="note", source_event_id="n1", occurred_at=utcnow(), identities=[Identity(type="email",
                                                                                                   value="a@b.cn")])
    with hub.transaction() as session:
        store_internal(hub, session, [note], source="test")


def test_hook_register_connectors(plugged: Any) -> None:
    hub, _ = plugged
    assert "echo" in hub.connectors and hub.connectors.get("echo").title == "Echo"


def test_hook_register_routes(plugged: Any) -> None:
    from fastapi.testclient import TestClient

    hub, _ = plugged
    client = TestClient(create_app(hub, manage_lifecycle=False))
    assert client.get("/echo-route").json() == {"hello": "from a plugin"}


def test_hook_register_hot_routes(plugged: Any) -> None:
    from fastapi.testclient import TestClient

    hub, _ = plugged
    client = TestClient(create_app(hub, manage_lifecycle=False))
    assert client.get("/hot/42").text == "hot 42"
    assert client.get("/hot/not-a-number").status_code == 404  # falls through to the API router
    assert client.get("/echo-route").json() == {"hello": "from a plugin"}


def test_hook_register_commands(plugged: Any) -> None:
    hub, recorder = plugged
    group = click.Group("crmhub")
    hub.pm.hook.register_commands(cli=group)
    assert recorder.calls == [("register_commands", group)]


def test_hook_register_schedules(plugged: Any) -> None:
    hub, _ = plugged
    assert ("hub.pipeline.requeue_pending", 5.0) in hub.schedules


def test_hook_queue_depths(plugged: Any) -> None:
    hub, recorder = plugged
    with hub.sessions() as session:
        assert hub.pm.hook.queue_depths(session=session) == [{"echo_waiting": 3}]
    assert ("queue_depths", None) in recorder.calls


def test_hook_events_prepared(plugged: Any) -> None:
    hub, recorder = plugged
    drafts = [EventDraft(type="note", source_event_id=f"b{i}", occurred_at=utcnow()) for i in range(3)]
    with hub.transaction() as session:
        store_internal(hub, session, drafts, source="test")
        assert BATCH_CACHE not in session.info  # dropped once the batch is stored
    with hub.transaction() as session:
        store_internal(hub, session, drafts[:2], source="test")  # stored already: nothing to prepare
    prepared = [c for c in recorder.calls if c[0] == "events_prepared"]
    assert prepared == [("events_prepared", ["b0", "b1", "b2"])]


def test_hook_resolve_identity(plugged: Any) -> None:
    hub, recorder = plugged
    _store_note(hub)
    with hub.sessions() as s:
        row = s.scalars(select(EventRow).where(EventRow.type == "note")).one()
    assert row.customer_id == uuid.UUID(int=7)
    assert ("resolve_identity", "note") in recorder.calls


def test_hook_event_stored(plugged: Any) -> None:
    hub, recorder = plugged
    _store_note(hub)
    assert ("event_stored", "note") in recorder.calls


def test_hook_enrich_event(plugged: Any) -> None:
    hub, recorder = plugged
    _store_note(hub)
    _store_note(hub)  # idempotent: neither the note nor its derived event is stored twice
    with hub.sessions() as s:
        types = sorted(s.scalars(select(EventRow.type)))
    assert types == ["note", "note.derived"]
    assert ("event_stored", "note.derived") in recorder.calls


def test_hook_demo_sources(plugged: Any) -> None:
    hub, _ = plugged
    groups = hub.pm.hook.demo_sources()
    sources = [s for g in groups for s in g]
    assert [s.name for s in sources] == ["echo-demo"] and sources[0].requests()[0].body == b"{}"


def test_hook_demo_stand_ins(plugged: Any) -> None:
    hub, recorder = plugged
    (start,) = [f for g in hub.pm.hook.demo_stand_ins() for f in g]
    with start() as overrides:
        assert overrides == {"asr_endpoint": "127.0.0.1:9"} and recorder.calls == [("stand_in", "started")]
    assert recorder.calls[-1] == ("stand_in", "stopped")
