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
import logging
import queue
import threading
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert as generic_insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from hub.models import RAW_PENDING, InboundRejection, RawEvent
from hub.schemas import utcnow
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
    future: Future[tuple[int | None, bool]] = field(default_factory=Future)


@dataclass
class Rejection:
    source_id: uuid.UUID
    status_code: int
    code: str
    at: datetime = field(default_factory=utcnow)


_STOP = object()


class RawWriter:
    """One thread that turns many concurrent submissions into few commits."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.batch_max = hub.settings.ingest_batch_max
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="crmhub-raw-writer", daemon=True)
        self._thread.start()
        self.batches = 0
        self.rows = 0

    async def submit(self, item: RawSubmission) -> tuple[int | None, bool]:
        """Store `item` durably; returns (raw id, True) if new or (None, False) for a redelivery."""
        self._queue.put(item)
        return await asyncio.wrap_future(item.future)

    def submit_sync(self, item: RawSubmission) -> tuple[int | None, bool]:
        self._queue.put(item)
        return item.future.result(timeout=60)

    def reject(self, rejection: Rejection) -> None:
        """Count a refused request for source health; best effort, never blocks the answer."""
        self._queue.put(rejection)

    def stop(self) -> None:
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
        except Exception as exc:  # the database is down: every waiting request gets a 5xx
            log.exception("raw-event batch of %d failed", len(submissions))
            for sub in submissions:
                if not sub.future.done():
                    sub.future.set_exception(exc)
            return
        self.batches += 1
        self.rows += len(submissions)
        for sub, result in zip(submissions, results, strict=True):
            sub.future.set_result(result)
        for raw_id, is_new in results:
            if is_new and raw_id is not None:
                try:
                    enqueue("hub.pipeline.process_raw", raw_id)
                except Exception:  # broker down: the row is durable, the sweep re-queues it
                    log.exception("could not enqueue raw event %s", raw_id)


def _insert_for(dialect: str) -> Any:
    if dialect == "postgresql":
        return pg_insert
    if dialect == "sqlite":
        return sqlite_insert
    return generic_insert


def store_raw_batch(
    hub: Hub, submissions: list[RawSubmission], rejections: list[Rejection] | None = None
) -> list[tuple[int | None, bool]]:
    """Insert in one transaction; a key repeated inside the batch counts as a redelivery."""
    insert = _insert_for(hub.engine.dialect.name)
    first_by_key: dict[tuple[uuid.UUID, str], int] = {}
    rows: list[dict[str, Any]] = []
    for index, sub in enumerate(submissions):
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
    with hub.transaction() as session:
        if rows:
            stmt = (
                insert(RawEvent)
                .values(rows)
                .on_conflict_do_nothing(index_elements=["source_id", "dedup_key"])
                .returning(RawEvent.id, RawEvent.source_id, RawEvent.dedup_key)
            )
            for raw_id, source_id, dedup_key in session.execute(stmt):
                inserted[(source_id, dedup_key)] = raw_id
        if rejections:
            session.execute(
                generic_insert(InboundRejection),
                [{"source_id": r.source_id, "status_code": r.status_code, "code": r.code, "at": r.at} for r in rejections],
            )
    results: list[tuple[int | None, bool]] = []
    for index, sub in enumerate(submissions):
        key = (sub.source_id, sub.dedup_key)
        raw_id = inserted.get(key)
        results.append((raw_id, True) if raw_id is not None and first_by_key[key] == index else (None, False))
    return results


def pending_raw_ids(hub: Hub, older_than: datetime | None = None, limit: int = 10_000) -> list[int]:
    with hub.sessions() as session:
        stmt = select(RawEvent.id).where(RawEvent.status == RAW_PENDING).order_by(RawEvent.id).limit(limit)
        if older_than is not None:
            stmt = stmt.where(RawEvent.received_at < older_than)
        return list(session.scalars(stmt))
