"""`callcenter`: Tencent Cloud Contact Center (TCCC) CDR and recording pushes, plus a DescribeTelCdr reconcile."""

from __future__ import annotations

from collections.abc import Callable

from hub import Connector, hookimpl
from hub.demo import DemoSource

from .connector import CallcenterConnector

__all__ = ["CallcenterConnector", "demo_sources", "register_connectors"]


@hookimpl
def register_connectors(register: Callable[[Connector], None]) -> None:
    register(CallcenterConnector())


@hookimpl
def demo_sources() -> list[DemoSource]:
    from .demo import demo_sources as sources

    return sources()
