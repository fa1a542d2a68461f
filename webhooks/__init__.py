"""webhooks/: the inbound edge, outbound delivery to the CRM core, health, ops page and metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import APIRouter

from hub import hookimpl

if TYPE_CHECKING:
    import click
    from sqlalchemy.orm import Session

    from hub.schemas import UnifiedEvent

__all__ = [
    "event_stored",
    "events_prepared",
    "register_commands",
    "register_hot_routes",
    "register_routes",
    "register_schedules",
]


@hookimpl(trylast=True)  # the /hooks/{source_id} catch-all must come after specific /hooks/… routes
def register_routes(router: APIRouter) -> None:
    from webhooks import api, inbound, ops

    router.include_router(api.router)
    router.include_router(ops.router)
    router.include_router(inbound.router)


@hookimpl
def register_hot_routes(add: Callable[..., None]) -> None:
    from webhooks import inbound

    for path, endpoint in inbound.HOT_ROUTES:
        add(path, endpoint, methods=inbound.HOOK_METHODS)


@hookimpl
def events_prepared(events: list[UnifiedEvent], session: Session) -> None:
    from webhooks.delivery import preload_endpoints

    preload_endpoints(session)


@hookimpl
def event_stored(event: UnifiedEvent, session: Session) -> None:
    from hub.runtime import get_hub
    from webhooks.delivery import create_messages

    create_messages(get_hub(), event, session)


@hookimpl
def register_schedules(schedule: Callable[[str, float], None]) -> None:
    from hub.retention import PRUNE_EVERY_S
    from webhooks import delivery, retention

    schedule(delivery.SWEEP_TASK, delivery.SWEEP_EVERY_S)
    schedule(retention.PRUNE_TASK, PRUNE_EVERY_S)


@hookimpl
def register_commands(cli: click.Group) -> None:
    import click

    from webhooks.cli import endpoints, source_health

    cli.add_command(endpoints)
    sources = cli.commands.get("sources")  # the kernel's group; source health is measured here, from webhooks' log
    if isinstance(sources, click.Group):
        sources.add_command(source_health)
