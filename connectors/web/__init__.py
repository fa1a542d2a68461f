"""`web`: the Segment-compatible HTTP Tracking API, so existing Segment/RudderStack SDKs can send to the hub."""

from __future__ import annotations

from collections.abc import Callable

from hub import Connector, hookimpl
from hub.demo import DemoSource

from .connector import WebConnector

__all__ = ["WebConnector", "demo_sources", "register_connectors"]


@hookimpl
def register_connectors(register: Callable[[Connector], None]) -> None:
    register(WebConnector())


@hookimpl
def demo_sources() -> list[DemoSource]:
    from .demo import demo_sources as sources

    return sources()
