"""`create_app()`: the kernel's routes plus every plugin's, around one `Hub`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from hub import api, quality_api
from hub.runtime import Hub, get_hub, set_hub


def create_app(hub: Hub | None = None, *, manage_lifecycle: bool = True) -> FastAPI:
    hub = hub or get_hub()
    set_hub(hub)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            from hub.pipeline import recover_on_startup

            hub.start()
            if not hub.settings.broker_url:
                recover_on_startup(hub)
        yield
        if manage_lifecycle:
            hub.stop()

    app = FastAPI(title="crmhub", version="0.1.0", lifespan=lifespan,
                  description="Integration hub for CRMs sold into the Chinese market.")
    app.state.hub = hub
    app.state.admin_token = hub.settings.resolved_admin_token()[0]
    api.install_error_handlers(app)
    app.include_router(api.router)
    app.include_router(api.admin)
    app.include_router(quality_api.router)
    plugin_router = APIRouter()
    hub.pm.hook.register_routes(router=plugin_router)
    app.include_router(plugin_router)
    return app
