"""enrichment/: ASR call summaries and company profiles.

- a `call.completed` with a `recording_url` becomes an ASR job (Tencent Cloud ASR), whose
  result becomes a `call.summarized` event with the four facts a rep needs;
- an event with an account identity `uscc` whose profile is missing or stale queues a
  credit-registry lookup that becomes a `company.profile.updated` event.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import click
from fastapi import APIRouter
from sqlalchemy.orm import Session

from hub import hookimpl
from hub.schemas import UnifiedEvent

__all__ = [
    "demo_stand_ins",
    "event_stored",
    "events_prepared",
    "register_commands",
    "register_extractors",
    "register_routes",
    "register_schedules",
]


@hookimpl
def events_prepared(events: list[UnifiedEvent], session: Session) -> None:
    from enrichment.company import preload_profiles

    preload_profiles(session, [i.value for e in events for i in e.identities if i.type == "uscc"])


@hookimpl
def event_stored(event: UnifiedEvent, session: Session) -> None:
    from enrichment.company import batch_ttl_s, request_lookups
    from enrichment.jobs import job_for_call
    from hub.runtime import get_hub

    if event.type in ("call.completed", "call.recording_available"):  # a recording may follow its call
        job_for_call(event, session)
    if any(i.type == "uscc" for i in event.identities):
        request_lookups(event, session, batch_ttl_s(get_hub(), session))


@hookimpl
def queue_depths(session: Session) -> dict[str, int]:
    from sqlalchemy import func, select

    from enrichment.company import MAX_LOOKUP_FAILURES
    from enrichment.models import JOB_FAILED, JOB_QUEUED, JOB_SUBMITTED, AsrJob, CompanyProfile

    jobs = dict(session.execute(select(AsrJob.state, func.count()).where(
        AsrJob.state.in_((JOB_QUEUED, JOB_SUBMITTED, JOB_FAILED))).group_by(AsrJob.state)).all())
    failing = CompanyProfile.lookup_failures
    retrying = session.scalar(select(func.count()).where(failing > 0, failing < MAX_LOOKUP_FAILURES)) or 0
    gave_up = session.scalar(select(func.count()).where(failing >= MAX_LOOKUP_FAILURES)) or 0
    return {"asr_queued": jobs.get(JOB_QUEUED, 0), "asr_submitted": jobs.get(JOB_SUBMITTED, 0),
            "asr_failed": jobs.get(JOB_FAILED, 0), "registry_retrying": int(retrying),
            "registry_gave_up": int(gave_up)}


@hookimpl
def register_routes(router: APIRouter) -> None:
    from enrichment.routes import router as asr_router

    router.include_router(asr_router)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from enrichment.cli import company

    cli.add_command(company)


@hookimpl
def register_schedules(schedule: Callable[[str, float], None]) -> None:
    # Importing the task modules here registers their tasks before the runtime (Celery) is built.
    import enrichment.company  # noqa: F401
    from enrichment.jobs import SWEEP_EVERY_S, SWEEP_TASK

    schedule(SWEEP_TASK, SWEEP_EVERY_S)


@hookimpl(trylast=True)  # built-ins register last, so a plugin's extractor of the same name wins
def register_extractors(register: Callable[[str, Callable[[Any], Any]], None]) -> None:
    from enrichment.summarize import builtin_extractors

    builtin_extractors(register)


@hookimpl
def demo_stand_ins() -> list[Callable[[], AbstractContextManager[dict[str, Any]]]]:
    from enrichment.demo import asr_stand_in

    return [asr_stand_in]
