"""Retention in the kernel: the settings, the batched pruner, `inbound_rejections`, and both runners' schedules."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import event, func, select, update

from hub.inprocess import InProcessRunner
from hub.models import InboundRejection, QuarantineRow, RawEvent, SourceRow
from hub.retention import (
    PRUNE_EVERY_S,
    RAW_TASK,
    REJECTIONS_TASK,
    Pruner,
    cutoff,
    prune_raw,
    prune_rejections,
    run_pruning,
)
from hub.runtime import Hub, set_hub
from hub.schemas import utcnow
from hub.settings import Settings, describe_invalid
from tests.conftest import REDIS_URL, make_hub, make_settings
from tests.helpers import add_source, basic, client_for, count_events, raw_rows, sqlite_plans_of_selects, wait_processed
from webhooks.health import source_health
from webhooks.retention import PRUNE_TASK as ATTEMPTS_TASK


def test_retention_settings_default_to_30_days_and_take_0_for_ever(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (defaults.attempts_retention_days, defaults.rejections_retention_days) == (30, 30)
    monkeypatch.setenv("CRMHUB_ATTEMPTS_RETENTION_DAYS", "0")
    monkeypatch.setenv("CRMHUB_REJECTIONS_RETENTION_DAYS", "7")
    read = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (read.attempts_retention_days, read.rejections_retention_days) == (0, 7)


@pytest.mark.parametrize("value", ["-1", "1.5", "30d", "", "1000000"])
@pytest.mark.parametrize("variable", ["CRMHUB_ATTEMPTS_RETENTION_DAYS", "CRMHUB_REJECTIONS_RETENTION_DAYS"])
def test_a_retention_setting_that_is_not_whole_days_stops_the_hub_naming_it(
        monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)  # type: ignore[call-arg]
    assert describe_invalid(caught.value).startswith(f"invalid setting {variable}={value!r}: ")


def test_cutoff_is_the_window_before_now_and_none_for_0() -> None:
    now = utcnow()
    assert cutoff(30, now) == now - timedelta(days=30)
    assert cutoff(0, now) is None


# ---------------------------------------------------------------- inbound_rejections


def _source(hub: Hub, name: str) -> uuid.UUID:
    now = utcnow()
    source_id = uuid.uuid4()
    with hub.engine.begin() as conn:
        conn.execute(SourceRow.__table__.insert(), [{"id": source_id, "connector": "pos", "name": name, "enabled": True,
                                                     "config_sealed": "x", "config_public": {}, "created_at": now,
                                                     "updated_at": now}])
    return source_id


def _log(hub: Hub, source_id: uuid.UUID, *ages: timedelta, code: str = "bad_signature") -> None:
    now = utcnow()
    with hub.engine.begin() as conn:
        conn.execute(InboundRejection.__table__.insert(), [
            {"source_id": source_id, "status_code": 401, "code": code, "at": now - age} for age in ages])


def _ages(hub: Hub, source_id: uuid.UUID) -> list[int]:
    """Whole days before now of the source's logged rows, oldest first."""
    now = utcnow()
    with hub.sessions() as session:
        times = session.scalars(select(InboundRejection.at).where(InboundRejection.source_id == source_id)
                                .order_by(InboundRejection.at))
        return [(now - at).days for at in times]


def _count(hub: Hub, model: Any) -> int:
    with hub.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _durable_rows(hub: Hub, source_id: uuid.UUID) -> None:
    """A raw request and a quarantine row a year old: neither is an operational log, so neither may go."""
    old = utcnow() - timedelta(days=365)
    with hub.engine.begin() as conn:
        conn.execute(RawEvent.__table__.insert(), [{"source_id": source_id, "dedup_key": "k1", "request": {},
                                                    "body": b"{}", "received_at": old, "status": "handled"}])
        conn.execute(QuarantineRow.__table__.insert(), [{"id": uuid.uuid4(), "source_id": source_id,
                                                         "reason": "bad_phone", "created_at": old}])


