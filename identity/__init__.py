"""identity/: one customer UUID per person across every platform, with merges you can explain and undo."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

from hub import hookimpl
from hub.schemas import UnifiedEvent

if TYPE_CHECKING:
    import click
    from fastapi import APIRouter
    from sqlalchemy.orm import Session

    from identity.rules import Rules

__all__ = ["events_prepared", "register_commands", "register_routes", "register_schedules", "resolve_identity"]


@lru_cache(maxsize=8)
def _rules(placeholders: str, limits: str) -> Rules:
    from identity.rules import Rules, parse_limits, parse_placeholders

    return Rules(placeholders=parse_placeholders(placeholders), limits=parse_limits(limits))


def current_rules() -> Rules:
    from hub.runtime import current_hub

    hub = current_hub()
    if hub is None:
        return _rules("", "")
    return _rules(hub.settings.identity_placeholders, hub.settings.identity_limits)


@hookimpl
def events_prepared(events: list[UnifiedEvent], session: Session) -> None:
    import identity.models  # noqa: F401  (tables on Base.metadata)
    from identity.resolver import preload

    preload(events, session, current_rules())


@hookimpl
def resolve_identity(event: UnifiedEvent, session: Session) -> tuple[uuid.UUID | None, uuid.UUID | None] | None:
    import identity.models  # noqa: F401  (tables on Base.metadata)
    from identity.resolver import resolve

    return resolve(event, session, current_rules())


@hookimpl
def register_routes(router: APIRouter) -> None:
    from identity import api, api_events

    router.include_router(api.router)
    router.include_router(api_events.router)


@hookimpl
def register_schedules(schedule: Callable[[str, float], None]) -> None:
    from identity.silence import SCAN_EVERY_S, SCAN_TASK

    schedule(SCAN_TASK, SCAN_EVERY_S)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from identity.cli import silent_scan

    cli.add_command(silent_scan)
