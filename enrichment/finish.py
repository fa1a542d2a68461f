"""A recognised recording → transcript → four facts → a `call.summarized` event in the pipeline."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from enrichment.models import JOB_DONE, JOB_FAILED, AsrJob
from enrichment.summarize import make_lexicons, summarise, summarized_draft
from enrichment.transcript import channel_roles, transcript_lines
from hub.models import EventRow, SourceRow
from hub.pipeline import store_internal
from hub.runtime import Hub
from hub.schemas import Identity

log = logging.getLogger(__name__)

SUMMARY_SOURCE = "enrichment"


def source_options(hub: Hub, session: Session, source_id: Any) -> tuple[Any, Any]:
    """(`channel_roles`, `lexicons`) from the call's source config, when the source still exists."""
    if source_id is None:
        return None, None
    row = session.get(SourceRow, source_id)
    if row is None:
        return None, None
    try:
        config = hub.load_source(row).config
    except Exception:  # an unregistered connector or a config that no longer validates
        log.warning("could not load source %s for channel roles / lexicons", source_id, exc_info=True)
        return None, None
    return _option(config, "channel_roles"), _option(config, "lexicons")


def _option(config: Any, name: str) -> Any:
    value = config.get(name) if isinstance(config, dict) else getattr(config, name, None)
    dump = getattr(value, "model_dump", None)
    return dump() if callable(dump) else value


def store_summary(hub: Hub, session: Session, job: AsrJob, data: dict[str, Any]) -> None:
    """Build and store the `call.summarized` event for `job` (state → done), in `session`."""
    call = session.scalars(select(EventRow).where(EventRow.id == job.call_event_id)).first()
    if call is None:
        job.state, job.error, job.next_poll_at = JOB_FAILED, "call event no longer exists", None
        return
    roles_override, lexicon_config = source_options(hub, session, job.source_id)
    transcript = transcript_lines(data, channel_roles(job.direction, job.channel_roles, roles_override))
    summary, extractor, issues = summarise(hub.pm, hub.settings, transcript, make_lexicons(lexicon_config))
    identities = [Identity.model_validate(i) for i in call.data.get("identities") or []]
    draft = summarized_draft(
        job_id=str(job.id), call_event_id=str(job.call_event_id), task_id=job.task_id,
        occurred_at=call.occurred_at, identities=identities, transcript=transcript, summary=summary,
        extras={"asr_job_id": str(job.id), "audio_duration_s": data.get("AudioDuration"), "extractor": extractor,
                "direction": job.direction},
        issues=issues, customer_id=call.customer_id,
    )
    store_internal(hub, session, [draft], source=SUMMARY_SOURCE)
    job.summary_event_id = session.scalars(
        select(EventRow.id).where(EventRow.source == SUMMARY_SOURCE, EventRow.source_id.is_(None),
                                  EventRow.source_event_id == draft.source_event_id)
    ).first()
    job.state, job.error, job.next_poll_at = JOB_DONE, None, None
