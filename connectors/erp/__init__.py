"""`erp`: ERP orders — the hub's signed push format (contract §9) and an OAuth2 incremental pull."""

from __future__ import annotations

from collections.abc import Callable

from hub import Connector, hookimpl
from hub.demo import DemoSource

from .connector import ErpConnector

__all__ = ["ErpConnector", "demo_sources", "register_connectors"]


@hookimpl
def register_connectors(register: Callable[[Connector], None]) -> None:
    register(ErpConnector())


@hookimpl
def demo_sources() -> list[DemoSource]:
    from .demo import demo_sources as sources

    return sources()
