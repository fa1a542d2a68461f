"""raw event → connector.parse → quality → resolve_identity → store → event_stored → handled.

Each step is idempotent on the raw row id: a handled row is skipped, and events
are unique on (source, source_event_id), so re-running after a crash or a replay
never stores an event twice.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, or_, select, update
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from hub import metrics
from hub.connector import InboundRequest, ParseContext, SetAside
from hub.db import JSONText, after_commit, try_advisory_lock
from hub.errors import HubError, PayloadError, QuarantineError, RetryableError
from hub.identifiers import is_placeholder, normalize_identity, parse_placeholders
from hub.ids import new_id
from hub.ingest import storable_key
from hub.models import (
    RAW_FAILED,
    RAW_HANDLED,
    RAW_PENDING,
    RAW_QUARANTINED,
    EventRow,
    QuarantineRow,
    RawEvent,
    SourceCursor,
    SourceRow,
)
from hub.orders import enforce_formal_order_rule
from hub.quality import clean_fields
from hub.runtime import Hub, get_hub
from hub.schemas import (
    MAX_NESTING,
    Campaign,
    EventDraft,
    Identity,
    QualityIssue,
    UnifiedEvent,
    nests_deeper,
    unstorable_text,
    utcnow,
)
from hub.tasks import enqueue, task
from hub.values import plausible_time

log = logging.getLogger(__name__)

MAX_DERIVED_PER_EVENT = 100
# session.info key where `events_prepared` hooks keep what they loaded for one batch.
BATCH_CACHE = "batch_cache"


class DbState:
    """`ParseContext.state` backed by source_cursors, inside the pipeline's transaction.

    Keys are often built from the platform's ids (`order:<order_no>`, `call:<SessionId>`): one the column cannot
    hold (a NUL, a lone surrogate, over 300 characters) is kept under its digest (`storable_key`). Looked up as
    sent, it failed the request on PostgreSQL before the connector could quarantine anything.
    """

    def __init__(self, session: Session, source_id: uuid.UUID) -> None:
        self.session = session
        self.source_id = source_id

    def get(self, key: str) -> Any:
        row = self.session.get(SourceCursor, (self.source_id, storable_key(key)))
        return None if row is None else row.value

    def set(self, key: str, value: Any) -> None:
        key = storable_key(key)
        row = self.session.get(SourceCursor, (self.source_id, key))
        if row is None:
            self.session.add(SourceCursor(source_id=self.source_id, key=key, value=value))
        else:
            row.value = value


# ---------------------------------------------------------------- the task


# A request whose counted runs died with their process this many times is failed instead of run again.
MAX_UNFINISHED_RUNS = 3


# What a copy of a row returns when a live process is running that row counted: that run finishes it or retries it.
RUNNING_ELSEWHERE = "running elsewhere"

# What the first transaction of an old row's run returns once it has counted the run: the work follows, counted.
_COUNTED = "counted"


@task("hub.pipeline.process_raw", queue="ingest", max_retries=8)
def process_raw(raw_id: int) -> str:
    """Process one stored request. Returns the raw row's final status.

    A run that kills its process (out of memory, a crash in a C library) rolls back everything, its attempt
    included, and leaves the row pending: the requeue sweep would run it again every minute, taking a Celery
    worker child, or the whole in-process server at each start, down with it for ever. So a row older than the
    requeue delay (one left pending, or behind a backlog) is run counted: the transaction that reads the row
    finds it old and commits `unfinished_runs` one up instead of doing the work, and the work's own transaction
    sets it back to 0 (a separate one does when the work raised or rolled back: a run that ends in Python is
    uncounted however it ends). Once MAX_UNFINISHED_RUNS counted runs never ended, the row is failed with a
    reason, and `crmhub replay` runs it again. A fresh row, the common case, costs no extra commit.
    """
    hub = get_hub()
    with ExitStack() as held:  # a counted run's lock, held until its work has ended
        status = _run(hub, raw_id, counted=False, held=held)
        if status != _COUNTED:
            return status
        try:
            return _run(hub, raw_id, counted=True, held=held)
        except BaseException:
            _end_counted_run(hub, raw_id)
            raise


def _sole_counted_run(hub: Hub, raw_id: int, held: ExitStack) -> bool:
    """Whether this is the only live counted run of the row (its lock then held by `held`); never waits.

    On Celery the sweep queues a copy of every old pending row per pass, and a worker's children run copies of one
    row at once: each counted itself, so six live copies of a healthy row went past MAX_UNFINISHED_RUNS and one set
    it aside while another stored it. A PostgreSQL session advisory lock on a connection of its own is held for the
    run and goes with a killed process, so only runs that died are counted. SQLite's in-process runner never runs
    two copies at once.
    """
    if hub.engine.dialect.name != "postgresql":
        return True
    try:
        return held.enter_context(
            try_advisory_lock(hub.engine, f"crmhub-raw:{raw_id}".encode(), f"raw event {raw_id}'s run"))
    except DBAPIError as exc:
        raise RetryableError(f"could not take the run's lock: {exc.__class__.__name__}") from exc


def _run(hub: Hub, raw_id: int, *, counted: bool, held: ExitStack) -> str:
    """One transaction of the run: the work, or (an old row's first, `counted` False) the count before it."""
    try:
        with hub.transaction() as session:
            status = _process(hub, session, raw_id, counted=counted, held=held)
            if counted:
                _uncount(session, raw_id)
            return status
    except (QuarantineError, RetryableError):
        raise
    except DBAPIError as exc:
        if _never_storable(exc):
            # The database refuses this content itself (a value longer than its column, a NULL where none may
            # be): retrying cannot help, and the row would stay pending, retried by every requeue sweep.
            log.error("raw event %s cannot be stored: %s", raw_id, exc.orig)
            _mark_failed(hub, raw_id, exc, uncount=counted)
            return RAW_FAILED
        if database_conflict(exc):
            # A deadlock or a lost race on a unique key (another worker stored the same
            # customer or event first): the transaction rolled back, so running again is safe.
            metrics.PROCESS_RETRIES.inc()
            raise RetryableError(f"database conflict, retrying: {exc.__class__.__name__}") from exc
        raise RetryableError(str(exc)) from exc
    except HubError as exc:  # raised on purpose, with a message that says what to do: no traceback in the log
        log.error("raw event %s failed: %s", raw_id, exc.message)
        _mark_failed(hub, raw_id, exc, uncount=counted)
        return RAW_FAILED
    except Exception as exc:
        log.exception("raw event %s failed", raw_id)
        _mark_failed(hub, raw_id, exc, uncount=counted)
        return RAW_FAILED


def _older_than_requeue_delay(hub: Hub, raw: RawEvent) -> bool:
    return raw.received_at < utcnow() - timedelta(seconds=hub.settings.requeue_after_s)


def _start_counted_run(hub: Hub, session: Session, raw: RawEvent, held: ExitStack) -> str:
    """Count the run about to start, in the transaction that found the row old (committed before the work):
    _COUNTED; RUNNING_ELSEWHERE; RAW_FAILED, the row set aside, when too many died."""
    if not _sole_counted_run(hub, raw.id, held):
        return RUNNING_ELSEWHERE
    runs = session.scalar(
        update(RawEvent)
        .where(RawEvent.id == raw.id, RawEvent.status == RAW_PENDING)
        .values(unfinished_runs=RawEvent.unfinished_runs + 1)
        .returning(RawEvent.unfinished_runs)
    )
    if runs is None or runs <= MAX_UNFINISHED_RUNS:  # None: not pending (failed before); the run will say so
        return _COUNTED
    died = runs - 1
    session.execute(
        update(RawEvent)
        .where(RawEvent.id == raw.id)
        .values(status=RAW_FAILED, unfinished_runs=died, error=(
            f"set aside: {died} runs on this request never finished (the process running them was "
            "killed: out of memory, a crash, a kill -9); it is not run again on its own. Find the cause, "
            "then `crmhub replay` runs it again"
        ))
    )
    log.error("raw event %s set aside: %d runs on it never finished (their process died)", raw.id, died)
    after_commit(session, metrics.EVENTS_FAILED.inc)
    return RAW_FAILED


def _uncount(session: Session, raw_id: int) -> None:
    """The counted run ended: cleared in the transaction that stores its outcome, no commit of its own."""
    raw = session.get(RawEvent, raw_id)  # the row the run locked: no query
    if raw is not None:
        raw.unfinished_runs = 0


def _end_counted_run(hub: Hub, raw_id: int) -> None:
    """The counted run ended in Python but its transaction rolled back: cleared in one of its own."""
    try:
        with hub.transaction() as session:
            session.execute(update(RawEvent).where(RawEvent.id == raw_id).values(unfinished_runs=0))
    except DBAPIError as exc:  # the run itself ended; at worst this one counts towards setting the row aside
        log.warning("raw event %s: could not record that its run ended: %s", raw_id, exc.__class__.__name__)


# SQLSTATEs and SQLite messages of content the database will never take (PostgreSQL class 22, data exceptions,
# reaches us as DataError; these are class 23 ones that are not a race with another worker).
_REFUSED_SQLSTATES = frozenset({"23502", "23514"})  # not_null_violation, check_violation
_REFUSED_SQLITE = ("NOT NULL constraint failed", "CHECK constraint failed")


def _never_storable(exc: DBAPIError) -> bool:
    if isinstance(exc, DataError):
        return True
    if not isinstance(exc, IntegrityError):
        return False
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code in _REFUSED_SQLSTATES or str(exc.orig).startswith(_REFUSED_SQLITE)


def database_conflict(exc: DBAPIError) -> bool:
    """A deadlock, a serialization failure, a lock or connection lost, a lost race on a unique key: the
    transaction rolled back and the same step, run again, may well succeed. Content the database refuses
    (`_never_storable`) is not one. Identity's split retries on what process_raw retries on."""
    return isinstance(exc, OperationalError | IntegrityError) and not _never_storable(exc)


def _process(hub: Hub, session: Session, raw_id: int, *, counted: bool, held: ExitStack) -> str:
    raw = _lock_raw(session, raw_id)
    if raw is None or raw.status in (RAW_HANDLED, RAW_QUARANTINED):
        return raw.status if raw else "missing"
    if _set_aside(raw):
        return RAW_FAILED
    if not counted and _older_than_requeue_delay(hub, raw):  # known from the row: counted before any work
        return _start_counted_run(hub, session, raw, held)
    source_row = session.get(SourceRow, raw.source_id)
    if source_row is None:
        raw.status, raw.error = RAW_FAILED, "source deleted"
        return RAW_FAILED
    source = hub.load_source(source_row)
    request = InboundRequest.from_record(raw.request, raw.body)
    ctx = ParseContext(source.id, source.name, raw.received_at, DbState(session, source.id), http=hub.http)
    raw.attempts += 1
    try:
        drafts = source.connector.parse(request, source.config, ctx)
    except (QuarantineError, PayloadError) as exc:  # a PayloadError here: stored because it verified, unreadable
        reason = exc.reason if isinstance(exc, QuarantineError) else exc.code
        quarantine(session, source.id, raw.id, reason, exc.message, _raw_payload(raw), exc.details)
        raw.status, raw.error, raw.handled_at = RAW_QUARANTINED, reason, utcnow()
        _count_quarantined(session, source.connector.name, 1)
        return RAW_QUARANTINED
    drafts = _set_aside_unstorable_drafts(drafts, ctx)
    items = _quarantine_items(session, source.id, raw.id, ctx.quarantined)
    for item in items:
        quarantine(session, source.id, raw.id, item.reason, item.detail, {"item": item.payload}, item_key=item.key)
    _count_quarantined(session, source.connector.name, len(items))
    earlier = _events_of_earlier_runs(session, raw, drafts)
    _, duplicates = store_drafts(  # its count adds what resolution emitted (customer.merged): not the request's
        hub,
        session,
        drafts,
        source=source.connector.name,
        source_id=source.id,
        received_at=raw.received_at,
        raw_event_id=raw.id,
    )
    raw.status, raw.error, raw.handled_at = RAW_HANDLED, None, utcnow()
    # The request's own events, as its reply counted them. A replay finds those its first run stored: they are its
    # events, not duplicates.
    raw.events_stored, raw.events_duplicate = len(drafts) - duplicates + earlier, duplicates - earlier
    connector, received_at = source.connector.name, raw.received_at
    after_commit(session, lambda: metrics.observe_lag(connector, received_at))
    return RAW_HANDLED


def _set_aside(raw: RawEvent) -> bool:
    """Failed by `_start_counted_run`: a copy of the task queued before (by the sweep, each minute it was pending)
    would run it again, uncounted as it is no longer pending, and die with it. Only replay, which resets the count,
    runs it again."""
    return raw.status == RAW_FAILED and raw.unfinished_runs >= MAX_UNFINISHED_RUNS


def _events_of_earlier_runs(session: Session, raw: RawEvent, drafts: list[EventDraft]) -> int:
    """How many of the drafts an earlier run of this request stored (a replay); a first run skips the read."""
    if raw.handled_at is None or not drafts:
        return 0
    ids = list({d.source_event_id for d in drafts})
    return sum(int(session.scalar(select(func.count()).select_from(EventRow).where(
        EventRow.raw_event_id == raw.id, EventRow.source_event_id.in_(chunk))) or 0) for chunk in _chunks(ids, 500))


def _set_aside_unstorable_drafts(drafts: list[EventDraft], ctx: ParseContext) -> list[EventDraft]:
    """Drafts whose id or type no database can store (a NUL, an unpaired surrogate) are quarantined; they failed the
    request. A type comes from the platform too (Douyin's `douyin.<event>`): `"event": "a\\ud800"` failed it.

    So are drafts whose properties or traits nest deeper than MAX_NESTING levels (`too_deep`): they failed it too.
    """
    kept = []
    for draft in drafts:
        problem = unstorable_text(draft.source_event_id, "source_event_id")
        reason = "unstorable_id"
        if problem is None:
            problem, reason = unstorable_text(draft.type, "type"), "unstorable_type"
        if problem is not None:
            shown = {k: v.encode("ascii", "backslashreplace").decode()
                     for k, v in (("type", draft.type), ("source_event_id", draft.source_event_id))}
            ctx.quarantine(reason, problem, shown)
        elif nests_deeper(draft.properties) or nests_deeper(draft.traits):
            ctx.quarantine("too_deep", f"properties or traits nest deeper than {MAX_NESTING} levels",
                           {"type": draft.type, "source_event_id": draft.source_event_id})
        else:
            kept.append(draft)
    return kept


def _count_quarantined(session: Session, connector: str, n: int) -> None:
    """Count quarantined payloads once committed: a rolled-back run (retried later) quarantined nothing."""
    if n:
        after_commit(session, lambda: metrics.EVENTS_QUARANTINED.labels(connector).inc(n))


def _lock_raw(session: Session, raw_id: int) -> RawEvent | None:
    stmt = select(RawEvent).where(RawEvent.id == raw_id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.scalars(stmt).first()


def _mark_failed(hub: Hub, raw_id: int, exc: BaseException, *, uncount: bool = False) -> None:
    """`uncount`: a counted run ended here, its own transaction rolled back; this one clears its count."""
    values: dict[str, Any] = {
        "status": RAW_FAILED, "error": f"{exc.__class__.__name__}: {exc}"[:2000], "attempts": RawEvent.attempts + 1}
    if uncount:
        values["unfinished_runs"] = 0
    with hub.transaction() as session:
        session.execute(update(RawEvent).where(RawEvent.id == raw_id).values(**values))
    metrics.EVENTS_FAILED.inc()


def _raw_payload(raw: RawEvent) -> dict[str, Any]:
    return {"request": raw.request, "body": raw.body.decode("utf-8", errors="replace")[:100_000]}


def quarantine(
    session: Session,
    source_id: uuid.UUID | None,
    raw_event_id: int | None,
    reason: str,
    detail: str | None,
    payload: dict[str, Any] | None,
    extra: Any = None,
    item_key: str | None = None,
) -> None:
    if extra is not None and payload is not None:
        payload = {**payload, "details": extra}
    session.add(QuarantineRow(source_id=source_id, raw_event_id=raw_event_id, reason=reason, detail=detail,
                              payload=payload, item_key=item_key))


def _quarantine_items(session: Session, source_id: uuid.UUID, raw_id: int, items: list[SetAside]) -> list[SetAside]:
    """The items to add to the quarantine table: those without a key, and keyed ones it does not hold yet.

    A keyed item it already holds for this source (the same bad spreadsheet row, imported again in another
    batch or file) is not added twice: its row is brought up to date instead — this request, its reason and
    detail, now — so today's data-health report lists it and a replay of this request finds it. Items repeated
    within the request count once. One query per 500 keys, one executemany for the updates.
    """
    keys = list(dict.fromkeys(i.key for i in items if i.key))
    held: set[str] = set()
    for chunk in _chunks(keys, 500):
        held.update(k for k in session.scalars(select(QuarantineRow.item_key).where(
            QuarantineRow.source_id == source_id, QuarantineRow.item_key.in_(chunk))) if k)
    out, refreshed, seen = [], {}, set()
    for item in items:
        key = item.key
        if key:
            if key in seen:
                continue
            seen.add(key)
            if key in held:
                refreshed[key] = {"k": key, "raw": raw_id, "why": item.reason, "what": item.detail,
                                  "body": {"item": item.payload}, "at": utcnow()}
                continue
        out.append(item)
    if refreshed:
        session.execute(_REFRESH_QUARANTINE, [{**r, "s": source_id} for r in refreshed.values()])
    return out


# Built once (executemany per batch): bring a held keyed item up to date.
_QUARANTINE = QuarantineRow.__table__
_REFRESH_QUARANTINE = (
    update(_QUARANTINE)
    .where(_QUARANTINE.c.source_id == bindparam("s"), _QUARANTINE.c.item_key == bindparam("k"))
    .values(raw_event_id=bindparam("raw"), reason=bindparam("why"), detail=bindparam("what"),
            payload=bindparam("body"), created_at=bindparam("at"))
)


# ---------------------------------------------------------------- storing events


def store_drafts(
    hub: Hub,
    session: Session,
    drafts: Iterable[EventDraft],
    *,
    source: str,
    source_id: uuid.UUID | None,
    received_at: datetime | None = None,
    raw_event_id: int | None = None,
) -> tuple[int, int]:
    """Store drafts as events (skipping ones already stored); returns (stored, duplicates).

    Set-based where it can be: one query finds the drafts already stored, and plugins get the whole
    batch once (`events_prepared`) to load what they need before the per-event hooks run. Also stores
    whatever plugins `emit()` while the drafts are resolved and stored.
    """
    drafts = list(drafts)
    stored_ids = _stored_ids(session, source, source_id, [d.source_event_id for d in drafts])
    former = _stored_former_ids(session, source, source_id, [d for d in drafts if d.source_event_id not in stored_ids])
    at = received_at or utcnow()
    placeholders = _placeholders(hub)
    events: list[UnifiedEvent] = []
    for draft in drafts:
        if draft.source_event_id in stored_ids or any((f, draft.type) in former for f in draft.former_ids):
            continue
        stored_ids.add(draft.source_event_id)
        events.append(prepare_event(draft, source=source, source_id=source_id, received_at=at,
                                    placeholders=placeholders))
    duplicates = len(drafts) - len(events)
    stored = 0
    try:
        # A batch stored from inside another (a hook storing events) replaces the outer preload, and the
        # outer batch then reads from the database: slower, never stale.
        session.info[BATCH_CACHE] = {}
        if events:
            hub.pm.hook.events_prepared(events=events, session=session)
        # Resolve every event first (with what resolution emits, e.g. customer.merged, right behind the
        # event that caused it), insert them all with one executemany, then run the stored hooks in order.
        ordered: list[tuple[UnifiedEvent, int | None]] = []
        for event in events:
            _resolve(hub, session, event)
            ordered.append((event, raw_event_id))
            ordered += [(emitted, None) for emitted in _resolve_emitted(hub, session)]
        _insert_events(session, ordered)
        for event, _ in ordered:
            _after_stored(hub, session, event)
            stored += 1 + _store_emitted(hub, session)
    finally:
        session.info.pop(BATCH_CACHE, None)
    return stored, duplicates


def store_draft(
    hub: Hub,
    session: Session,
    draft: EventDraft,
    *,
    source: str,
    source_id: uuid.UUID | None,
    received_at: datetime | None = None,
    raw_event_id: int | None = None,
) -> UnifiedEvent | None:
    """Store one draft (None if it was stored before)."""
    if _stored_ids(session, source, source_id, [draft.source_event_id]):
        return None
    event = prepare_event(draft, source=source, source_id=source_id, received_at=received_at or utcnow(),
                          placeholders=_placeholders(hub))
    _resolve(hub, session, event)
    _insert_events(session, [(event, raw_event_id)])
    _after_stored(hub, session, event)
    return event


def _placeholders(hub: Hub) -> frozenset[str]:
    return parse_placeholders(hub.settings.identity_placeholders)


def _resolve(hub: Hub, session: Session, event: UnifiedEvent) -> None:
    if not event.about_a_person:
        event.customer_id = event.account_id = None
        return
    resolved = hub.pm.hook.resolve_identity(event=event, session=session)
    if resolved is not None:
        event.customer_id, event.account_id = resolved


def _resolve_emitted(hub: Hub, session: Session) -> list[UnifiedEvent]:
    """Prepare and resolve what plugins emitted while an event was resolved (not stored before)."""
    out: list[UnifiedEvent] = []
    for _ in range(MAX_DERIVED_PER_EVENT):
        pending = session.info.pop("emitted", [])
        if not pending:
            break
        for draft, source in pending:
            if _stored_ids(session, source, None, [draft.source_event_id]) or any(
                e.source == source and e.source_event_id == draft.source_event_id for e in out
            ):
                continue
            event = prepare_event(draft, source=source, source_id=None, received_at=utcnow(),
                                  placeholders=_placeholders(hub))
            _resolve(hub, session, event)
            out.append(event)
    return out


def _insert_events(session: Session, events: list[tuple[UnifiedEvent, int | None]]) -> None:
    """INSERT the events (Core executemany: no unit-of-work flush per event); `seq` follows list order."""
    if not events:
        return
    now = utcnow()
    conn = session.connection()
    conn.execute(_EVENT_INSERT_PG if conn.dialect.name == "postgresql" else _EVENT_INSERT, [
        {
            "id": event.id, "type": event.type, "source": event.source, "source_id": event.source_id,
            "source_event_id": event.source_event_id, "raw_event_id": raw_event_id,
            "occurred_at": event.occurred_at, "received_at": event.received_at, "stored_at": now,
            "customer_id": event.customer_id, "account_id": event.account_id,
            "data": JSONText(event.model_dump_json()),
        }
        for event, raw_event_id in events
    ])


def _after_stored(hub: Hub, session: Session, event: UnifiedEvent) -> None:
    hub.pm.hook.event_stored(event=event, session=session)
    for derived in hub.pm.hook.enrich_event(event=event):
        for draft in derived or []:
            emit(session, draft, source=event.source)
    _count_stored(session, event)


# session.info key: events stored per (source, type) in this transaction, counted once it commits.
_STORED_COUNTS = "stored_counts"


def _count_stored(session: Session, event: UnifiedEvent) -> None:
    """Count the event once the transaction commits: a rolled-back batch (retried later) stored nothing."""
    counts: dict[tuple[str, str], int] | None = session.info.get(_STORED_COUNTS)
    if counts is None:
        counts = session.info[_STORED_COUNTS] = {}
        after_commit(session, lambda: _publish_stored(session.info.pop(_STORED_COUNTS, {})))
    key = (event.source, event.type)
    counts[key] = counts.get(key, 0) + 1


def _publish_stored(counts: dict[tuple[str, str], int]) -> None:
    for (source, type_), n in counts.items():
        metrics.EVENTS_STORED.labels(source, type_).inc(n)


_EVENT_INSERT = insert(EventRow.__table__)
# The storing transaction's id, which the feed needs to read in commit-safe order (see EventRow).
_EVENT_INSERT_PG = insert(EventRow.__table__).values(txid=func.txid_current())


def _stored_ids(
    session: Session, source: str, source_id: uuid.UUID | None, source_event_ids: list[str]
) -> set[str]:
    """Which of these source event ids are stored already (one query per 500)."""
    return {row.source_event_id for row in _stored_rows(session, _STORED, source, source_id, source_event_ids)}


def _stored_former_ids(
    session: Session, source: str, source_id: uuid.UUID | None, drafts: list[EventDraft]
) -> set[tuple[str, str]]:
    """(source_event_id, type) of the events stored under the drafts' former ids: what an older crmhub stored
    them as. No query when no draft has one (every connector but one whose key changed)."""
    former = [f for d in drafts for f in d.former_ids]
    return {(row.source_event_id, row.type) for row in _stored_rows(session, _FORMER, source, source_id, former)}


def _stored_rows(
    session: Session, statements: tuple[Any, Any], source: str, source_id: uuid.UUID | None, ids: list[str]
) -> Iterator[Any]:
    """Rows of `statements` (of a source, or of a kind of hub-made events) for these source event ids, 500 a query."""
    by_source, by_kind = statements
    conn = session.connection()
    for chunk in _chunks(list(dict.fromkeys(ids)), 500):
        if source_id is not None:
            yield from conn.execute(by_source, {"ids": chunk, "source_id": source_id})
        else:
            yield from conn.execute(by_kind, {"ids": chunk, "source": source})


# Built once: building a statement per call cost ~110 µs more than executing it (SQLAlchemy derives its
# cache key from the new object each time), and this runs per batch and per event a plugin emits.
def _by_source_and_by_kind(*columns: Any) -> tuple[Any, Any]:
    stmt = select(*columns).where(EventRow.source_event_id.in_(bindparam("ids", expanding=True)))
    return (stmt.where(EventRow.source_id == bindparam("source_id")),
            stmt.where(EventRow.source_id.is_(None), EventRow.source == bindparam("source")))


_STORED = _by_source_and_by_kind(EventRow.source_event_id)
_FORMER = _by_source_and_by_kind(EventRow.source_event_id, EventRow.type)


def prepare_event(
    draft: EventDraft, *, source: str, source_id: uuid.UUID | None, received_at: datetime,
    placeholders: frozenset[str] = frozenset(),
) -> UnifiedEvent:
    """Clean every text field and normalise identities; each change becomes a quality issue.

    `placeholders`: the configured ones (`parse_placeholders`), flagged like the built-in ones.
    """
    issues = list(draft.quality.issues)
    properties, prop_issues = clean_fields(draft.properties, prefix="properties")
    traits, trait_issues = clean_fields(draft.traits, prefix="traits")
    campaign, campaign_issues = _clean_campaign(draft.campaign)
    issues += prop_issues + trait_issues + campaign_issues
    enforce_formal_order_rule(source, properties, issues)
    identities = normalise_identities(draft.identities, issues, placeholders)
    occurred_at = draft.occurred_at
    if not plausible_time(occurred_at):
        issues.append(QualityIssue(field="occurred_at", code="invalid_time",
                                   detail=f"{str(occurred_at)[:40]!r} implausible; received time used"))
        occurred_at = received_at
    return UnifiedEvent(
        id=new_id(),
        type=draft.type,
        source=source,
        source_id=source_id,
        source_event_id=draft.source_event_id,
        occurred_at=occurred_at,
        received_at=received_at,
        customer_id=draft.customer_hint if source_id is None else None,
        identities=identities,
        campaign=campaign,
        properties=properties,
        traits=traits,
        quality={"issues": _dedupe_issues(issues)},
        about_a_person=draft.about_a_person,
    )


def _clean_campaign(campaign: Campaign | None) -> tuple[Campaign | None, list[QualityIssue]]:
    """The campaign, or None when empty; cleaned as properties are when it holds text no database can store.

    A sender's utm value or ad id holding a lone surrogate (`"\\ud800"` in JSON) has no UTF-8 form: writing the event
    failed the whole request, and the raw row ended "failed" for an input error. Only such a campaign is cleaned
    (~13 µs an event otherwise, on every event that has one); a sender's campaign is otherwise kept as sent.
    """
    if campaign is None or campaign.is_empty():
        return None, []
    data = campaign.model_dump()
    if unstorable_text(data) is None:
        return campaign, []
    cleaned, issues = clean_fields(data, prefix="campaign")
    campaign = Campaign.model_validate(cleaned)
    return (None if campaign.is_empty() else campaign), issues


def normalise_identities(
    identities: Iterable[Identity], issues: list[QualityIssue], placeholders: frozenset[str] = frozenset()
) -> list[Identity]:
    out: list[Identity] = []
    seen: set[tuple[str, str]] = set()
    for ident in identities:
        result = normalize_identity(ident.type, ident.value)
        if result.value is None:
            if result.reason != "empty":
                issues.append(
                    QualityIssue(
                        field=f"identities.{ident.type}",
                        code=result.reason or "invalid",
                        detail=f"{ident.type} {str(ident.value)[:64]!r} left out",
                    )
                )
            continue
        if result.note is not None:
            issues.append(QualityIssue(field=f"identities.{ident.type}", code=f"{ident.type}_extension_removed",
                                       detail=f"{str(ident.value)[:64]!r}: {result.note} left out of the identity"))
        key = (ident.type, result.value)
        if key not in seen:
            seen.add(key)
            out.append(Identity(type=ident.type, value=result.value))
            if is_placeholder(ident.type, result.value, placeholders):
                # Kept as the platform sent it, but never matched (contract §4): the data-health report counts it.
                issues.append(QualityIssue(field=f"identities.{ident.type}", code="placeholder",
                                           detail=f"{ident.type} {result.value[:64]!r} is a placeholder; not matched"))
    return out


def _dedupe_issues(issues: list[QualityIssue]) -> list[QualityIssue]:
    seen: set[tuple[str, str, str | None]] = set()
    out = []
    for issue in issues:
        key = (issue.field, issue.code, issue.detail)
        if key not in seen:
            seen.add(key)
            out.append(issue)
    return out


# ---------------------------------------------------------------- derived events


def emit(session: Session, draft: EventDraft, *, source: str = "hub") -> None:
    """Queue a derived event (customer.merged, call.summarized …) to be stored in this same transaction."""
    session.info.setdefault("emitted", []).append((draft, source))


def _store_emitted(hub: Hub, session: Session) -> int:
    count = 0
    for _ in range(MAX_DERIVED_PER_EVENT):
        pending = session.info.pop("emitted", [])
        if not pending:
            break
        for draft, source in pending:
            if store_draft(hub, session, draft, source=source, source_id=None) is not None:
                count += 1
    return count


def reassign_events(session: Session, event_ids: Iterable[uuid.UUID], customer_id: uuid.UUID | None) -> int:
    """Point stored events at another customer (identity/'s split); the column and the JSON copy both move."""
    count = 0
    for chunk in _chunks(list(event_ids), 500):
        for row in session.scalars(select(EventRow).where(EventRow.id.in_(chunk))):
            row.customer_id = customer_id
            row.data = {**row.data, "customer_id": str(customer_id) if customer_id else None}
            count += 1
    session.flush()
    return count


def store_internal(hub: Hub, session: Session, drafts: Iterable[EventDraft], *, source: str) -> int:
    """Store hub-made events (no inbound source), then anything they emit."""
    stored, _ = store_drafts(hub, session, drafts, source=source, source_id=None)
    return stored


# ---------------------------------------------------------------- recovery and replay


@task("hub.pipeline.requeue_pending", queue="ingest")
def requeue_pending() -> int:
    """Re-enqueue rows left pending (a lost enqueue, a killed worker); processing is idempotent."""
    hub = get_hub()
    from hub.ingest import pending_raw_ids

    ids = pending_raw_ids(hub, older_than=utcnow() - timedelta(seconds=hub.settings.requeue_after_s))
    for raw_id in ids:
        enqueue("hub.pipeline.process_raw", raw_id)
    return len(ids)


RECOVERY_PAGE = 1000


def recover_on_startup(hub: Hub) -> int:
    """In-process runtime: every row pending at start-up was in a queue that died with the process.

    All of them are queued, a page of ids at a time, each once there is room in the ingest lane (`feed`), so
    memory holds one page and the lane however long the backlog: the sweep used to be left everything past
    10,000 rows, and past the lane's size. Rows stored after start-up are the writer's to queue. Blocks until
    the last is queued: the app runs it on a thread of its own. Returns how many (fewer if the runner stopped).
    """
    from hub.ingest import pending_raw_ids

    with hub.sessions() as session:
        upto = session.scalar(select(func.max(RawEvent.id)))
    queued, after = 0, 0
    while upto is not None:
        ids = pending_raw_ids(hub, limit=RECOVERY_PAGE, after=after, upto=upto)
        for raw_id in ids:
            if not hub.runner.feed("hub.pipeline.process_raw", (raw_id,)):
                return queued
            queued += 1
        if len(ids) < RECOVERY_PAGE:
            break
        after = ids[-1]
    if queued:
        log.info("re-queued %d raw request(s) left pending by the last run", queued)
    return queued


def replay(
    hub: Hub,
    *,
    source_id: uuid.UUID | None = None,
    since: datetime | None = None,
    statuses: Iterable[str] = (RAW_FAILED,),
) -> int:
    """Reset matching raw rows to pending and enqueue them; returns how many."""
    return len(replay_raw(hub, source_id=source_id, since=since, statuses=statuses))


def replay_outcomes(hub: Hub, ids: list[int]) -> tuple[dict[str, int], list[tuple[int, str]]]:
    """How replayed rows ended (count per status) and the errors of those that failed again."""
    counts: dict[str, int] = {}
    errors: list[tuple[int, str]] = []
    with hub.sessions() as session:
        for chunk in _chunks(ids, 500):
            for raw_id, status, error in session.execute(
                select(RawEvent.id, RawEvent.status, RawEvent.error).where(RawEvent.id.in_(chunk))
            ):
                counts[status] = counts.get(status, 0) + 1
                if status == RAW_FAILED:
                    errors.append((raw_id, error or ""))
    return counts, errors


def replay_raw(
    hub: Hub,
    *,
    source_id: uuid.UUID | None = None,
    since: datetime | None = None,
    statuses: Iterable[str] = (RAW_FAILED,),
) -> list[int]:
    """Reset matching raw rows to pending and enqueue them; returns their ids.

    "quarantined" also takes a handled batch with a quarantined item (one bad item of a POS array): running the
    batch again stores nothing twice (events dedupe on their source ids) and retries only what was refused.
    """
    statuses = list(statuses)
    with hub.transaction() as session:
        wanted = RawEvent.status.in_(statuses)
        if RAW_QUARANTINED in statuses:
            with_items = select(QuarantineRow.raw_event_id).where(QuarantineRow.raw_event_id.is_not(None))
            wanted = or_(wanted, and_(RawEvent.status == RAW_HANDLED, RawEvent.id.in_(with_items)))
        stmt = select(RawEvent.id).where(wanted)
        if source_id is not None:
            stmt = stmt.where(RawEvent.source_id == source_id)
        if since is not None:
            stmt = stmt.where(RawEvent.received_at >= since)
        ids = list(session.scalars(stmt.order_by(RawEvent.id)))
        if ids:
            for chunk in _chunks(ids, 500):
                again = {"status": RAW_PENDING, "error": None, "unfinished_runs": 0}
                session.execute(update(RawEvent).where(RawEvent.id.in_(chunk)).values(again))
            if RAW_QUARANTINED in statuses:
                for chunk in _chunks(ids, 500):
                    session.query(QuarantineRow).filter(QuarantineRow.raw_event_id.in_(chunk)).delete(
                        synchronize_session=False
                    )
    for raw_id in ids:
        enqueue("hub.pipeline.process_raw", raw_id)
    return ids


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
