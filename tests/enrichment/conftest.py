"""Fixtures for enrichment/: a hub with a fake credit-registry connector, synthetic call events."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, SecretStr

from hub import Connector, hookimpl
from hub.db import Base
from hub.errors import NotFound
from hub.pipeline import store_drafts
from hub.plugins import load_plugins, make_plugin_manager
from hub.runtime import Hub, set_hub
from hub.schemas import EventDraft, Identity
from tests.conftest import make_settings

# No credit_registry here: tests register a fake of their own.
PLUGINS = "identity,webhooks,enrichment,web"
USCC = "91350100M000100Y43"  # a valid code (GB 32100-2015 check digit)


class FakeRegistryConfig(BaseModel):
    provider: str = "tianyancha"
    token: SecretStr
    cache_ttl_s: float | None = None  # as the real connector's


class FakeRegistry(Connector):
    """Stands in for connectors/credit_registry: `lookup()` answers from a dict, counting calls."""

    name = "credit_registry"
    title = "Fake credit registry"
    config_model = FakeRegistryConfig

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail_with: Exception | None = None

    def lookup(self, config: FakeRegistryConfig, uscc: str, http: httpx.Client) -> dict[str, Any]:
        assert isinstance(http, httpx.Client)
        self.calls.append((config.token.get_secret_value(), uscc))
        if self.fail_with is not None:
            raise self.fail_with
        if uscc != USCC:
            raise NotFound(f"registry has no company {uscc}", code="company_not_found")
        return {
            "uscc": uscc, "name": "福州测试科技有限公司", "legal_representative": "张三",
            "registered_capital": {"amount": 5_000_000, "currency": "CNY", "text": "500万人民币"},
            "paid_in_capital": None, "insured_employees": 37, "status": "active",
            "established_on": "2015-03-02", "penalties": 0, "risk_level": "low",
        }


class FakeRegistryPlugin:
    def __init__(self, connector: FakeRegistry) -> None:
        self.connector = connector

    @hookimpl
    def register_connectors(self, register: Callable[[Connector], None]) -> None:
        register(self.connector)


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


def build_hub(tmp_path: Path, extra_plugins: Sequence[object] = (), *, plugins: str = PLUGINS,
              **overrides: Any) -> Hub:
    """A hub with the named built-in plugins plus `extra_plugins` (registered later, so called first)."""
    import enrichment.models  # noqa: F401
    import identity.models  # noqa: F401
    import webhooks.models  # noqa: F401

    pm = make_plugin_manager()
    load_plugins(pm, plugins, entry_points=False)
    for i, plugin in enumerate(extra_plugins):
        pm.register(plugin, name=f"test_plugin_{i}")
    hub = Hub(make_settings(tmp_path, **overrides), pm=pm)
    Base.metadata.create_all(hub.engine)
    set_hub(hub)
    return hub


@pytest.fixture
def ehub(tmp_path: Path, registry: FakeRegistry) -> Iterator[Hub]:
    """A started hub (SQLite, in-process runner) with the fake registry connector."""
    hub = build_hub(tmp_path, [FakeRegistryPlugin(registry)])
    hub.start()
    yield hub
    hub.stop()
    hub.engine.dispose()
    set_hub(None)


def call_draft(
    *, recording_url: str | None = "https://rec.example.invalid/a.wav", direction: str = "inbound",
    phone: str = "+8613800138000", **props: Any,
) -> EventDraft:
    properties: dict[str, Any] = {"direction": direction, "duration_s": 312, **props}
    if recording_url is not None:
        properties["recording_url"] = recording_url
    return EventDraft(
        type="call.completed", source_event_id=f"cdr-{uuid.uuid4().hex[:10]}",
        occurred_at=datetime(2026, 1, 25, 6, 22, tzinfo=UTC), identities=[Identity(type="phone", value=phone)],
        properties=properties,
    )


def store_call(hub: Hub, draft: EventDraft, source_id: uuid.UUID | None = None) -> None:
    with hub.transaction() as session:
        store_drafts(hub, session, [draft], source="callcenter", source_id=source_id)

