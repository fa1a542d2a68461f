"""Company profiles from the credit registry (天眼查 / 企查查), cached per USCC.

An event that carries an account identity `uscc` whose profile is missing or older than
`CRMHUB_REGISTRY_CACHE_TTL_S` queues one lookup (debounced, since registry calls are paid
per call). The lookup uses the oldest enabled `credit_registry` source through the
connector's `lookup(config, uscc, http)`, caches the answer in company_profiles, and
stores a `company.profile.updated` event so the profile reaches the CRM core.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from enrichment.models import CompanyProfile
from hub.errors import HubError, InvalidRequest, NotFound, RetryableError
from hub.identifiers import normalize_identity
from hub.models import EventRow, SourceRow
from hub.outbound import outbound_client
from hub.pipeline import BATCH_CACHE, database_conflict, store_internal
from hub.runtime import ActiveSource, Hub, get_hub
from hub.schemas import EventDraft, Identity, UnifiedEvent, storable_text, utcnow
from hub.tasks import enqueue_after_commit, task

log = logging.getLogger(__name__)

LOOKUP_TASK = "enrichment.company.lookup_task"
REGISTRY_CONNECTOR = "credit_registry"
PROFILE_EVENT = "company.profile.updated"
REQUEST_DEBOUNCE_S = 600.0  # a queued lookup is not queued again within this window
RETRY_MAX_DELAY_S = 6 * 3600.0
MAX_LOOKUP_FAILURES = 12  # transient failures in a row before a lookup waits for the next event
RETRY_BATCH = 200
HTTP_TIMEOUT_S = 5.0
STORE_TRIES = 3  # stores of a registry answer before it is given up (a lost connection, a lost race)
STORE_PAUSE_S = 0.05


# ---------------------------------------------------------------- triggering


def request_lookups(event: UnifiedEvent, session: Session, ttl_s: float) -> list[str]:
    """Queue a lookup for each stale or unknown USCC on `event`; returns the USCCs queued."""
    if event.type == PROFILE_EVENT:
        return []
    queued = []
    for ident in event.identities:
        if ident.type == "uscc" and _request(session, ident.value, event.account_id, ttl_s):
            queued.append(ident.value)
    return queued


PROFILES_KEY = "enrichment_profiles"
TTL_KEY = "enrichment_profile_ttl_s"


def lookup_ttl_s(hub: Hub, session: Session) -> float:
    """How long a profile may be reused: the registry source's `cache_ttl_s`, else CRMHUB_REGISTRY_CACHE_TTL_S."""
    try:
        source = registry_source(hub, session)
    except NotFound:
        return float(hub.settings.registry_cache_ttl_s)
    ttl = getattr(source.config, "cache_ttl_s", None)
    return float(ttl) if ttl is not None else float(hub.settings.registry_cache_ttl_s)


def batch_ttl_s(hub: Hub, session: Session) -> float:
    """`lookup_ttl_s`, read once per stored batch (`preload_profiles`), else now."""
    ttl = session.info.get(BATCH_CACHE, {}).get(TTL_KEY)
    return float(ttl) if ttl is not None else lookup_ttl_s(hub, session)


def preload_profiles(session: Session, usccs: list[str]) -> None:
    """`events_prepared`: the batch's company profiles in one query, held for `_request`'s `session.get`."""
    wanted = sorted(set(usccs))
    if wanted:
        session.info[BATCH_CACHE][TTL_KEY] = lookup_ttl_s(get_hub(), session)
    held = session.info[BATCH_CACHE].setdefault(PROFILES_KEY, [])  # the identity map holds rows weakly
    for i in range(0, len(wanted), 400):
        held += session.scalars(select(CompanyProfile).where(CompanyProfile.uscc.in_(wanted[i : i + 400])))


