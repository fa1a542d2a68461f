"""Durable, deduplicating storage of inbound requests with group commit.

Concurrent requests hand their raw row to one writer thread, which inserts a
batch in a single transaction (`ON CONFLICT DO NOTHING` on (source, dedup key)),
commits, answers every waiting request, and only then enqueues processing of
the new rows. One fsync serves many requests, which is what lets the embedded
SQLite default keep up with a bare endpoint; nothing is acknowledged before it
is committed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import queue
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert as generic_insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import InterfaceError, OperationalError

from hub.connector import PULLED_METHOD
from hub.db import write_lock
from hub.errors import ShuttingDown
from hub.models import RAW_PENDING, InboundRejection, RawEvent
from hub.outage_log import OutageLog
from hub.schemas import unstorable_text, utcnow
from hub.tasks import enqueue

if TYPE_CHECKING:
    from hub.runtime import Hub

log = logging.getLogger(__name__)


@dataclass
class RawSubmission:
    source_id: uuid.UUID
    dedup_key: str
    request: dict[str, Any]
    body: bytes
    event_count: int = 1
    received_at: datetime = field(default_factory=utcnow)
    # An asyncio future (request path) or a concurrent one (sync callers); set by the writer thread.
    future: asyncio.Future[tuple[int | None, bool]] | Future[tuple[int | None, bool]] | None = None


@dataclass
class Rejection:
    source_id: uuid.UUID
    status_code: int
    code: str
    at: datetime = field(default_factory=utcnow)


_STOP = object()


DEDUP_KEY_MAX = 300  # raw_events.dedup_key is VARCHAR(300)
# A batch failing with these is the database being out of reach or busy: every request in it gets a 503. Any other
# failure is blamed on one row's content (a source deleted meanwhile), and the batch's requests are stored one by one.
_UNAVAILABLE = (OperationalError, InterfaceError)
BROKER_PAUSE_S = 5.0  # after a failed enqueue, how long new rows are held back (then tried first)
HELD_MAX = 10_000


class RawWriter:
    """One thread that turns many concurrent submissions into few commits."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.batch_max = hub.settings.ingest_batch_max
        self.outage = OutageLog(log, "storing inbound requests")  # the database unreachable, its disk full
        self._queue: queue.Queue[Any] = queue.Queue()
        # Held while a submission is queued and while `stop()` queues _STOP: nothing can land behind _STOP,
        # where the thread would never take it and its sender would wait for an answer that never comes.
        self._gate = threading.Lock()
        self.closed = False
        self._thread = threading.Thread(target=self._loop, name="crmhub-raw-writer", daemon=True)
        self._thread.start()
        self.batches = 0
        self.rows = 0
        self.last_submit_at = 0.0
        self._broker_retry_at = 0.0  # while the broker is down, enqueues are skipped until then
        self._held: list[int] = []  # rows not enqueued during the pause, published first after it
        runner = hub.runner
        if hasattr(runner, "ingest_busy"):
            runner.ingest_busy = self.busy

    def busy(self, window_s: float = 0.1) -> bool:
        """Did requests arrive in the last `window_s`? (The in-process runner defers to them.)

        Measured on arrivals, not commits: a background task that hogs the GIL delays commits,
        which must not make the request path look idle and let the task hog it further.
        """
        return not self._queue.empty() or time.monotonic() - self.last_submit_at < window_s

    async def submit(self, item: RawSubmission) -> tuple[int | None, bool]:
        """Store `item` durably; returns (raw id, True) if new or (None, False) for a redelivery.

        Raises ShuttingDown, storing nothing, once `stop()` has begun.
        """
        future: asyncio.Future[tuple[int | None, bool]] = asyncio.get_running_loop().create_future()
        item.future = future
        self.last_submit_at = time.monotonic()
        self._put(item)
        return await future

    def submit_sync(self, item: RawSubmission) -> tuple[int | None, bool]:
        future: Future[tuple[int | None, bool]] = Future()
        item.future = future
        self._put(item)
        return future.result(timeout=60)

    def _put(self, item: RawSubmission) -> None:
        with self._gate:
            if self.closed:
                raise ShuttingDown("the hub is shutting down and stores no more requests; retry later")
            self._queue.put(item)

    def reject(self, rejection: Rejection) -> None:
        """Count a refused request for source health; best effort, never blocks the answer."""
        with self._gate:
            if not self.closed:
                self._queue.put(rejection)

    def stop(self) -> None:
        """Store and answer everything submitted so far, then end the thread; later submissions get ShuttingDown."""
        with self._gate:
            if self.closed:
                return
            self.closed = True
            self._queue.put(_STOP)
        self._thread.join(timeout=10)

    # ---------------------------------------------------------------- thread
    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            while len(batch) < self.batch_max:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    self._queue.put(_STOP)
                    break
                batch.append(nxt)
            self._write(batch)

    def _write(self, batch: list[Any]) -> None:
        submissions = [b for b in batch if isinstance(b, RawSubmission)]
        rejections = [b for b in batch if isinstance(b, Rejection)]
        try:
            results = store_raw_batch(self.hub, submissions, rejections)
            outcomes: list[tuple[Any, Any, BaseException | None]] = [
                (sub.future, result, None) for sub, result in zip(submissions, results, strict=True)]
        except Exception as exc:
            if isinstance(exc, _UNAVAILABLE):  # every waiting request gets a 5xx
                self.outage.failed(exc, len(submissions))
                _settle([(sub.future, None, exc) for sub in submissions])
                return
            if len(batch) == 1:
                log.exception("raw-event batch of %d failed", len(submissions))
                _settle([(sub.future, None, exc) for sub in submissions])
                return
            log.warning("raw-event batch of %d failed (%s: %s); storing its requests one by one",
                        len(submissions), type(exc).__name__, exc)
            outcomes = self._write_apart(submissions, rejections)
        self.outage.succeeded()
        self.batches += 1
        self.rows += len(submissions)
        _settle(outcomes)
        self._enqueue([res[0] for _, res, exc in outcomes if exc is None and res[1] and res[0] is not None])

    def _write_apart(
        self, submissions: list[RawSubmission], rejections: list[Rejection]
    ) -> list[tuple[Any, Any, BaseException | None]]:
        """One transaction per request, so a row the database refuses fails only its own request."""
        outcomes: list[tuple[Any, Any, BaseException | None]] = []
        for sub in submissions:
            try:
                outcomes.append((sub.future, store_raw_batch(self.hub, [sub])[0], None))
            except Exception as exc:
                log.exception("could not store a raw event of source %s", sub.source_id)
                outcomes.append((sub.future, None, exc))
        if rejections:
            try:
                store_raw_batch(self.hub, [], rejections)
            except Exception as exc:  # best effort, as `reject` promises
                log.warning("%d refused request(s) not counted in source health (%s: %s)",
                            len(rejections), type(exc).__name__, exc)
        return outcomes

    def _enqueue(self, raw_ids: list[int]) -> None:
        """Hand new rows to the workers. With the broker down each publish fails only after Celery's retries
        (~0.6 s), and the next group commit waits for this thread: 32 concurrent requests took 11 s to be
        answered (helper-25). So the first failure skips the rest and enqueues pause for a few seconds; the rows
        are durable, held (bounded) and published first after the pause, and the recovery sweep
        (`requeue_pending`) takes any the writer could not."""
        if time.monotonic() < self._broker_retry_at:
            self._hold(raw_ids)
            return
        # Rows held during the pause go first: a one-off blip must not leave them to the sweep's minutes.
        raw_ids, self._held = self._held + raw_ids, []
        for n, raw_id in enumerate(raw_ids):
            try:
                enqueue("hub.pipeline.process_raw", raw_id)
            except Exception as exc:  # broker down: the rows are durable, the sweep re-queues them
                self._broker_retry_at = time.monotonic() + BROKER_PAUSE_S
                self._hold(raw_ids[n:])
                log.warning("could not enqueue %d raw event(s) from %s on (%s: %s); they are stored, tried again "
                            "with the next request after %.0f s, and the recovery sweep queues them within %.0f s "
                            "of the broker coming back", len(raw_ids) - n, raw_id, type(exc).__name__, exc,
                            BROKER_PAUSE_S, self.hub.settings.requeue_after_s + self.hub.settings.requeue_every_s)
                return

    def _hold(self, raw_ids: list[int]) -> None:
        """Keep ids to publish after the pause (bounded: past that the sweep has them anyway)."""
        room = HELD_MAX - len(self._held)
        if room > 0:
            self._held.extend(raw_ids[:room])


