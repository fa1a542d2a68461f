"""The generic pull driver: connectors that fetch instead of (or besides) being pushed to.

A connector opts in by defining `pull(config, http, cursor) -> (items, new_cursor)` and
`pull_interval_s(config) -> float | None` (None: this source does not pull). The kernel keeps
the cursor in `source_cursors`, stores every pulled item as a synthetic raw request (so it
dedupes against pushed ones on the same key and goes through the normal pipeline), and saves
the cursor after each page: a restart resumes at the page it stopped on. A run ends at an empty page
or at a cursor it has read already. The connector stays pure — no database, no tasks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NamedTuple, Protocol, runtime_checkable

import httpx
from sqlalchemy import select

from hub.connector import PULLED_METHOD
from hub.db import try_advisory_lock
from hub.errors import Conflict, InvalidRequest, NotFound, RetryableError
from hub.ingest import RawSubmission, storable_key, store_raw_batch
from hub.models import SourceRow
from hub.outbound import outbound_client
from hub.pipeline import DbState
from hub.runtime import Hub, get_hub
from hub.schemas import utcnow
from hub.tasks import enqueue, task

log = logging.getLogger(__name__)

CURSOR_KEY = "pull:cursor"
LAST_RUN_KEY = "pull:last_run"
HEALTH_KEY = "pull:health"  # {"last_success_at", "last_error", "last_error_at", "consecutive_failures"}
MAX_PAGES_PER_RUN = 1000
PULL_SWEEP_EVERY_S = 60.0
HTTP_TIMEOUT_S = 5.0


class PulledRequest(NamedTuple):
    """How one pulled item is stored: the raw body, its dedup key and the request record parse() sees.

    A connector's `pulled_request(item)` may return a plain `(body, dedup_key, request)` tuple.
    """

    body: bytes
    dedup_key: str
    request: dict[str, Any]


@runtime_checkable
class Pullable(Protocol):
    def pull(self, config: Any, http: httpx.Client, cursor: Any) -> tuple[list[Any], Any]: ...

    def pull_interval_s(self, config: Any) -> float | None: ...


@dataclass
class PullResult:
    pages: int = 0
    items: int = 0
    new: int = 0
    cursor: Any = None
    skipped: bool = False  # another pull of the same source was running


def default_pulled_request(item: Any) -> PulledRequest:
    body = json.dumps(item, ensure_ascii=False, sort_keys=True, default=str).encode()
    return PulledRequest(body, "pull:" + hashlib.sha256(body).hexdigest(), {"method": PULLED_METHOD, "headers": {},
                                                                             "query": {}, "path": ""})


def read_state(hub: Hub, source_id: uuid.UUID, key: str) -> Any:
    with hub.sessions() as session:
        return DbState(session, source_id).get(key)


def write_state(hub: Hub, source_id: uuid.UUID, key: str, value: Any) -> None:
    with hub.transaction() as session:
        DbState(session, source_id).set(key, value)


def run_pull(hub: Hub, source_id: uuid.UUID, *, http: httpx.Client | None = None,
             max_pages: int = MAX_PAGES_PER_RUN) -> PullResult:
    """Pull pages until the connector has nothing new (or `max_pages`), storing and enqueueing each item.

    One pull per source at a time (see `pull_lock`): two would read the same cursor, fetch the same pages
    and together exceed the platform's rate limit. A pull that finds the source busy returns `skipped`.
    """
    with hub.sessions() as session:
        row = session.get(SourceRow, source_id)
        if row is None:
            raise NotFound(f"no source {source_id}", code="source_not_found")
        if not row.enabled:
            raise Conflict(f"source {source_id} is disabled", code="source_disabled")
        source = hub.load_source(row)
    connector = source.connector
    if not isinstance(connector, Pullable):
        raise InvalidRequest(f"connector {connector.name!r} cannot pull", code="pull_not_supported")
    to_request = getattr(connector, "pulled_request", default_pulled_request)
    with pull_lock(hub, source_id) as acquired:
        if not acquired:
            log.info("a pull of source %s is already running; skipped", source_id)
            return PullResult(skipped=True)
        result = PullResult(cursor=read_state(hub, source_id, CURSOR_KEY))
        client = http or outbound_client(HTTP_TIMEOUT_S)
        try:
            _pull_pages(hub, source_id, source, client, to_request, result, max_pages)
        except Exception as exc:
            _record_outcome(hub, source_id, f"{exc.__class__.__name__}: {exc}"[:500])
            raise
        else:
            _record_outcome(hub, source_id, None)
        finally:
            if http is None:
                client.close()
    log.info("pulled %d items (%d new) in %d pages for source %s", result.items, result.new, result.pages, source_id)
    return result


def _pull_pages(hub: Hub, source_id: uuid.UUID, source: Any, client: httpx.Client, to_request: Any,
                result: PullResult, max_pages: int) -> None:
    """Stop at an empty page or at a cursor this run has read already: a connector whose paging comes back to
    where it was (the ERP's last page of orders that share one time goes back to page 1) would otherwise read
    the same pages again and again, `max_pages` requests every run."""
    connector = source.connector
    read = {_cursor_key(result.cursor)}
    while result.pages < max_pages:
        items, new_cursor = connector.pull(source.config, client, result.cursor)
        result.pages += 1
        result.items += len(items)
        result.new += _store(hub, source_id, [PulledRequest(*to_request(item)) for item in items])
        write_state(hub, source_id, CURSOR_KEY, new_cursor)  # after the page is durable
        result.cursor = new_cursor
        key = _cursor_key(new_cursor)
        if not items or key in read:
            break
        read.add(key)


def _cursor_key(cursor: Any) -> str:
    return json.dumps(cursor, sort_keys=True, default=str)


def _record_outcome(hub: Hub, source_id: uuid.UUID, error: str | None) -> None:
    """Keep the pull's health where source health reads it: a pull that fails is otherwise invisible
    (a pulling source receives no requests, so nothing else would change)."""
    now = utcnow().isoformat()
    try:
        _write_outcome(hub, source_id, error, now)
    except Exception:  # never let bookkeeping hide the pull's own outcome (or its exception)
        log.exception("could not record the pull outcome of source %s", source_id)


def _write_outcome(hub: Hub, source_id: uuid.UUID, error: str | None, now: str) -> None:
    with hub.transaction() as session:
        state = DbState(session, source_id)
        health = dict(state.get(HEALTH_KEY) or {"last_success_at": None, "last_error": None,
                                                 "last_error_at": None, "consecutive_failures": 0})
        if error is None:
            health.update(last_success_at=now, consecutive_failures=0)
        else:
            health.update(last_error=error, last_error_at=now,
                          consecutive_failures=int(health.get("consecutive_failures") or 0) + 1)
        state.set(HEALTH_KEY, health)


_local_pulls: set[uuid.UUID] = set()
_local_pulls_lock = threading.Lock()


@contextmanager
def pull_lock(hub: Hub, source_id: uuid.UUID) -> Iterator[bool]:
    """Yield whether this process may pull `source_id` now; never waits.

    On PostgreSQL a session advisory lock held on its own connection covers every worker process; with
    SQLite (one process runs the tasks) a process-local set is enough.
    """
    if hub.engine.dialect.name == "postgresql":
        lock = try_advisory_lock(hub.engine, b"crmhub-pull:" + source_id.bytes, f"the pull of source {source_id}")
        with lock as acquired:
            yield acquired
        return
    with _local_pulls_lock:
        acquired = source_id not in _local_pulls
        _local_pulls.add(source_id)
    try:
        yield acquired
    finally:
        if acquired:
            with _local_pulls_lock:
                _local_pulls.discard(source_id)


def _store(hub: Hub, source_id: uuid.UUID, pulled: list[PulledRequest]) -> int:
    if not pulled:
        return 0
    subs = [RawSubmission(source_id, storable_key(p.dedup_key), p.request, p.body) for p in pulled]
    new = 0
    # A pulled item seen before is the pull overlapping itself (the boundary page), not a platform redelivering:
    # it is not logged as an inbound duplicate, which would count as traffic in source health.
    for raw_id, is_new in store_raw_batch(hub, subs, log_duplicates=False):
        if is_new and raw_id is not None:
            new += 1
            enqueue("hub.pipeline.process_raw", raw_id)
    return new


@task("hub.pull.pull_source", queue="ingest", max_retries=5)
def pull_source(source_id: str) -> int:
    """Run one source's pull; transient upstream failures are retried, the cursor makes that safe."""
    try:
        return run_pull(get_hub(), uuid.UUID(source_id)).new
    except (NotFound, Conflict) as exc:  # deleted or disabled since the pull was scheduled: nothing to do
        log.info("pull of source %s not run: %s", source_id, exc)
        return 0
    except httpx.HTTPError as exc:
        raise RetryableError(f"pull failed: {exc.__class__.__name__}: {exc}") from exc


@task("hub.pull.pull_due", queue="ingest")
def pull_due() -> int:
    """Enqueue a pull for every enabled source whose interval has passed since its last one."""
    hub = get_hub()
    now = utcnow()
    with hub.sessions() as session:
        rows = list(session.scalars(select(SourceRow).where(SourceRow.enabled.is_(True))))
        due = [row.id for row in rows if _is_due(hub, row, session, now)]
    for source_id in due:
        write_state(hub, source_id, LAST_RUN_KEY, now.isoformat())
        enqueue("hub.pull.pull_source", str(source_id))
    return len(due)


def _is_due(hub: Hub, row: SourceRow, session: Any, now: Any) -> bool:
    if row.connector not in hub.connectors or not isinstance(hub.connectors.get(row.connector), Pullable):
        return False
    try:
        source = hub.load_source(row)
    except InvalidRequest:
        return False
    interval = source.connector.pull_interval_s(source.config)  # type: ignore[attr-defined]
    if interval is None:
        return False
    last = DbState(session, row.id).get(LAST_RUN_KEY)
    if last is None:
        return True
    from datetime import datetime

    return bool(datetime.fromisoformat(last) + timedelta(seconds=interval) <= now)
