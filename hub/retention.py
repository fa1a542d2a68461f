"""Retention: rows of an operational log older than their window are deleted in short batches.

Why batches: one `DELETE` of a year's log is one long transaction. On PostgreSQL it holds its row locks and keeps
autovacuum from reclaiming anything until it ends; on SQLite it holds the one write lock, and every inbound request
waits for it. Here each batch is a transaction of its own with at most `BATCH` rows, read oldest first along an index
that starts with the partition and ends with the time (`(endpoint_id, at)`, `(source_id, at)`), and the pruner pauses
between batches so a writer waiting for the lock gets it. A run stops after `MAX_BATCHES` and its task queues itself
again behind whatever else waits, so a first run over a year's backlog never holds its lane for long.

Which tables are pruned, and why only those, is docs/operations.md's "Retention". Each package prunes its own: the
kernel `inbound_rejections` and, only when the operator sets a window, handled `raw_events` (here), webhooks/
`attempts` (`webhooks.retention`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Column, ColumnElement, Table, any_, bindparam, delete, exists, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import OperationalError

from hub.db import write_lock
from hub.errors import RetryableError
from hub.models import RAW_HANDLED, InboundRejection, QuarantineRow, RawEvent, SourceRow
from hub.runtime import Hub, get_hub
from hub.schemas import utcnow
from hub.tasks import enqueue, task

log = logging.getLogger(__name__)

BATCH = 5_000  # rows per transaction
MAX_BATCHES = 40  # transactions per run (200,000 rows); then the task queues itself again
PAUSE_S = 0.01  # between batches: the lock is free for a waiting writer
PRUNE_EVERY_S = 3600.0
REJECTIONS_TASK = "hub.retention.prune_rejections"
RAW_TASK = "hub.retention.prune_raw"


def cutoff(days: int, now: datetime | None = None) -> datetime | None:
    """The time before which rows go, or None when `days` is 0 (kept forever)."""
    return None if days <= 0 else (now or utcnow()) - timedelta(days=days)


class Pruner:
    """One run: at most `max_batches` deleting transactions of at most `batch` rows, across every table it prunes."""

    def __init__(self, hub: Hub, *, batch: int = BATCH, max_batches: int = MAX_BATCHES,
                 pause_s: float = PAUSE_S) -> None:
        self.hub, self.batch, self.max_batches, self.pause_s = hub, batch, max_batches, pause_s
        self.deleted = 0
        self.batches = 0
        self.exhausted = False  # the run used its batches with old rows left: run again

    def delete_before(self, table: Table, at: Any, before: datetime, *where: ColumnElement[bool],
                      keep: Collection[int] = ()) -> int:
        """Delete the rows matching `where` whose `at` is before `before`, oldest first, except the ids in `keep`.

        Each batch starts where the last one ended (`at >= floor`), so it never walks back over the index entries of
        rows just deleted, which PostgreSQL keeps until vacuum.
        """
        pk = table.c.id
        floor: datetime | None = None
        deleted = 0
        while True:
            stmt = select(pk).where(*where, at < before).order_by(at).limit(self.batch)
            if keep:
                stmt = stmt.where(pk.not_in(list(keep)))
            if floor is not None:
                stmt = stmt.where(at >= floor)
            with write_lock(self.hub.engine), self.hub.engine.begin() as conn:
                ids = list(conn.scalars(stmt))
                if not ids:
                    return deleted
                if self.batches >= self.max_batches:
                    self.exhausted = True
                    return deleted
                # Only the last row's time: reading all 5,000 as datetimes cost more than the SELECT on SQLite.
                floor = conn.scalar(select(at).where(pk == ids[-1]))
                # The conditions again: a row that changed since the SELECT (a raw request `crmhub replay` set
                # pending again) stays. PostgreSQL re-checks them on the locked row.
                gone = conn.execute(delete(table).where(_one_of(pk, ids, conn.dialect.name), *where)).rowcount
            self.batches += 1
            deleted += gone
            self.deleted += gone
            if len(ids) < self.batch:
                return deleted
            time.sleep(self.pause_s)


def _one_of(pk: Column[Any], ids: list[int], dialect: str) -> ColumnElement[bool]:
    """`pk IN (ids)`; on PostgreSQL `pk = ANY(:ids)`, one array parameter: 5,000 parameters made each DELETE spend
    50-140 ms being parsed and planned, against 13 ms (an IN over the batch's SELECT instead was planned as a hash join
    over a sequential scan of the whole table)."""
    if dialect == "postgresql":
        return pk == any_(bindparam("prune_ids", ids, type_=ARRAY(BigInteger())))
    return pk.in_(ids)


def run_pruning(name: str, prune: Any, pruner: Pruner | None = None) -> int:
    """The body of a prune task: `prune(hub, pruner)`, queued again when it stopped at its batch limit."""
    hub = get_hub()
    pruner = pruner or Pruner(hub)
    try:
        prune(hub, pruner)
    except OperationalError as exc:  # SQLite busy past its timeout, a PostgreSQL deadlock: batches done stay done
        raise RetryableError(f"database busy: {exc.__class__.__name__}") from exc
    finally:
        if pruner.deleted:
            log.info("%s: deleted %d rows in %d batches", name, pruner.deleted, pruner.batches)
    if pruner.exhausted:
        enqueue(name)
    return pruner.deleted


# ---------------------------------------------------------------- the kernel's own log


@task(REJECTIONS_TASK, queue="ingest", max_retries=3)
def prune_rejections_task() -> int:
    return run_pruning(REJECTIONS_TASK, prune_rejections)


def prune_rejections(hub: Hub, pruner: Pruner, now: datetime | None = None) -> int:
    """`inbound_rejections` older than CRMHUB_REJECTIONS_RETENTION_DAYS, per source.

    A source's newest row is kept whatever its age: it is the source's `last_received_at` when the platform's last
    call was refused or a redelivery, and ops must still see when a platform last called.
    """
    before = cutoff(hub.settings.rejections_retention_days, now)
    return 0 if before is None else _per_source(hub, pruner, InboundRejection, InboundRejection.at, before)


def _per_source(hub: Hub, pruner: Pruner, model: Any, at: Any, before: datetime, *where: ColumnElement[bool]) -> int:
    """`model`'s rows matching `where` from before `before`, source by source; each source's newest row (whatever
    `where` says) is kept, for its `last_received_at` in source health."""
    with hub.sessions() as session:
        sources = list(session.scalars(select(SourceRow.id).order_by(SourceRow.id)))
    deleted = 0
    for source_id in sources:
        mine = model.source_id == source_id
        with hub.sessions() as session:
            newest = session.scalar(select(model.id).where(mine).order_by(at.desc()).limit(1))
        deleted += pruner.delete_before(model.__table__, at, before, mine, *where,
                                        keep=set() if newest is None else {newest})
        if pruner.exhausted:
            break
    return deleted


# ---------------------------------------------------------------- handled raw requests, when the operator asks


@task(RAW_TASK, queue="ingest", max_retries=3)
def prune_raw_task() -> int:
    return run_pruning(RAW_TASK, prune_raw)


def prune_raw(hub: Hub, pruner: Pruner, now: datetime | None = None) -> int:
    """Handled `raw_events` received before CRMHUB_RAW_RETENTION_DAYS (0, the default: none), per source.

    Only `handled` rows: a pending or failed one is work not yet done, a quarantined one is evidence. A handled row a
    quarantine row points to stays too: it is what `crmhub replay` re-runs once the connector is fixed. A source's
    newest request stays whatever its age, for `last_received_at` in source health. Events keep their
    `raw_event_id`, which then names a request no longer kept.
    """
    before = cutoff(hub.settings.raw_retention_days, now)
    if before is None:
        return 0
    no_quarantine = ~exists().where(QuarantineRow.raw_event_id == RawEvent.id)
    return _per_source(hub, pruner, RawEvent, RawEvent.received_at, before, RawEvent.status == RAW_HANDLED,
                       no_quarantine)