def test_old_rejections_go_in_batches_and_source_health_reads_the_same(any_hub: Hub) -> None:
    busy, quiet = _source(any_hub, "busy"), _source(any_hub, "quiet")
    days = [timedelta(days=d) for d in (90, 80, 70, 60, 50, 45, 40, 35, 33, 32, 31.5, 31)]  # 12 past the 30 days
    _log(any_hub, busy, *days)
    _log(any_hub, busy, timedelta(days=29), timedelta(minutes=30))
    _log(any_hub, busy, timedelta(minutes=10), code="duplicate")
    _log(any_hub, quiet, *(timedelta(days=d) for d in (60, 50, 40, 35, 34)))  # its platform last called 34 days ago
    _durable_rows(any_hub, quiet)
    now = utcnow()
    with any_hub.sessions() as session:
        before = source_health(session, now)

    pruner = Pruner(any_hub, batch=5, pause_s=0)
    assert prune_rejections(any_hub, pruner, now) == 12 + 4

    assert _ages(any_hub, busy) == [29, 0, 0]
    assert _ages(any_hub, quiet) == [34]  # its newest row, kept: `last_received_at` still says when it called
    assert pruner.batches == 3 + 1 and not pruner.exhausted  # busy: 5 + 5 + 2; quiet: 4
    with any_hub.sessions() as session:
        assert source_health(session, now) == before
    assert (_count(any_hub, RawEvent), _count(any_hub, QuarantineRow)) == (1, 1)


def test_0_days_keeps_every_rejection(any_hub: Hub) -> None:
    source_id = _source(any_hub, "kept")
    _log(any_hub, source_id, *(timedelta(days=d) for d in (400, 200, 31)))
    any_hub.settings.rejections_retention_days = 0
    assert prune_rejections(any_hub, Pruner(any_hub, pause_s=0)) == 0
    assert _ages(any_hub, source_id) == [400, 200, 31]


def test_a_shorter_window_prunes_more(hub: Hub) -> None:
    source_id = _source(hub, "short")
    _log(hub, source_id, *(timedelta(days=d) for d in (20, 8, 6, 1)), timedelta(hours=2))
    hub.settings.rejections_retention_days = 7
    assert prune_rejections(hub, Pruner(hub, pause_s=0)) == 2
    assert _ages(hub, source_id) == [6, 1, 0]