def _request(session: Session, uscc: str, account_id: uuid.UUID | None, ttl_s: float) -> bool:
    now = utcnow()
    row = session.get(CompanyProfile, uscc)
    if row is not None:
        if row.fetched_at is not None and now - row.fetched_at < timedelta(seconds=ttl_s):
            return False
        if row.requested_at is not None and now - row.requested_at < timedelta(seconds=REQUEST_DEBOUNCE_S):
            return False
        if not _claim_stale(session, row, now, account_id, ttl_s):
            return False
    else:
        try:
            with session.begin_nested():  # a concurrent event may insert the same USCC first
                row = CompanyProfile(uscc=uscc, account_id=account_id, requested_at=now)
                session.add(row)
        except IntegrityError:
            return False
        if BATCH_CACHE in session.info:
            session.info[BATCH_CACHE].setdefault(PROFILES_KEY, []).append(row)
    enqueue_after_commit(session, LOOKUP_TASK, uscc)
    return True


def _claim_stale(
    session: Session, row: CompanyProfile, now: datetime, account_id: uuid.UUID | None, ttl_s: float
) -> bool:
    """Mark a stale profile requested, unless another transaction has just done so.

    On PostgreSQL two events for one company, processed at once, each read the profile stale and each queued a
    lookup: two paid registry calls. The UPDATE repeats the staleness test in its WHERE; the second one waits
    for the first's row lock, then tests the committed row again, finds it requested and changes nothing.
    """
    claimed = session.execute(
        update(CompanyProfile)
        .where(
            CompanyProfile.uscc == row.uscc,
            or_(CompanyProfile.fetched_at.is_(None), CompanyProfile.fetched_at <= now - timedelta(seconds=ttl_s)),
            or_(CompanyProfile.requested_at.is_(None),
                CompanyProfile.requested_at <= now - timedelta(seconds=REQUEST_DEBOUNCE_S)),
        )
        # error: an earlier refusal's; until this lookup answers, `retry_due` may tell it was lost
        .values(requested_at=now, error=None, account_id=func.coalesce(CompanyProfile.account_id, account_id))
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed:  # what the row now holds, for the batch's later events: not a change left to flush
        set_committed_value(row, "requested_at", now)
        set_committed_value(row, "error", None)
        set_committed_value(row, "account_id", row.account_id or account_id)
    return bool(claimed)


# ---------------------------------------------------------------- the lookup


@task(LOOKUP_TASK, queue="enrich")
def lookup_task(uscc: str) -> str:
    """Look one USCC up (unless a fresh profile exists). Returns "cached", "updated", "retry_later" or "error".

    A transient registry failure is not retried by the task runner (its retries come within seconds, and a
    registry outage outlasts them): `lookup_company` counts it on the profile and `retry_due` tries again
    after a backoff.
    """
    try:
        _, outcome = lookup_company(get_hub(), uscc)
    except RetryableError as exc:
        log.warning("company lookup for %s failed, will retry: %s", uscc, exc.message)
        return "retry_later"
    except HubError as exc:
        # No registry configured is a deployment choice, not a fault: say so quietly.
        level = logging.INFO if exc.code == "no_registry_source" else logging.WARNING
        log.log(level, "company lookup for %s failed: %s", uscc, exc.message)
        return "error"
    return outcome


def lookup_company(
    hub: Hub, uscc: str, *, force: bool = False, http: httpx.Client | None = None
) -> tuple[dict[str, Any], str]:
    """The company's profile properties (contract §6) and "cached" or "updated".

    Raises InvalidRequest for an invalid USCC, NotFound when no registry source is enabled,
    RetryableError for a transient registry failure, and the connector's HubError otherwise
    (recorded in company_profiles.error).
    """
    code = _valid_uscc(uscc)
    with hub.sessions() as session:
        row = session.get(CompanyProfile, code)
        if not force and row is not None and row.properties is not None and _fresh(row, lookup_ttl_s(hub, session)):
            return dict(row.properties), "cached"
        source = registry_source(hub, session)
    try:
        props = _call_lookup(source, code, http)
    except RetryableError as exc:
        _record_error(hub, code, f"registry unavailable, will retry: {exc.message}", transient=True)
        raise
    except HubError as exc:
        _record_error(hub, code, exc.message)
        raise
    for _ in range(STORE_TRIES - 1):
        # The answer is paid for: a lost connection or a lost race while storing it is tried again here, not left
        # to `retry_due`, which would find the lookup unanswered only after REQUEST_DEBOUNCE_S and pay again.
        try:
            _store_profile(hub, source, code, props)
            return props, "updated"
        except (DBAPIError, RetryableError) as exc:
            if isinstance(exc, DBAPIError) and not database_conflict(exc):
                raise
            log.warning("storing the profile of %s failed (%s), trying again", code, exc.__class__.__name__)
            time.sleep(STORE_PAUSE_S)
    _store_profile(hub, source, code, props)  # the last try: its error is the caller's
    return props, "updated"


def _valid_uscc(uscc: str) -> str:
    result = normalize_identity("uscc", uscc)
    if result.value is None:
        raise InvalidRequest(f"{uscc!r} is not a valid unified social credit code ({result.reason})",
                             code="invalid_uscc")
    return result.value


def _fresh(row: CompanyProfile, ttl_s: float) -> bool:
    return row.fetched_at is not None and utcnow() - row.fetched_at < timedelta(seconds=ttl_s)


def registry_source(hub: Hub, session: Session) -> ActiveSource:
    """The oldest enabled credit_registry source (contract §3: "lookups use the oldest")."""
    row = session.scalars(
        select(SourceRow).where(SourceRow.connector == REGISTRY_CONNECTOR, SourceRow.enabled.is_(True))
        .order_by(SourceRow.created_at, SourceRow.id).limit(1)
    ).first()
    if row is None:
        raise NotFound("no enabled credit_registry source; add one with POST /v1/sources", code="no_registry_source")
    return hub.load_source(row)


def _call_lookup(source: ActiveSource, uscc: str, http: httpx.Client | None) -> dict[str, Any]:
    lookup = getattr(source.connector, "lookup", None)
    if lookup is None:
        raise HubError(f"connector {source.connector.name!r} has no lookup()", code="registry_unsupported")
    if http is not None:
        return dict(lookup(source.config, uscc, http))
    with outbound_client(HTTP_TIMEOUT_S) as client:
        return dict(lookup(source.config, uscc, client))


def _record_error(hub: Hub, uscc: str, message: str, *, transient: bool = False) -> None:
    """Note a failed lookup. A transient one counts towards the retries (`retry_due`), from now."""
    with hub.transaction() as session:
        row = session.get(CompanyProfile, uscc) or CompanyProfile(uscc=uscc, lookup_failures=0)
        row.error = storable_text(message)[:2000]  # the registry's own words: PostgreSQL refuses a NUL in text
        if transient:
            row.lookup_failures = (row.lookup_failures or 0) + 1
            row.requested_at = utcnow()  # the backoff runs from this attempt
        else:
            row.lookup_failures = 0  # refused for good (unknown company, bad credentials): not retried
        session.add(row)


def retry_delay_s(failures: int) -> float:
    """10 min after the first transient failure, doubling to at most 6 h."""
    return min(RETRY_MAX_DELAY_S, REQUEST_DEBOUNCE_S * 2 ** max(0, failures - 1))


def retry_due(hub: Hub) -> int:
    """Periodic (with the ASR sweep): queue again the lookups whose last try failed transiently and whose
    backoff has passed, up to MAX_LOOKUP_FAILURES tries (about two days), and the lookups requested but never
    answered. Returns how many were queued.

    A lookup is unanswered when it was requested over REQUEST_DEBOUNCE_S ago and has neither a profile from then
    nor an error: its task was lost (the in-process lane was full, or the process stopped before running it;
    a broker can lose one too). Before, it waited for the company's next event. Queuing it again counts as a
    failure, so a lookup that keeps vanishing backs off and stops like a failing one.
    """
    now = utcnow()
    due = now - timedelta(seconds=REQUEST_DEBOUNCE_S)
    queued = 0
    with hub.transaction() as session:
        rows = session.scalars(_unclaimed(session,
            select(CompanyProfile)
            .where(CompanyProfile.lookup_failures > 0, CompanyProfile.lookup_failures < MAX_LOOKUP_FAILURES,
                   CompanyProfile.requested_at <= due)
            .order_by(CompanyProfile.requested_at).limit(RETRY_BATCH)
        )).all()
        for row in rows:
            if row.requested_at is not None and now - row.requested_at < timedelta(
                    seconds=retry_delay_s(row.lookup_failures)):
                continue
            row.requested_at = now
            enqueue_after_commit(session, LOOKUP_TASK, row.uscc)
            queued += 1
        if _has_registry(session):  # without one, lookups end at once with no_registry_source, and wait
            for row in session.scalars(_unclaimed(session,
                select(CompanyProfile)
                .where(CompanyProfile.lookup_failures == 0, CompanyProfile.error.is_(None),
                       CompanyProfile.requested_at <= due,
                       CompanyProfile.fetched_at.is_(None) | (CompanyProfile.fetched_at < CompanyProfile.requested_at))
                .order_by(CompanyProfile.requested_at).limit(RETRY_BATCH)
            )):
                log.info("company lookup for %s requested at %s was never answered: queued again", row.uscc,
                         row.requested_at)
                row.requested_at, row.lookup_failures = now, 1
                enqueue_after_commit(session, LOOKUP_TASK, row.uscc)
                queued += 1
    return queued


def _unclaimed(session: Session, stmt: Any) -> Any:
    """PostgreSQL: lock the rows `retry_due` takes and skip those another run holds. Two overlapping sweeps (two
    beats, or sweeps queued behind a busy enrich worker) each read the same due rows and each queued a lookup:
    two paid registry calls for one company."""
    return stmt.with_for_update(skip_locked=True) if session.get_bind().dialect.name == "postgresql" else stmt


def _has_registry(session: Session) -> bool:
    return session.scalar(select(SourceRow.id).where(SourceRow.connector == REGISTRY_CONNECTOR,
                                                     SourceRow.enabled.is_(True)).limit(1)) is not None


def _store_profile(hub: Hub, source: ActiveSource, uscc: str, props: dict[str, Any]) -> None:
    draft = profile_draft(source, uscc, props)
    with hub.transaction() as session:
        row = session.get(CompanyProfile, uscc) or CompanyProfile(uscc=uscc)
        if row.properties is not None and row.fetched_at is not None:
            draft = _as_change(session, draft, profile_draft(source, uscc, row.properties), row.fetched_at)
        row.properties, row.fetched_at, row.requested_at = props, utcnow(), None
        row.error, row.source_id, row.lookup_failures = None, source.id, 0
        session.add(row)
        session.flush()  # the profile is fresh before its own event reaches event_stored
        store_internal(hub, session, [draft], source=REGISTRY_CONNECTOR)
        account_id = session.scalars(
            select(EventRow.account_id).where(EventRow.source == REGISTRY_CONNECTOR, EventRow.source_id.is_(None),
                                              EventRow.source_event_id == draft.source_event_id)
        ).first()
        row.account_id = account_id or row.account_id


def _as_change(session: Session, draft: EventDraft, previous: EventDraft, previous_at: datetime) -> EventDraft:
    """The draft, with an id of its own when the profile changes back to an earlier one.

    The id is derived from the content, so "37 insured, then 38, then 37 again" gave the third profile the
    first one's id: it was dropped as a duplicate, and the account kept the 38 the registry no longer said.
    The suffix is the replaced profile's fetch time, the same for two lookups that raced on one change.
    """
    if draft.source_event_id == previous.source_event_id:
        return draft  # unchanged: deduplicated as before
    taken = session.scalars(select(EventRow.id).where(
        EventRow.source == REGISTRY_CONNECTOR, EventRow.source_id.is_(None),
        EventRow.source_event_id == draft.source_event_id)).first()
    if taken is None:
        return draft
    suffix = int(previous_at.timestamp() * 1000)
    return draft.model_copy(update={"source_event_id": f"{draft.source_event_id}:after:{suffix}"})


def profile_draft(source: ActiveSource, uscc: str, props: dict[str, Any]) -> EventDraft:
    """The connector's own `profile_event()` when it has one; otherwise the same shape built here."""
    make = getattr(source.connector, "profile_event", None)
    if make is not None:
        draft: EventDraft = make(uscc, props)
        return draft
    digest = hashlib.sha256(json.dumps(props, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return EventDraft(type=PROFILE_EVENT, source_event_id=f"registry:{uscc}:{digest}", occurred_at=utcnow(),
                      identities=[Identity(type="uscc", value=uscc)], properties={"uscc": uscc, **props})
