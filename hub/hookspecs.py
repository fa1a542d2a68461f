"""Every hook the kernel calls, typed and documented. No logic lives here.

Hooks are synchronous and do no IO of their own; IO lives on the objects they
register (connectors, routers, commands). Specs grow by adding arguments only.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click
    from fastapi import APIRouter
    from sqlalchemy.orm import Session

    from hub.connector import Connector
    from hub.demo import DemoSource
    from hub.schemas import EventDraft, UnifiedEvent

hookspec = pluggy.HookspecMarker("crmhub")

# ---------------------------------------------------------------- registration


@hookspec
def register_connectors(register: Callable[[Connector], None]) -> None:
    """Hand the hub this package's connector objects.

    :param register: call it once per `Connector` instance.
    """


@hookspec
def register_routes(router: APIRouter) -> None:
    """Add this package's HTTP routes to the app.

    :param router: a FastAPI router mounted at the application root.
    """


@hookspec
def register_hot_routes(add: Callable[..., None]) -> None:
    """Add raw ASGI endpoints on the ingest hot path, dispatched before FastAPI's middleware and router.

    The API stack (middleware, dependency injection, nested routers) costs more per request
    than a platform's push should; hot routes skip it. Paths should be specific (use the
    `uuid` convertor) so everything else still reaches the API router.

    :param add: call `add(path, endpoint, methods=[...])`; `async endpoint(scope, receive, send)`
        answers every request it matches (path params are in `scope["path_params"]`, the app in `scope["app"]`).
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add this package's commands to the `crmhub` CLI.

    :param cli: the root click group.
    """


@hookspec
def register_schedules(schedule: Callable[[str, float], None]) -> None:
    """Declare periodic tasks (run by `crmhub beat`, or by the in-process scheduler).

    :param schedule: call `schedule(task_name, every_seconds)` for each periodic task.
    """


@hookspec
def queue_depths(session: Session) -> dict[str, int] | None:
    """Rows of this package's own work that wait or failed, for ops (`crmhub_queue_depth{stage}` at /metrics).

    :param session: a read-only session.
    :return: `{stage: count}`, e.g. `{"asr_failed": 2}`, or None.
    """


@hookspec
def register_extractors(register: Callable[[str, Callable[[Any], Any]], None]) -> None:
    """Hand the hub call-summary extractors (enrichment/ picks one by `CRMHUB_SUMMARY_EXTRACTOR`).

    :param register: call `register(name, factory)`; `factory(settings)` returns an object with
        `extract(lines, lexicons)` → the four facts (see docs/enrichment.md). The first
        registration of a name wins; the built-ins register `trylast`, so a plugin can replace them.
    """


# ---------------------------------------------------------------- pipeline


@hookspec
def events_prepared(events: list[UnifiedEvent], session: Session) -> None:
    """A batch of events is about to be resolved and stored, one by one, in this transaction.

    Load what the per-event hooks will need in a few set-based queries instead of a few per event,
    and keep it in `session.info[BATCH_CACHE]` (hub.pipeline), which is dropped once the batch is
    stored. Purely an optimisation: a per-event hook must still work on a cache miss.

    :param events: the prepared events (normalised identities), in the order they will be stored.
    :param session: the pipeline's transaction; do not commit.
    """


@hookspec(firstresult=True)
def resolve_identity(event: UnifiedEvent, session: Session) -> tuple[Any, Any] | None:
    """Map the event's identities to a customer (and account). First non-None result wins.

    :param event: the event about to be stored; its `identities` are normalised.
    :param session: the pipeline's transaction; do not commit.
    :return: `(customer_id | None, account_id | None)`, or None to let another plugin answer.
    """


@hookspec
def event_stored(event: UnifiedEvent, session: Session) -> None:
    """React to a newly stored event inside the pipeline's transaction (write your own tables only).

    :param event: the stored event, with `id`, `customer_id` and `account_id` set.
    :param session: the pipeline's transaction; schedule follow-up work with `hub.tasks.enqueue_after_commit`.
    """


@hookspec
def enrich_event(event: UnifiedEvent) -> list[EventDraft] | None:
    """Derive events synchronously from a stored one; they are stored in the same transaction.

    Slow enrichment (ASR, registry lookups) belongs in a task scheduled from `event_stored`.

    :param event: the stored event.
    :return: derived event drafts (stored with this plugin's events' source), or None.
    """


# ---------------------------------------------------------------- demo


@hookspec
def demo_sources() -> list[DemoSource] | None:
    """Sources and realistic, correctly signed requests for `crmhub demo` (no network, no servers).

    :return: the demo sources this package contributes.
    """


@hookspec
def demo_stand_ins() -> list[Callable[[], AbstractContextManager[dict[str, Any]]]] | None:
    """Local stand-ins, for `crmhub demo` only, of services the hub reaches through its settings (Tencent
    Cloud ASR): each starts a server on 127.0.0.1 and yields the settings that point the hub at it.

    :return: context-manager factories, entered before the demo's hub is built and left after it.
    """
