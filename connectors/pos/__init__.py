"""`pos`: point-of-sale purchases, refunds and member updates in the hub's signed push format (contract §9)."""

from __future__ import annotations

from collections.abc import Callable

from hub import Connector, hookimpl
from hub.demo import DemoSource

from .connector import PosConnector

__all__ = ["PosConnector", "demo_sources", "register_connectors"]


@hookimpl
def register_connectors(register: Callable[[Connector], None]) -> None:
    register(PosConnector())


@hookimpl
def demo_sources() -> list[DemoSource]:
    from .demo import demo_sources as sources

    return sources()
