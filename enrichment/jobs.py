"""The ASR job lifecycle: create (from `call.completed`) → submit → poll / callback → summarise.

queued ──submit──▶ submitted ──Status 2──▶ done (a `call.summarized` event is stored)
   │                   ├──Status 3, audio code 10000–10007──▶ quarantined (+ a quarantine row)
   │                   └──Status 3 otherwise / results expired──▶ failed
   └──rejected by Tencent, or throttled/5xx MAX_SUBMIT_ATTEMPTS times (backed off up to 600 s)──▶ failed

Every step re-reads the job row and acts only from the state it expects, so a task
run twice (a retry, the sweep, a callback racing a poll) changes nothing twice.
No database transaction stays open while Tencent is called.
"""

from __future__ import annotations

import logging
import random
import re
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from enrichment.asr import AUDIO_FAILURES, AsrClient, AsrRejected, SubmitRequest, audio_failure_code
from enrichment.models import (
    JOB_FAILED,
    JOB_QUARANTINED,
    JOB_QUEUED,
    JOB_SUBMITTED,
    AsrJob,
)
from enrichment.transcript import normalise_direction
from hub.errors import RetryableError
from hub.ids import new_id
from hub.models import EventRow, SourceRow
from hub.pipeline import database_conflict, quarantine
from hub.runtime import Hub, get_hub
from hub.schemas import UnifiedEvent, storable_text, utcnow
from hub.tasks import enqueue, enqueue_after_commit, task

log = logging.getLogger(__name__)

SUBMIT_TASK = "enrichment.jobs.submit_job"
POLL_TASK = "enrichment.jobs.poll_job"
SWEEP_TASK = "enrichment.jobs.sweep"
SWEEP_EVERY_S = 30.0
SWEEP_BATCH = 500
# CreateRecTask's own refusals that mean the audio, not the request, is at fault: the 10000–10007 code they match.
SUBMIT_AUDIO_FAILURES = {"FailedOperation.ErrorDownFile": 10007}
MAX_SUBMIT_ATTEMPTS = 12  # 4 s, 8 s … then 600 s apart: about 47 minutes of throttling or outage
SUBMIT_GRACE_S = 120.0  # the sweep re-submits a queued job only after this (the normal enqueue goes first)
SUBMIT_CLAIM_S = 120.0  # a submit in flight holds the job this long (the SDK's own timeouts are shorter)
DUE_SLACK_S = 2.0  # a countdown may fire a little before the due time it was computed from
POLL_DELAYS_S = (10.0, 20.0, 40.0, 60.0, 120.0, 300.0, 600.0)  # then every 600 s
ENGINE_MAX = 40  # asr_jobs.engine is VARCHAR(40)
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what new_callback_token makes (token_urlsafe) and the column holds
RESULT_TTL = timedelta(hours=24)  # Tencent keeps results 24 h; after that the TaskId is meaningless
RECORD_TRIES = 3  # writes of an accepted submission's TaskId before it is given up (`_record_submitted`)
RECORD_PAUSE_S = 0.05


# ---------------------------------------------------------------- creating jobs


