"""`douyin`: Douyin Open Platform webhooks (private messages, ad-attributed conversations, follows, leads)."""

from __future__ import annotations

from collections.abc import Callable

from hub import Connector, hookimpl
from hub.demo import DemoSource

from .connector import DouyinConfig, DouyinConnector, signature
from .openapi import DouyinAPIError, DouyinOAuth2Client, DouyinOpenAPI

__all__ = [
    "DouyinAPIError",
    "DouyinConfig",
    "DouyinConnector",
    "DouyinOAuth2Client",
    "DouyinOpenAPI",
    "demo_sources",
    "register_connectors",
    "signature",
]


@hookimpl
def register_connectors(register: Callable[[Connector], None]) -> None:
    register(DouyinConnector())


@hookimpl
def demo_sources() -> list[DemoSource]:
    from .demo import demo_sources as sources

    return sources()
