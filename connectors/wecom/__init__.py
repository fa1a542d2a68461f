"""`wecom`: WeCom (企业微信) customer-contact callbacks — contacts added, edited, removed; tag changes."""

from __future__ import annotations

from collections.abc import Callable

from hub import Connector, hookimpl
from hub.demo import DemoSource

from .connector import WeComConfig, WeComConnector
from .crypto import aes_key, decrypt, encrypt, msg_signature

__all__ = [
    "WeComConfig",
    "WeComConnector",
    "aes_key",
    "decrypt",
    "demo_sources",
    "encrypt",
    "msg_signature",
    "register_connectors",
]


@hookimpl
def register_connectors(register: Callable[[Connector], None]) -> None:
    register(WeComConnector())


@hookimpl
def demo_sources() -> list[DemoSource]:
    from .demo import demo_sources as sources

    return sources()