def _settle(outcomes: list[tuple[Any, Any, BaseException | None]]) -> None:
    """Answer the waiting requests: one wake-up per event loop for the whole batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any, BaseException | None]]] = {}
    for future, result, exc in outcomes:
        if isinstance(future, asyncio.Future):
            by_loop.setdefault(future.get_loop(), []).append((future, result, exc))
        elif future is not None:
            _resolve(future, result, exc)
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_in_loop, items)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


def _settle_in_loop(items: list[tuple[Any, Any, BaseException | None]]) -> None:
    for future, result, exc in items:
        _resolve(future, result, exc)


def _resolve(future: Any, result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def _insert_for(dialect: str) -> Any:
    if dialect == "postgresql":
        return pg_insert
    if dialect == "sqlite":
        return sqlite_insert
    return generic_insert


def store_raw_batch(
    hub: Hub, submissions: list[RawSubmission], rejections: list[Rejection] | None = None,
    *, log_duplicates: bool = True,
) -> list[tuple[int | None, bool]]:
    """Insert in one transaction; a key repeated inside the batch counts as a redelivery.

    `log_duplicates=False` is for the hub's own re-reads (pulls), which are not inbound traffic.
    """
    insert = _insert_for(hub.engine.dialect.name)
    # Rows go in in key order: two replicas storing overlapping keys in opposite orders each held a key the other
    # waited for, and PostgreSQL failed one batch as a deadlock (503 to all its requests).
    order = sorted(range(len(submissions)), key=lambda i: (str(submissions[i].source_id), submissions[i].dedup_key))
    first_by_key: dict[tuple[uuid.UUID, str], int] = {}
    rows: list[dict[str, Any]] = []
    for index in order:
        sub = submissions[index]
        key = (sub.source_id, sub.dedup_key)
        if key in first_by_key:
            continue
        first_by_key[key] = index
        rows.append(
            {
                "source_id": sub.source_id,
                "dedup_key": sub.dedup_key,
                "request": sub.request,
                "body": sub.body,
                "event_count": sub.event_count,
                "received_at": sub.received_at,
                "status": RAW_PENDING,
            }
        )
    inserted: dict[tuple[uuid.UUID, str], int] = {}
    raw_table, rejection_table = RawEvent.__table__, InboundRejection.__table__
    # Core, not the ORM: this runs for every inbound request and the unit of work adds nothing here.
    with write_lock(hub.engine), hub.engine.begin() as conn:
        if rows:
            # One constant statement run as executemany ("insertmanyvalues"): compiled once, cached,
            # and RETURNING yields only the rows actually inserted.
            stmt = (
                insert(raw_table)
                .on_conflict_do_nothing(index_elements=["source_id", "dedup_key"])
                .returning(raw_table.c.id, raw_table.c.source_id, raw_table.c.dedup_key)
            )
            for raw_id, source_id, dedup_key in conn.execute(stmt, rows):
                inserted[(source_id, dedup_key)] = raw_id
        # A redelivery stores no raw row; log it (status 200, code "duplicate") so source health can count it.
        rejections = [
            *(rejections or []),
            *(
                Rejection(sub.source_id, 200, "duplicate", sub.received_at)
                for index, sub in enumerate(submissions)
                if log_duplicates and (inserted.get((sub.source_id, sub.dedup_key)) is None
                                       or first_by_key[(sub.source_id, sub.dedup_key)] != index)
            ),
        ]
        if rejections:
            conn.execute(
                generic_insert(rejection_table),
                [
                    {"source_id": r.source_id, "status_code": r.status_code, "code": r.code, "at": r.at}
                    for r in rejections
                ],
            )
    results: list[tuple[int | None, bool]] = []
    for index, sub in enumerate(submissions):
        key = (sub.source_id, sub.dedup_key)
        raw_id = inserted.get(key)
        results.append((raw_id, True) if raw_id is not None and first_by_key[key] == index else (None, False))
    return results


def storable_key(key: str) -> str:
    """A dedup key as the raw store keeps it: as is when any database can, else a digest of it.

    A key holding a NUL or an unpaired surrogate (a message id sent as `"a\\u0000"` or `"\\ud83d"`) failed the
    insert: a 503 the platform retried for ever, for every request in its batch. A key longer than the column used
    to be cut, so two ids sharing their first 300 characters were one request: the second, answered as a duplicate,
    was dropped.
    """
    if len(key) <= DEDUP_KEY_MAX and unstorable_text(key) is None:
        return key
    return "key-sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def pending_raw_ids(
    hub: Hub, older_than: datetime | None = None, limit: int = 10_000, *, after: int = 0, upto: int | None = None,
) -> list[int]:
    """Ids of pending rows in id order, at most `limit`: received before `older_than`, with `after` < id ≤ `upto`."""
    with hub.sessions() as session:
        stmt = (select(RawEvent.id).where(RawEvent.status == RAW_PENDING, RawEvent.id > after)
                .order_by(RawEvent.id).limit(limit))
        if older_than is not None:
            stmt = stmt.where(RawEvent.received_at < older_than)
        if upto is not None:
            stmt = stmt.where(RawEvent.id <= upto)
        return list(session.scalars(stmt))


def ingest_pulled(
    hub: Hub, source_id: uuid.UUID, body: bytes, dedup_key: str, request: dict[str, Any] | None = None
) -> tuple[int | None, bool]:
    """Store a pulled record (ERP sync, call-centre reconcile) as a synthetic raw request and enqueue it.

    It shares the (source, dedup key) uniqueness of pushed requests, so a record the platform
    already pushed — or a page pulled twice — is a redelivery: (None, False), nothing enqueued.
    """
    record = request or {"method": PULLED_METHOD, "headers": {}, "query": {}, "path": ""}
    sub = RawSubmission(source_id, storable_key(dedup_key), record, body)
    ((raw_id, is_new),) = store_raw_batch(hub, [sub])
    if is_new and raw_id is not None:
        enqueue("hub.pipeline.process_raw", raw_id)
    return raw_id, is_new
