"""`xiaohongshu`: leads pushed by Xiaohongshu 聚光 landing pages (落地页「数据推送」)."""

from __future__ import annotations

from collections.abc import Callable

from hub import Connector, hookimpl
from hub.demo import DemoSource

from .connector import XiaohongshuConfig, XiaohongshuConnector, signature
from .mapping import DEFAULT_LABEL_MAP

__all__ = [
    "DEFAULT_LABEL_MAP",
    "XiaohongshuConfig",
    "XiaohongshuConnector",
    "demo_sources",
    "register_connectors",
    "signature",
]


@hookimpl
def register_connectors(register: Callable[[Connector], None]) -> None:
    register(XiaohongshuConnector())


@hookimpl
def demo_sources() -> list[DemoSource]:
    from .demo import demo_sources as sources

    return sources()
