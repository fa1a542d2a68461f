"""`crmhub import FILE`: a bulk spreadsheet import through the same pipeline as live events (contract §2, §8).

Why it is kernel-side: it writes raw rows and runs the pipeline, which connectors may not. The `spreadsheet`
connector reads the file and groups rows into batches; each batch is stored as one raw event (deduplicated on a
hash of its rows, so re-importing a file stores nothing new) and processed at once by `process_raw`, which calls
the connector's `parse()`: accepted rows become `record.imported` events (unique on a hash of the cleaned row),
rejected rows go to the quarantine table with their reasons. Memory stays flat: one batch is in flight.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import exists, func, select
from sqlalchemy.orm import aliased

from hub.errors import Conflict, HubError, InvalidRequest, RetryableError
from hub.ingest import RawSubmission, store_raw_batch
from hub.models import RAW_FAILED, EventRow, RawEvent, SourceRow
from hub.runtime import Hub, current_hub, set_hub

IMPORT_CONNECTOR = "spreadsheet"
EVENT_TYPE = "record.imported"
ISSUE_KEYS = ("invisible_chars", "formula_residue", "invalid_phone", "invalid_email", "short_company_name",
              "invalid_uscc")
ADDED_ISSUE_KEYS = ("placeholder_identity", "number_precision_lost")  # counted beyond contract §8's keys
INLINE_RETRIES = 3

Progress = Callable[[int, int], None]


class ImportFailed(HubError):
    status_code = 400
    code = "import_failed"


class RowResult(Protocol):
    source_event_id: str
    reasons: list[str]
    problems: set[str]


class FileBatch(Protocol):
    key: str
    body: bytes
    outcomes: list[Any]  # RowResult


class OpenedFile(Protocol):
    """What the spreadsheet connector's `open_import()` returns (structural: the kernel imports no connector)."""

    warnings: list[dict[str, str]]

    @property
    def bom(self) -> bool: ...

    @property
    def merged_cells(self) -> int: ...

    def batches(self) -> Any: ...  # Iterator[FileBatch]

    def progress(self) -> tuple[int, int]: ...

    def close(self) -> None: ...


@dataclass
class Tally:
    rows: int = 0
    imported: int = 0
    quarantined: int = 0
    duplicates: int = 0
    issues: dict[str, int] = field(default_factory=dict)
    warnings: list[dict[str, str]] = field(default_factory=list)
    failed_rows: int = 0
    seen: set[int] = field(default_factory=set)  # dry run: row ids already met in this file (64-bit prefixes)
    seen_bad: set[int] = field(default_factory=set)  # quarantined rows' ids met in this file

    def count(self, outcome: RowResult) -> None:
        self.rows += 1
        for problem in outcome.problems:
            self.issues[problem] = self.issues.get(problem, 0) + 1
        if outcome.reasons:
            # A bad row repeated in the file is kept once in quarantine (keyed by its content), so it counts
            # as a duplicate, like a good row repeated: the report's `quarantined` is what the quarantine holds.
            key = _id_key(outcome.source_event_id)
            if key in self.seen_bad:
                self.duplicates += 1  # the dry run's count; a real import derives duplicates from the others
            else:
                self.seen_bad.add(key)
                self.quarantined += 1


def run_import(
    hub: Hub,
    path: str,
    *,
    source_name: str = "import",
    dry_run: bool = False,
    overrides: Mapping[str, str] | None = None,
    batch_rows: int = 1000,
    progress: Progress | None = None,
    empty_database: bool = False,
) -> dict[str, Any]:
    """Import `path`; returns the report (contract §8). Raises ImportFailed for an unusable file or source.

    `empty_database` (dry runs only): the database has no tables yet, so nothing is stored and none is read.
    """
    started = time.perf_counter()
    source_name = source_name.strip()  # as a source's name is stored, so " crm " finds "crm" next time
    if not source_name:
        raise ImportFailed("--source needs a name", code="invalid_source_name")
    if current_hub() is None:
        set_hub(hub)  # process_raw finds the hub through get_hub()
    connector = _connector(hub)
    if empty_database and not dry_run:
        raise ValueError("empty_database is for dry runs: a real import migrates first")
    source = None if empty_database else _source(hub, source_name, create=False)
    config = hub.load_source(source).config if source is not None else None
    try:
        opened: OpenedFile = connector.open_import(path, config=config, overrides=overrides, batch_rows=batch_rows)
    except ValueError as exc:  # a bad --map
        raise ImportFailed(str(exc), code="invalid_mapping") from exc
    if source is None and not dry_run:
        try:
            source = _source(hub, source_name, create=True)
        except BaseException:
            opened.close()
            raise
    tally = Tally()
    start_seq = 0 if dry_run else _max_seq(hub)
    try:
        for batch in opened.batches():
            for outcome in batch.outcomes:
                tally.count(outcome)
            if dry_run:
                _dry_run_batch(hub, source, batch, tally)
            else:
                connector.remember(batch.body, batch.outcomes)
                _store_and_process(hub, source, batch, tally)  # type: ignore[arg-type]
            if progress is not None:
                progress(*opened.progress())
    finally:
        opened.close()
    created, matched = (None, None) if dry_run or source is None else _customers(hub, source.id, start_seq)
    if not dry_run and source is not None:
        tally.imported = _imported(hub, source.id, start_seq)
        tally.duplicates = tally.rows - tally.quarantined - tally.imported - tally.failed_rows
    return {
        "file": path,
        "rows": tally.rows,
        "imported": tally.imported,
        "quarantined": tally.quarantined,
        "duplicates": max(0, tally.duplicates),
        "customers_created": created,
        "customers_matched": matched,
        "warnings": [*opened.warnings, *tally.warnings],
        "issues": {key: tally.issues.get(key, 0) for key in (*ISSUE_KEYS, *ADDED_ISSUE_KEYS)},
        "merged_cells": opened.merged_cells,
        "bom": opened.bom,
        "seconds": round(time.perf_counter() - started, 3),
        "dry_run": dry_run,
        "source": source_name,
    }


