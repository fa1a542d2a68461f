"""`create_app()`: the kernel's routes plus every plugin's, around one `Hub`."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from hub import api, quality_api
from hub.runtime import Hub, get_hub, set_hub


class HubApp(FastAPI):
    """FastAPI, plus hot routes (platform pushes) dispatched before the middleware stack and router.

    A hot route's endpoint is a raw ASGI app; it must answer every request it matches itself
    (an exception becomes the server's plain 500).
    """

    hot_routes: list[Route]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            # RFC 9110 §9.3.2: HEAD is GET without the body (monitors probe /healthz with it); FastAPI routes only
            # the methods they declare, so it was a 405. The server sends no body for a HEAD request.
            scope = {**scope, "method": "GET"}
        if scope["type"] == "http" and scope["path"].endswith("/") and api.is_admin_path(scope["path"]):
            scope["app"] = self
            refusal = api.admin_refusal(Request(scope))
            if refusal is not None:  # the router redirects `/v1/x/` to `/v1/x` before any route checks the token
                await refusal(scope, receive, send)
                return
        if scope["type"] == "http" and self.hot_routes:
            for route in self.hot_routes:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child)
                    scope["app"] = self
                    await route.endpoint(scope, receive, send)
                    return
        await super().__call__(scope, receive, send)


def create_app(hub: Hub | None = None, *, manage_lifecycle: bool = True) -> FastAPI:
    hub = hub or get_hub()
    set_hub(hub)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            from hub.pipeline import recover_on_startup

            hub.start()
            if not hub.settings.broker_url:  # off the startup path: a long backlog is fed as the lane drains
                threading.Thread(target=recover_on_startup, args=(hub,), name="crmhub-recovery", daemon=True).start()
        yield
        if manage_lifecycle:
            hub.stop()

    app = HubApp(title="crmhub", version="0.1.0", lifespan=lifespan,
                  description="Integration hub for CRMs sold into the Chinese market.")
    app.state.hub = hub
    app.state.admin_token = hub.settings.resolved_admin_token()[0]
    api.install_error_handlers(app)
    app.include_router(api.router)
    app.include_router(api.admin)
    app.include_router(quality_api.router)
    hot: list[Route] = []

    def add_hot(path: str, endpoint: Any, methods: list[str] | None = None) -> None:
        hot.append(Route(path, endpoint, methods=methods, include_in_schema=False))

    hub.pm.hook.register_hot_routes(add=add_hot)
    app.hot_routes = hot
    plugin_router = APIRouter()
    hub.pm.hook.register_routes(router=plugin_router)
    app.include_router(plugin_router)
    return app