def test_each_batch_is_a_transaction_of_its_own(hub: Hub) -> None:
    """A writer waits at most one batch: every DELETE commits before the next SELECT."""
    source_id = _source(hub, "batches")
    _log(hub, source_id, *(timedelta(days=40, minutes=i) for i in range(7)), timedelta(days=1))
    seen: list[str] = []

    def keep(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "inbound_rejections" in statement:
            seen.append(statement.split()[0].upper())

    def commit(conn: Any) -> None:
        seen.append("COMMIT")

    event.listen(hub.engine, "before_cursor_execute", keep)
    event.listen(hub.engine, "commit", commit)
    try:
        assert prune_rejections(hub, Pruner(hub, batch=3, pause_s=0)) == 7
    finally:
        event.remove(hub.engine, "before_cursor_execute", keep)
        event.remove(hub.engine, "commit", commit)
    # The newest row's id; then per batch its ids, its last row's time (where the next one starts), the DELETE.
    assert seen == ["SELECT"] + ["SELECT", "SELECT", "DELETE", "COMMIT"] * 3  # 3 + 3 + 1 rows


def test_the_prune_reads_its_rows_by_index(hub: Hub) -> None:
    """SQLite: every statement SEARCHes ix_inbound_rejections_source_at (or the primary key), never SCANs the log."""
    source_id = _source(hub, "plans")
    _log(hub, source_id, *(timedelta(days=40, minutes=i) for i in range(3)))
    plans = sqlite_plans_of_selects(hub, "inbound_rejections",
                                    lambda: prune_rejections(hub, Pruner(hub, batch=2, pause_s=0)))
    assert len(plans) >= 3
    for plan in plans:
        assert "SCAN inbound_rejections" not in plan and "SEARCH inbound_rejections USING" in plan, plan


# ---------------------------------------------------------------- runs and schedules


class _Recorder:
    """A runner that only records what was queued."""

    def __init__(self) -> None:
        self.queued: list[str] = []

    def enqueue(self, name: str, args: tuple[Any, ...], countdown: float | None = None) -> None:
        self.queued.append(name)

    def start(self) -> None:
        return None

    def stop(self, timeout: float = 10.0) -> None:
        return None


def test_a_run_that_reaches_its_batch_limit_queues_another(tmp_path: Path) -> None:
    recorder = _Recorder()
    hub = make_hub(make_settings(tmp_path), runner=recorder)
    try:
        source_id = _source(hub, "backlog")
        _log(hub, source_id, *(timedelta(days=40, minutes=i) for i in range(9)), timedelta(days=1))
        assert run_pruning(REJECTIONS_TASK, prune_rejections, Pruner(hub, batch=2, max_batches=3, pause_s=0)) == 6
        assert recorder.queued == [REJECTIONS_TASK]
        assert run_pruning(REJECTIONS_TASK, prune_rejections, Pruner(hub, batch=2, max_batches=3, pause_s=0)) == 3
        assert recorder.queued == [REJECTIONS_TASK]  # done: nothing more queued
        assert _ages(hub, source_id) == [1]
    finally:
        hub.engine.dispose()
        set_hub(None)


def test_both_prunes_are_scheduled_in_process(hub: Hub) -> None:
    assert (REJECTIONS_TASK, PRUNE_EVERY_S) in hub.schedules
    assert (ATTEMPTS_TASK, PRUNE_EVERY_S) in hub.schedules
    assert (RAW_TASK, PRUNE_EVERY_S) in hub.schedules
    assert isinstance(hub.runner, InProcessRunner)
    periodic = dict(hub.runner._periodic)
    assert periodic[REJECTIONS_TASK] == periodic[ATTEMPTS_TASK] == periodic[RAW_TASK] == 3600.0


def test_both_prunes_are_in_the_celery_beat_schedule(tmp_path: Path) -> None:
    from hub.worker import make_celery

    hub = make_hub(make_settings(tmp_path), runner=_Recorder())
    app = make_celery(make_settings(tmp_path, broker_url=REDIS_URL), hub.schedules)  # builds, connects to nothing
    try:
        beat = app.conf.beat_schedule
        def hourly(task: str, queue: str) -> dict[str, Any]:
            return {"task": task, "schedule": 3600.0, "options": {"queue": queue, "expires": 3600.0}}

        assert beat[REJECTIONS_TASK] == hourly(REJECTIONS_TASK, "ingest")
        assert beat[ATTEMPTS_TASK] == hourly(ATTEMPTS_TASK, "deliver")
        assert beat[RAW_TASK] == hourly(RAW_TASK, "ingest")
        assert {REJECTIONS_TASK, ATTEMPTS_TASK, RAW_TASK} <= set(app.tasks)
    finally:
        app.close()
        hub.engine.dispose()
        set_hub(None)


# ---------------------------------------------------------------- handled raw requests (opt-in)


def _raw(hub: Hub, source_id: uuid.UUID, age: timedelta, status: str = "handled", key: str | None = None) -> int:
    with hub.engine.begin() as conn:
        return int(conn.execute(RawEvent.__table__.insert().returning(RawEvent.id), [{
            "source_id": source_id, "dedup_key": key or uuid.uuid4().hex, "request": {}, "body": b"{}",
            "received_at": utcnow() - age, "status": status}]).scalar_one())


def _raw_ages(hub: Hub, source_id: uuid.UUID) -> list[tuple[int, str]]:
    now = utcnow()
    with hub.sessions() as session:
        rows = session.execute(select(RawEvent.received_at, RawEvent.status).where(RawEvent.source_id == source_id)
                               .order_by(RawEvent.received_at))
        return [((now - at).days, status) for at, status in rows]


def test_raw_requests_are_kept_for_ever_by_default(any_hub: Hub) -> None:
    source_id = _source(any_hub, "kept")
    for days in (400, 60, 31):
        _raw(any_hub, source_id, timedelta(days=days))
    assert Settings(_env_file=None).raw_retention_days == 0  # type: ignore[call-arg]
    assert prune_raw(any_hub, Pruner(any_hub, pause_s=0)) == 0
    assert _raw_ages(any_hub, source_id) == [(400, "handled"), (60, "handled"), (31, "handled")]


def test_a_raw_window_prunes_only_handled_requests_nothing_points_to(any_hub: Hub) -> None:
    """Pending and failed rows are work not done, quarantined ones and those a quarantine row names are evidence (and
    what `crmhub replay` re-runs), and a source's newest request says when its platform last called."""
    busy, quiet = _source(any_hub, "busy"), _source(any_hub, "quiet")
    for days in (90, 80, 70, 60, 50, 40, 35):
        _raw(any_hub, busy, timedelta(days=days))
    _raw(any_hub, busy, timedelta(days=85), status="pending")
    _raw(any_hub, busy, timedelta(days=75), status="failed")
    _raw(any_hub, busy, timedelta(days=65), status="quarantined")
    named = _raw(any_hub, busy, timedelta(days=55))
    _raw(any_hub, busy, timedelta(days=29))
    _raw(any_hub, busy, timedelta(minutes=5))
    for days in (60, 45):
        _raw(any_hub, quiet, timedelta(days=days))
    with any_hub.engine.begin() as conn:
        conn.execute(QuarantineRow.__table__.insert(), [{"id": uuid.uuid4(), "source_id": busy, "raw_event_id": named,
                                                         "reason": "bad_phone", "created_at": utcnow()}])
    any_hub.settings.raw_retention_days = 30
    now = utcnow()
    with any_hub.sessions() as session:
        before = source_health(session, now)

    pruner = Pruner(any_hub, batch=3, pause_s=0)
    assert prune_raw(any_hub, pruner, now) == 7 + 1

    assert _raw_ages(any_hub, busy) == [(85, "pending"), (75, "failed"), (65, "quarantined"), (55, "handled"),
                                        (29, "handled"), (0, "handled")]
    assert _raw_ages(any_hub, quiet) == [(45, "handled")]  # its newest: health still says when it last called
    with any_hub.sessions() as session:
        assert source_health(session, now) == before
    assert _count(any_hub, QuarantineRow) == 1


def test_a_raw_request_replayed_meanwhile_is_not_deleted(hub: Hub) -> None:
    """Between a batch's SELECT and its DELETE, `crmhub replay` may set a handled row pending: the DELETE re-checks."""
    source_id = _source(hub, "replayed")
    first = _raw(hub, source_id, timedelta(days=50))
    _raw(hub, source_id, timedelta(days=40))
    _raw(hub, source_id, timedelta(days=1))
    hub.settings.raw_retention_days = 30

    def replay_first(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM RAW_EVENTS"):
            cursor.execute("UPDATE raw_events SET status = 'pending' WHERE id = ?", (first,))

    event.listen(hub.engine, "before_cursor_execute", replay_first)
    try:
        assert prune_raw(hub, Pruner(hub, pause_s=0)) == 1
    finally:
        event.remove(hub.engine, "before_cursor_execute", replay_first)
    assert _raw_ages(hub, source_id) == [(50, "pending"), (1, "handled")]


def test_a_redelivery_after_the_prune_stores_no_second_event(hub: Hub) -> None:
    """Past the window a platform's redelivery is a new raw request, but its event is stored already: nothing new."""
    client = client_for(hub)
    source_id = add_source(client, "web", "site", {"write_key": "write-key-retention"})
    message = {"type": "track", "event": "Viewed", "userId": "u-1", "messageId": "m-1"}
    for body in (message, {**message, "messageId": "m-2"}):
        assert client.post(f"/hooks/{source_id}/v1/track", json=body, headers=basic("write-key-retention")).is_success
    wait_processed(hub)
    with hub.engine.begin() as conn:  # the first request arrived 60 days ago
        conn.execute(update(RawEvent).where(RawEvent.dedup_key.contains("m-1"))
                     .values(received_at=utcnow() - timedelta(days=60)))
    hub.settings.raw_retention_days = 30
    assert prune_raw(hub, Pruner(hub, pause_s=0)) == 1

    again = client.post(f"/hooks/{source_id}/v1/track", json=message, headers=basic("write-key-retention"))
    assert again.is_success
    wait_processed(hub)
    assert count_events(hub) == 2
    assert [raw.status for raw in raw_rows(hub)] == ["handled", "handled"]


@pytest.mark.parametrize("value", ["1", "6"])
def test_a_raw_window_under_a_week_stops_the_hub(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CRMHUB_RAW_RETENTION_DAYS", value)
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)  # type: ignore[call-arg]
    assert describe_invalid(caught.value).startswith(f"invalid setting CRMHUB_RAW_RETENTION_DAYS={value!r}: 0 (keep")
    monkeypatch.setenv("CRMHUB_RAW_RETENTION_DAYS", "7")
    assert Settings(_env_file=None).raw_retention_days == 7  # type: ignore[call-arg]


def test_the_raw_prune_reads_its_rows_by_index(hub: Hub) -> None:
    source_id = _source(hub, "plans")
    for minutes in range(3):
        _raw(hub, source_id, timedelta(days=40, minutes=minutes))
    _raw(hub, source_id, timedelta(days=1))
    hub.settings.raw_retention_days = 30
    plans = sqlite_plans_of_selects(hub, "raw_events", lambda: prune_raw(hub, Pruner(hub, batch=2, pause_s=0)))
    assert len(plans) >= 3
    for plan in plans:
        assert "SCAN raw_events" not in plan and "SEARCH raw_events USING" in plan, plan