# ---------------------------------------------------------------- pieces


def _connector(hub: Hub) -> Any:
    if IMPORT_CONNECTOR not in hub.connectors:
        raise ImportFailed("the spreadsheet connector is not installed", code="connector_missing")
    return hub.connectors.get(IMPORT_CONNECTOR)


def _source(hub: Hub, name: str, *, create: bool) -> SourceRow | None:
    """The import source by name (created on first real import); one of another connector is an error."""
    with hub.sessions() as session:
        row = session.scalars(select(SourceRow).where(SourceRow.name == name)).first()
    if row is not None:
        if row.connector != IMPORT_CONNECTOR:
            raise ImportFailed(f"source {name!r} belongs to connector {row.connector!r}, not {IMPORT_CONNECTOR!r}",
                               code="wrong_source")
        return row
    if not create:
        return None
    from hub.api import create_source
    from hub.schemas import SourceCreate

    try:
        view = create_source(hub, SourceCreate(connector=IMPORT_CONNECTOR, name=name, config={}))
    except (InvalidRequest, Conflict) as exc:  # Conflict: a concurrent import took the name first
        raise ImportFailed(exc.message, code=exc.code) from exc
    with hub.sessions() as session:
        return session.get(SourceRow, view.id)


def _max_seq(hub: Hub) -> int:
    with hub.sessions() as session:
        return int(session.scalar(select(func.max(EventRow.seq))) or 0)


def _id_key(source_event_id: str) -> int:
    """64 bits of the id: a dry run of a million rows remembers 8 bytes a row, not the whole id.

    (It used to take the id's last 8 characters: 32 bits of hex, a ~12 % chance of a false duplicate
    somewhere in a 32,756-row file.)
    """
    return int.from_bytes(hashlib.blake2b(source_event_id.encode(), digest_size=8).digest(), "big")


def _dry_run_batch(hub: Hub, source: SourceRow | None, batch: FileBatch, tally: Tally) -> None:
    candidates = [o.source_event_id for o in batch.outcomes if not o.reasons]
    stored: set[str] = set()
    if source is not None and candidates:
        with hub.sessions() as session:
            stored = set(session.scalars(select(EventRow.source_event_id).where(
                EventRow.source_id == source.id, EventRow.source_event_id.in_(candidates))))
    for sid in candidates:
        key = _id_key(sid)
        if sid in stored or key in tally.seen:
            tally.duplicates += 1
        else:
            tally.seen.add(key)
            tally.imported += 1


def _store_and_process(hub: Hub, source: SourceRow, batch: FileBatch, tally: Tally) -> None:
    from hub.pipeline import process_raw

    request = {"method": "POST", "headers": {"content-type": "application/json"}, "query": {}, "path": "import"}
    sub = RawSubmission(source.id, batch.key, request, batch.body, event_count=len(batch.outcomes))
    raw_id, _ = store_raw_batch(hub, [sub])[0]
    if raw_id is None:  # stored by an earlier import: re-process only if that one did not finish
        with hub.sessions() as session:
            raw_id = session.scalar(select(RawEvent.id).where(RawEvent.source_id == source.id,
                                                              RawEvent.dedup_key == batch.key))
    if raw_id is None:
        return
    for attempt in range(INLINE_RETRIES + 1):
        try:
            status = process_raw(raw_id)
            break
        except RetryableError:
            if attempt == INLINE_RETRIES:
                raise
            time.sleep(0.2 * 2**attempt)
    if status == RAW_FAILED:
        with hub.sessions() as session:
            error = session.scalar(select(RawEvent.error).where(RawEvent.id == raw_id))
        tally.warnings.append({"code": "batch_failed", "detail": f"raw event {raw_id} "
                               f"({len(batch.outcomes)} rows) failed and is kept for `crmhub replay`: {error}"})
        tally.failed_rows += sum(1 for o in batch.outcomes if not o.reasons)


def _imported(hub: Hub, source_id: uuid.UUID, start_seq: int) -> int:
    with hub.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(EventRow).where(
            EventRow.source_id == source_id, EventRow.seq > start_seq, EventRow.type == EVENT_TYPE)) or 0)


def _customers(hub: Hub, source_id: uuid.UUID, start_seq: int) -> tuple[int, int]:
    """(created, matched): customers of this import's new events, split by whether any earlier event had them."""
    run = (select(EventRow.customer_id.label("cid"))
           .where(EventRow.source_id == source_id, EventRow.seq > start_seq, EventRow.type == EVENT_TYPE,
                  EventRow.customer_id.is_not(None))
           .distinct().subquery())
    earlier = aliased(EventRow)
    before = exists().where(earlier.customer_id == run.c.cid, earlier.seq <= start_seq)
    with hub.sessions() as session:
        total = int(session.scalar(select(func.count()).select_from(run)) or 0)
        matched = int(session.scalar(select(func.count()).select_from(run).where(before)) or 0)
    return total - matched, matched