def job_for_call(event: UnifiedEvent, session: Session) -> AsrJob | None:
    """A queued job for a call with a recording URL (once per call event).

    `call.completed` carries `recording_url` when the recording was known with the CDR; a
    `call.recording_available` that arrives later is joined to its already-stored call.
    """
    url = event.properties.get("recording_url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return None
    if event.type == "call.recording_available" and event.properties.get("participant") == "agent":
        # One event per leg; the first to arrive would take the call's only job. An agent-only leg holds none
        # of the customer's words, so it waits for the customer's leg (the connector's own preference).
        return None
    call_id, customer_id = _call_of(event, session)
    if call_id is None:
        return None
    if session.scalars(select(AsrJob.id).where(AsrJob.call_event_id == call_id)).first() is not None:
        return None
    engine, channels = engine_for(event.properties)
    roles = event.properties.get("channel_roles")
    job = AsrJob(
        id=new_id(), call_event_id=call_id, customer_id=customer_id, source_id=event.source_id,
        recording_url=url, direction=normalise_direction(event.properties.get("direction")),
        channel_roles=list(roles) if isinstance(roles, list | tuple) else None,
        engine=engine, channel_num=channels, state=JOB_QUEUED,
        next_poll_at=utcnow() + timedelta(seconds=SUBMIT_GRACE_S),
    )
    session.add(job)
    enqueue_after_commit(session, SUBMIT_TASK, str(job.id))
    return job


def _call_of(event: UnifiedEvent, session: Session) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    if event.type == "call.completed":
        return event.id, event.customer_id
    call_key = event.properties.get("call_source_event_id")
    if event.type != "call.recording_available" or not isinstance(call_key, str):
        return None, None
    stmt = select(EventRow.id, EventRow.customer_id).where(
        EventRow.type == "call.completed", EventRow.source_event_id == call_key)
    stmt = stmt.where(EventRow.source_id == event.source_id) if event.source_id else stmt.where(
        EventRow.source_id.is_(None), EventRow.source == event.source)
    row = session.execute(stmt.limit(1)).first()
    return (row[0], row[1]) if row else (None, None)


def engine_for(properties: dict[str, Any]) -> tuple[str, int]:
    """Telephony (8 kHz) → `8k_zh`, two channels unless the call says mono; 16 kHz+ → `16k_zh` mono.

    A call may name its engine outright with `asr_engine` (e.g. `8k_zh_large` for dialects). A name longer than
    asr_jobs.engine holds is no engine's and is not used: stored, it failed the call's request on PostgreSQL.
    """
    rate = _int(properties.get("sample_rate") or properties.get("recording_sample_rate"), 8000)
    channels = _int(properties.get("recording_channels") or properties.get("channels"), 2)
    engine = properties.get("asr_engine")
    if not isinstance(engine, str) or not engine or len(engine) > ENGINE_MAX:
        engine = "16k_zh" if rate >= 16000 else "8k_zh"
    if not engine.startswith("8k"):
        channels = 1  # Tencent: 16k engines are mono only
    return engine, 2 if channels >= 2 else 1


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


# ---------------------------------------------------------------- submitting


@task(SUBMIT_TASK, queue="enrich", max_retries=MAX_SUBMIT_ATTEMPTS)
def submit_job(job_id: str) -> str:
    """Send one queued job to Tencent; throttling / 5xx is recorded on the job and retried after a backoff."""
    return submit(get_hub(), uuid.UUID(job_id))


def submit(hub: Hub, job_id: uuid.UUID, client: AsrClient | None = None) -> str:
    with hub.transaction() as session:
        job = _lock(session, job_id)
        if job is None or job.state != JOB_QUEUED:
            return job.state if job else "missing"
        now = utcnow()
        if _held(job, now):
            return JOB_QUEUED  # a retry not due yet, or one another worker is sending right now
        if not (hub.settings.tencentcloud_secret_id and hub.settings.tencentcloud_secret_key):
            _fail(job, "asr_not_configured: CRMHUB_TENCENTCLOUD_SECRET_ID/SECRET_KEY are empty")
            return JOB_FAILED
        # Claimed for the call below: the retry's countdown and the sweep both fire when it is due, and the one
        # that comes second must not call Tencent again (a second task would be billed and lost).
        job.next_poll_at = now + timedelta(seconds=SUBMIT_CLAIM_S)
        request = SubmitRequest(url=job.recording_url, callback_url=callback_url(hub, job),
                                engine=job.engine, channel_num=job.channel_num)
    try:
        task_id = (client or AsrClient(hub.settings)).create_task(request)
    except RetryableError as exc:
        # Backed off on the job row, not by the task runner: its retries come within seconds (0.2 s, 0.4 s …
        # in-process), so a half-minute throttle or outage used to spend every attempt and fail the call's
        # summary for good. The sweep re-sends it if this enqueue is lost.
        attempts, delay = _record_retry(hub, job_id, exc)
        if attempts >= MAX_SUBMIT_ATTEMPTS:
            return JOB_FAILED
        enqueue(SUBMIT_TASK, str(job_id), countdown=delay)
        return JOB_QUEUED
    except AsrRejected as exc:
        with hub.transaction() as session:
            job = _lock(session, job_id)
            if job is None or job.state != JOB_QUEUED:
                return job.state if job else "missing"
            job.attempts += 1
            tencent_code = (exc.details or {}).get("tencent_code")
            if tencent_code in SUBMIT_AUDIO_FAILURES:
                # The recording could not be fetched: the same cause as a task failing with 10007 later, so the
                # same outcome (quarantined with the recording's URL, where ops look), not a bare failed job.
                job.failure_code = SUBMIT_AUDIO_FAILURES[tencent_code]
                return _failed_audio(session, job, exc.message)
            _fail(job, exc.message)
        return JOB_FAILED
    for _ in range(RECORD_TRIES - 1):
        try:
            return _record_submitted(hub, job_id, task_id)
        except DBAPIError as exc:
            if not database_conflict(exc):
                raise
            log.warning("ASR job %s: recording TaskId %s failed (%s), trying again", job_id, task_id,
                        exc.__class__.__name__)
            time.sleep(RECORD_PAUSE_S)
    return _record_submitted(hub, job_id, task_id)  # the last try: its error is the task's


def _record_submitted(hub: Hub, job_id: uuid.UUID, task_id: int) -> str:
    """Keep the TaskId Tencent gave the job; only then is the submission not made again.

    Tried again by `submit` on a lost connection or a deadlock: given up, the job stayed `queued`, and the sweep
    submitted it again once the claim ran out, a second billed task while the first one's result was never read.
    """
    with hub.transaction() as session:
        job = _lock(session, job_id)
        if job is None or job.state != JOB_QUEUED:
            return job.state if job else "missing"
        now = utcnow()
        job.task_id, job.submitted_on, job.submitted_at, job.state = task_id, now.date(), now, JOB_SUBMITTED
        job.attempts += 1
        job.error = None
        job.next_poll_at = now + timedelta(seconds=POLL_DELAYS_S[0])
        enqueue_after_commit(session, POLL_TASK, str(job.id), job.polls, countdown=POLL_DELAYS_S[0])
    return JOB_SUBMITTED


def _held(job: AsrJob, now: datetime) -> bool:
    """Is a submit of this job in flight, or its retry not due yet? Then another submit must not call Tencent.

    A new job's `next_poll_at` is only the sweep's grace (created + SUBMIT_GRACE_S), which its first submit goes
    ahead of; a claim is set later than that. Honoured for retries only (`attempts` > 0), a first submit that waited
    past the grace on a busy enrich queue ran beside the sweep's copy, and both were sent: two billed tasks.
    """
    if job.next_poll_at is None or job.next_poll_at <= now + timedelta(seconds=DUE_SLACK_S):
        return False
    return bool(job.attempts) or job.next_poll_at > job.created_at + timedelta(seconds=SUBMIT_GRACE_S)


def callback_url(hub: Hub, job: AsrJob) -> str:
    return f"{hub.settings.public_base()}/hooks/asr/{job.callback_token}"


def _record_retry(hub: Hub, job_id: uuid.UUID, exc: RetryableError) -> tuple[int, float]:
    """Count a failed attempt and set when the next is due (4 s, 8 s … 600 s); past the limit the job fails.

    Returns (attempts, seconds until the next one).
    """
    with hub.transaction() as session:
        job = _lock(session, job_id)
        if job is None or job.state != JOB_QUEUED:
            return MAX_SUBMIT_ATTEMPTS, 0.0
        job.attempts += 1
        job.error = _error_text(exc.message)
        delay = min(600.0, 2.0 * 2**job.attempts) * random.uniform(0.8, 1.2)
        job.next_poll_at = utcnow() + timedelta(seconds=delay)
        if job.attempts >= MAX_SUBMIT_ATTEMPTS:
            _fail(job, f"gave up after {job.attempts} attempts: {exc.message}")
        return job.attempts, delay


# ---------------------------------------------------------------- results


@task(POLL_TASK, queue="enrich", max_retries=5)
def poll_job(job_id: str, poll_no: int | None = None) -> str:
    """Ask DescribeTaskStatus about one submitted job and act on the answer.

    `poll_no` is set by the poll schedule itself: the job's `polls` when this poll was scheduled.
    """
    return poll(get_hub(), uuid.UUID(job_id), poll_no=poll_no)


def poll(hub: Hub, job_id: uuid.UUID, client: AsrClient | None = None, *, poll_no: int | None = None) -> str:
    """One status check. A scheduled poll (`poll_no` set) that another poll has overtaken does nothing.

    The sweep and the callback queue polls of their own; whichever runs reschedules the job, so the
    schedule's older poll is stale. Running it anyway started a second chain of polls for the job's day.
    """
    with hub.sessions() as session:
        job = session.get(AsrJob, job_id)
        if job is None or job.state != JOB_SUBMITTED or job.task_id is None:
            return job.state if job else "missing"
        if poll_no is not None and job.polls != poll_no:
            return JOB_SUBMITTED
        task_id = job.task_id
        expired = _expired(job)
    if expired:  # Tencent has dropped the result: asking again can only fail
        return _expire(hub, job_id, task_id)
    try:
        data = (client or AsrClient(hub.settings)).describe(task_id)
    except AsrRejected as exc:
        with hub.transaction() as session:
            job = _lock(session, job_id)
            if job is not None and job.state == JOB_SUBMITTED:
                _fail(job, exc.message)
        return JOB_FAILED
    except RetryableError as exc:
        # The next status check on the poll schedule (10 s … 600 s), noted on the job: not the task runner's
        # retries, which asked six times per sweep and never reached the 24 h expiry below.
        with hub.transaction() as session:
            job = _lock(session, job_id)
            if job is None or job.state != JOB_SUBMITTED or job.task_id != task_id:
                return job.state if job else "missing"
            job.error = _error_text(f"status check failed, retrying: {exc.message}")
            return _schedule_poll(session, job)
    return apply_status(hub, job_id, task_id, data)


def _expired(job: AsrJob) -> bool:
    return utcnow() - (job.submitted_at or job.created_at) > RESULT_TTL


def _expire(hub: Hub, job_id: uuid.UUID, task_id: int) -> str:
    with hub.transaction() as session:
        job = _lock(session, job_id)
        if job is None or job.state != JOB_SUBMITTED or job.task_id != task_id:
            return job.state if job else "missing"
        _fail(job, "asr_result_expired: no result within 24 h")
    return JOB_FAILED


def apply_status(hub: Hub, job_id: uuid.UUID, task_id: int, data: dict[str, Any]) -> str:
    """Act on DescribeTaskStatus `Data` (0 waiting, 1 doing, 2 success, 3 failed).

    A result that cannot be stored fails the job with the reason. Left `submitted`, the job was polled
    again by every sweep until the result expired 24 h later: a DescribeTaskStatus call and the same error
    each time, none of it on the job. A database or transient error still propagates; the sweep tries again.
    """
    from enrichment.finish import store_summary

    status = _int(data.get("Status"), -1)
    try:
        with hub.transaction() as session:
            job = _lock(session, job_id)
            if job is None or job.state != JOB_SUBMITTED or job.task_id != task_id:
                return job.state if job else "missing"
            if status == 2:
                store_summary(hub, session, job, data)
                return job.state
            if status == 3:
                return _failed_audio(session, job, str(data.get("ErrorMsg") or data.get("StatusStr") or "failed"))
            job.error = None  # Tencent answered: an earlier failed status check is history
            return _schedule_poll(session, job)
    except (DBAPIError, RetryableError):
        raise
    except Exception as exc:
        log.exception("ASR job %s: the result (Status %s) could not be stored", job_id, status)
        with hub.transaction() as session:
            job = _lock(session, job_id)
            if job is None or job.state != JOB_SUBMITTED or job.task_id != task_id:
                return job.state if job else "missing"
            _fail(job, f"result_not_stored: {exc.__class__.__name__}: {exc}")
        return JOB_FAILED


def _schedule_poll(session: Session, job: AsrJob) -> str:
    now = utcnow()
    if _expired(job):
        _fail(job, "asr_result_expired: no result within 24 h")
        return JOB_FAILED
    delay = POLL_DELAYS_S[min(job.polls, len(POLL_DELAYS_S) - 1)]
    job.polls += 1
    job.next_poll_at = now + timedelta(seconds=delay)
    enqueue_after_commit(session, POLL_TASK, str(job.id), job.polls, countdown=delay)
    return JOB_SUBMITTED


def _failed_audio(session: Session, job: AsrJob, message: str) -> str:
    code = audio_failure_code(job.failure_code, message)
    if code is None:
        _fail(job, f"asr_failed: {message}")
        return JOB_FAILED
    reason = f"asr_{AUDIO_FAILURES[code]}"
    job.state, job.failure_code, job.next_poll_at = JOB_QUARANTINED, code, None
    job.error = _error_text(f"{reason} ({code}): {message}")
    source_id = job.source_id if job.source_id and session.get(SourceRow, job.source_id) else None
    quarantine(session, source_id, None, reason, job.error, {
        "asr_job_id": str(job.id), "call_event_id": str(job.call_event_id), "task_id": job.task_id,
        "recording_url": job.recording_url, "code": code, "message": message,
    })
    return JOB_QUARANTINED


def _fail(job: AsrJob, error: str) -> None:
    job.state, job.error, job.next_poll_at = JOB_FAILED, _error_text(error), None


def _error_text(error: str) -> str:
    """Tencent's words as the job's error: its ErrorMsg may hold a NUL, which PostgreSQL refuses in text (the failure
    went unrecorded and the job was polled again for 24 hours)."""
    return storable_text(error)[:2000]


def _lock(session: Session, job_id: uuid.UUID) -> AsrJob | None:
    stmt = select(AsrJob).where(AsrJob.id == job_id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.scalars(stmt).first()


# ---------------------------------------------------------------- callback and sweep


def accept_callback(hub: Hub, token: str, form: dict[str, str]) -> bool:
    """Note Tencent's (unsigned) callback and queue a DescribeTaskStatus to confirm it.

    The callback's text is never trusted: the confirming poll reads the result with the
    hub's own credentials and the TaskId stored at submit time. Returns False for an unknown token,
    without a query for one no job can have (`%00` in it was a 500 on PostgreSQL).
    """
    if not _TOKEN.fullmatch(token):
        return False
    with hub.transaction() as session:
        job = session.scalars(select(AsrJob).where(AsrJob.callback_token == token)).first()
        if job is None:
            return False
        if job.state != JOB_SUBMITTED:
            return True
        job.callback_at = utcnow()
        code = _int(form.get("code"), 0)
        if code in AUDIO_FAILURES and str(form.get("requestId", "")) == str(job.task_id):
            job.failure_code = code
        enqueue_after_commit(session, POLL_TASK, str(job.id))
    return True


@task(SWEEP_TASK, queue="enrich")
def sweep() -> int:
    """Periodic: re-enqueue jobs whose submit or poll is due (a lost enqueue, a missed callback), and company
    lookups whose registry was down."""
    from enrichment.company import retry_due

    hub = get_hub()
    return sweep_due(hub) + retry_due(hub)


def sweep_due(hub: Hub) -> int:
    now = utcnow()
    with hub.sessions() as session:
        rows = session.execute(
            select(AsrJob.id, AsrJob.state)
            .where(AsrJob.state.in_((JOB_QUEUED, JOB_SUBMITTED)), AsrJob.next_poll_at <= now)
            .order_by(AsrJob.next_poll_at).limit(SWEEP_BATCH)
        ).all()
    for job_id, state in rows:
        enqueue(SUBMIT_TASK if state == JOB_QUEUED else POLL_TASK, str(job_id))
    return len(rows)

