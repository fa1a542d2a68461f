"""The pipeline on SQLite and PostgreSQL: idempotent, failures kept and replayable, nothing lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import String, cast, event, select

from hub.db import JSONText, _json_serializer
from hub.ingest import RawSubmission, store_raw_batch
from hub.models import EventRow, QuarantineRow, RawEvent
from hub.pipeline import MAX_UNFINISHED_RUNS, process_raw, recover_on_startup, replay
from hub.runtime import Hub
from hub.schemas import MAX_NESTING
from tests.conftest import make_hub, make_settings, running
from tests.helpers import add_source, checkout_pythonpath, client_for, count_events, wait_processed

KEY = "write-key-pipeline"


def _submit(hub: Hub, source_id: str, message: dict[str, Any], path: str = "v1/track") -> int:
    import base64
    import uuid

    auth = "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
    sub = RawSubmission(uuid.UUID(source_id), f"msg:{message.get('messageId')}",
                        {"method": "POST", "headers": {"authorization": auth}, "query": {}, "path": path},
                        json.dumps(message).encode())
    (raw_id, is_new), = store_raw_batch(hub, [sub])
    assert is_new and raw_id is not None
    return raw_id


@pytest.fixture
def source(any_hub: Hub) -> tuple[Hub, str]:
    return any_hub, add_source(client_for(any_hub), "web", "site", {"write_key": KEY})


def _msg(mid: str, **extra: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Viewed", "userId": "u-1", "messageId": mid,
            "timestamp": "2026-01-25T14:22:00+08:00", **extra}


def test_process_raw_is_idempotent(source: tuple[Hub, str]) -> None:
    hub, sid = source
    raw_id = _submit(hub, sid, _msg("a"))
    assert process_raw(raw_id) == "handled"
    assert process_raw(raw_id) == "handled"
    assert count_events(hub) == 1
    with hub.sessions() as s:
        event = s.scalars(select(EventRow)).one()
    assert event.data["occurred_at"] == "2026-01-25T14:22:00+08:00"  # the sender's offset is kept
    assert event.data["identities"] == [{"type": "web_user_id", "value": "u-1"}]
    assert event.customer_id is not None


def test_replaying_a_batch_for_its_quarantined_message_counts_no_duplicates(source: tuple[Hub, str]) -> None:
    """The replay finds the batch's good message stored by its own first run: that is not a duplicate. It was
    counted as one, and the data-health report's duplicate rate went from 0 to 100 % for a platform that sent
    nothing twice."""
    from hub.quality_report import build_report

    hub, sid = source
    raw_id = _submit(hub, sid, {"batch": [_msg("a"), _msg("b", userId=None)]}, path="v1/batch")
    assert process_raw(raw_id) == "handled"
    assert (build_report(hub)["duplicate_rate"], build_report(hub)["quarantine"]) == (0.0, {"missing_identity": 1})
    assert replay(hub, statuses=["quarantined"]) == 1
    wait_processed(hub)
    with hub.sessions() as s:
        raw = s.get(RawEvent, raw_id)
        assert raw is not None and (raw.status, raw.events_stored, raw.events_duplicate) == ("handled", 1, 0)
    report = build_report(hub)
    assert (report["duplicate_rate"], report["duplicates"], report["events"]) == (0.0, 0, 1)


def test_a_requests_stored_events_leave_out_what_resolution_emitted(source: tuple[Hub, str]) -> None:
    """A request of 2 events, one already stored, whose other merges two customers: 1 stored, 1 duplicate, as its
    reply says. The customer.merged the merge emitted was counted as one of its events (2 stored), and the duplicate
    rate read 1 in 5 instead of 1 in 4."""
    from hub.quality_report import build_report

    hub, sid = source
    anonymous = _submit(hub, sid, _msg("a", userId=None, anonymousId="anon-1"))
    known = _submit(hub, sid, _msg("b"))
    both = _submit(hub, sid, {"batch": [_msg("a", userId=None, anonymousId="anon-1"),
                                        _msg("c", type="identify", anonymousId="anon-1")]}, path="v1/batch")
    for raw_id in (anonymous, known, both):
        assert process_raw(raw_id) == "handled"
    assert count_events(hub, type="customer.merged") == 1
    with hub.sessions() as s:
        raw = s.get(RawEvent, both)
        assert raw is not None and (raw.events_stored, raw.events_duplicate) == (1, 1)
    assert build_report(hub)["duplicate_rate"] == 0.25


def test_failure_is_recorded_on_the_raw_row_and_replayable(source: tuple[Hub, str], monkeypatch: Any) -> None:
    hub, sid = source
    raw_id = _submit(hub, sid, _msg("b"))
    connector = hub.connectors.get("web")

    def boom(*_: Any) -> Any:
        raise RuntimeError("downstream exploded")

    monkeypatch.setattr(connector, "parse", boom)
    assert process_raw(raw_id) == "failed"
    with hub.sessions() as s:
        raw = s.get(RawEvent, raw_id)
        assert raw is not None and raw.status == "failed" and "downstream exploded" in (raw.error or "")
    monkeypatch.undo()
    assert replay(hub, statuses=["failed"]) == 1
    wait_processed(hub)
    assert count_events(hub) == 1


def test_quarantined_payload_is_kept_with_its_reason(source: tuple[Hub, str]) -> None:
    hub, sid = source
    raw_id = _submit(hub, sid, {"batch": "not-a-list"}, path="v1/batch")
    assert process_raw(raw_id) == "quarantined"
    with hub.sessions() as s:
        row = s.scalars(select(QuarantineRow)).one()
        assert row.reason == "invalid_batch" and row.raw_event_id == raw_id
        assert "not-a-list" in json.dumps(row.payload)


def test_pending_rows_are_recovered_at_startup(source: tuple[Hub, str]) -> None:
    hub, sid = source
    ids = [_submit(hub, sid, _msg(f"r{i}")) for i in range(5)]
    # Nothing was enqueued (as if the process died right after the commit).
    assert recover_on_startup(hub) == len(ids)
    wait_processed(hub)
    assert count_events(hub) == 5


def test_quality_issues_and_identity_normalisation(source: tuple[Hub, str]) -> None:
    hub, sid = source
    message = {"type": "identify", "userId": "u-9", "messageId": "q-1",
               "traits": {"name": "张\u200e伟", "phone": "１３８ ００１３ ８０００", "email": "not-an-email"}}
    raw_id = _submit(hub, sid, message, path="v1/identify")
    process_raw(raw_id)
    with hub.sessions() as s:
        data = s.scalars(select(EventRow)).one().data
    idents = {(i["type"], i["value"]) for i in data["identities"]}
    assert ("phone", "+8613800138000") in idents
    assert not any(t == "email" for t, _ in idents)
    codes = {i["code"] for i in data["quality"]["issues"]}
    assert "invisible_chars_removed" in codes
    assert any(i["field"] == "identities.email" for i in data["quality"]["issues"])


def test_a_short_company_name_is_flagged_on_a_live_event_not_only_in_imports(source: tuple[Hub, str]) -> None:
    hub, sid = source
    message = {"type": "identify", "userId": "u-8", "messageId": "q-2",
               "traits": {"name": "王五", "company": {"name": "阿里"}, "phone": "13800138000"}}
    process_raw(_submit(hub, sid, message, path="v1/identify"))
    with hub.sessions() as s:
        issues = s.scalars(select(EventRow)).one().data["quality"]["issues"]
    assert [(i["field"], i["detail"]) for i in issues if i["code"] == "short_company_name"] == [
        ("traits.company.name", "2 characters")]  # and a person's two-character name is not a company


def test_a_phone_with_an_extension_is_its_switchboard_and_the_extension_is_reported(source: tuple[Hub, str]) -> None:
    hub, sid = source
    message = {"type": "identify", "userId": "u-10", "messageId": "q-ext", "traits": {"phone": "010-62345678转801"}}
    process_raw(_submit(hub, sid, message, path="v1/identify"))
    with hub.sessions() as s:
        data = s.scalars(select(EventRow)).one().data
    assert {"type": "phone", "value": "+861062345678"} in data["identities"]
    [issue] = [i for i in data["quality"]["issues"] if i["code"] == "phone_extension_removed"]
    assert issue["field"] == "identities.phone" and "extension 801" in issue["detail"]
    assert "010-62345678转801" in json.dumps(data, ensure_ascii=False)  # the text as sent is kept


def test_content_the_database_refuses_fails_the_request_instead_of_staying_pending(
    source: tuple[Hub, str], monkeypatch: Any
) -> None:
    """helper-42: an event type longer than its column is a DataError on PostgreSQL; it was retried like a
    deadlock, and after the retries the request stayed pending, retried again by every requeue sweep."""
    from hub.schemas import EventDraft, utcnow

    hub, sid = source
    if hub.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: SQLite does not enforce a column's length")
    raw_id = _submit(hub, sid, _msg("long"))
    connector = hub.connectors.get("web")
    too_long = EventDraft(type="x" * 100, source_event_id="long", occurred_at=utcnow())
    monkeypatch.setattr(connector, "parse", lambda *_: [too_long])
    assert process_raw(raw_id) == "failed"
    with hub.sessions() as s:
        raw = s.get(RawEvent, raw_id)
        assert raw is not None and raw.status == "failed" and "DataError" in (raw.error or "")
        # The statement's bound values (the event, its phones and emails) stay out of the error and the log.
        assert "x" * 100 not in (raw.error or "") and "SQL parameters hidden" in (raw.error or "")
    monkeypatch.undo()
    assert replay(hub, statuses=["failed"]) == 1  # kept, and replayable once the cause is fixed
    wait_processed(hub)
    assert count_events(hub) == 1


def test_only_content_the_database_refuses_is_failed_at_once_a_race_is_retried() -> None:
    import sqlite3

    from sqlalchemy.exc import DataError, IntegrityError, OperationalError

    from hub.pipeline import _never_storable

    def integrity(message: str) -> IntegrityError:
        return IntegrityError("INSERT", {}, sqlite3.IntegrityError(message))

    assert _never_storable(DataError("INSERT", {}, Exception("value too long for type character varying(64)")))
    assert _never_storable(integrity("NOT NULL constraint failed: events.type"))
    assert _never_storable(integrity("CHECK constraint failed: status"))
    assert not _never_storable(integrity("UNIQUE constraint failed: identities.type, identities.value"))
    assert not _never_storable(OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked")))


def test_event_json_is_stored_as_pydantic_writes_it(source: tuple[Hub, str]) -> None:
    """The event goes in as model_dump_json() text (not dumped twice); it reads back as the same value,
    Chinese unescaped, on SQLite and PostgreSQL."""
    from hub.schemas import UnifiedEvent

    hub, sid = source
    process_raw(_submit(hub, sid, _msg("zh", properties={"course": "雅思 7 分", "price": 1.5, "n": 10**17})))
    with hub.sessions() as s:
        row = s.scalars(select(EventRow)).one()
        text = s.scalar(select(cast(EventRow.data, String)))
    event = UnifiedEvent.model_validate(row.data)
    assert row.data == json.loads(event.model_dump_json()) == event.model_dump(mode="json")
    sent = row.data["properties"]["properties"]  # the web connector keeps the message's properties here
    assert sent == {"course": "雅思 7 分", "price": 1.5, "n": 10**17}
    assert text is not None and "雅思 7 分" in text


def test_json_serializer_passes_json_text_through_and_dumps_the_rest() -> None:
    assert _json_serializer(JSONText('{"a":"雅思"}')) == '{"a":"雅思"}'
    assert type(_json_serializer(JSONText("[]"))) is str
    assert json.loads(_json_serializer({"a": [1, "雅思", None]})) == {"a": [1, "雅思", None]}


def test_cli_replay_says_how_each_request_ended_and_fails_when_one_failed_again(
    source: tuple[Hub, str], monkeypatch: Any
) -> None:
    from click.testing import CliRunner

    from hub.cli import cli

    hub, sid = source
    raw_id = _submit(hub, sid, _msg("cli-1"))
    connector = hub.connectors.get("web")

    def boom(*_: Any) -> Any:
        raise RuntimeError("downstream exploded")

    monkeypatch.setattr("hub.cli.hub_for_cli", lambda migrate=True: hub)
    with monkeypatch.context() as patch:
        patch.setattr(connector, "parse", boom)
        assert process_raw(raw_id) == "failed"
        again = CliRunner().invoke(cli, ["replay"])
    assert again.exit_code == 1, again.output
    assert "replayed 1 raw request(s): 1 failed" in again.stdout
    assert f"failed again {raw_id}" in again.stderr and "downstream exploded" in again.stderr

    fixed = CliRunner().invoke(cli, ["replay"])
    assert fixed.exit_code == 0, fixed.output
    assert fixed.stdout.strip() == "replayed 1 raw request(s): 1 handled"
    assert count_events(hub) == 1

    unknown = CliRunner().invoke(cli, ["replay", "--source", "00000000-0000-7000-8000-000000000000"])
    assert unknown.exit_code == 1 and "replayed" not in unknown.stdout  # it said "replayed 0" and exit 0
    assert "00000000-0000-7000-8000-000000000000" in unknown.stderr


def test_a_lone_surrogate_in_a_property_name_does_not_fail_the_event(source: tuple[Hub, str]) -> None:
    """JSON may escape a lone surrogate ("\\ud800"); UTF-8 cannot encode it, so storing used to fail the request."""
    hub, sid = source
    raw_id = _submit(hub, sid, _msg("sur-1", properties={"a\ud800": 1}))
    assert process_raw(raw_id) == "handled"
    with hub.sessions() as s:
        event = s.scalars(select(EventRow)).one()
    assert event.data["properties"]["properties"] == {"a\ufffd": 1}
    assert "unencodable_chars_replaced" in {i["code"] for i in event.data["quality"]["issues"]}


def _nested(depth: int) -> Any:
    value: Any = 1
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


def test_a_too_deep_message_is_quarantined_alone_not_failed(source: tuple[Hub, str]) -> None:
    """A ~2 kB body nesting 300-900 levels (anyone with the public web write key can send it) failed its whole
    request with a RecursionError and a traceback of thousands of lines. The event is quarantined instead, and the
    other messages of its batch are stored."""
    hub, sid = source
    batch = {"batch": [_msg("deep-1", properties={"x": _nested(400)}),
                       _msg("deep-2", type="identify", traits={"x": _nested(100)}),
                       {"type": "bogus", "messageId": "deep-3", "x": _nested(600)}, _msg("ok-1")]}
    raw_id = _submit(hub, sid, batch, path="v1/batch")
    assert process_raw(raw_id) == "handled"
    assert count_events(hub) == 1
    with hub.sessions() as s:
        rows = s.scalars(select(QuarantineRow).order_by(QuarantineRow.id)).all()
    assert [(r.reason, r.payload["item"].get("source_event_id")) for r in rows] == [
        ("unknown_call", None), ("too_deep", "deep-1"), ("too_deep", "deep-2")]
    assert "too_deep" in rows[0].payload["item"]  # the unknown call's own deep payload is not stored


def test_properties_up_to_the_nesting_limit_are_stored(source: tuple[Hub, str]) -> None:
    hub, sid = source
    # properties (level 1) > the message's properties (2) > MAX_NESTING - 2 levels more
    raw_id = _submit(hub, sid, _msg("deep-ok", properties={"x": _nested(MAX_NESTING - 2)}))
    assert process_raw(raw_id) == "handled"
    assert count_events(hub) == 1


class _FailNextCommit:
    """Make the next commit of the hub's sessions fail, as a lost race or a dropped connection would."""

    def __init__(self, hub: Hub) -> None:
        self.hub, self.armed = hub, True

    def __enter__(self) -> _FailNextCommit:
        event.listen(self.hub.sessions, "before_commit", self._fail)
        return self

    def __exit__(self, *_: object) -> None:
        event.remove(self.hub.sessions, "before_commit", self._fail)

    def _fail(self, _session: Any) -> None:
        if self.armed:
            self.armed = False
            raise RuntimeError("commit failed")


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_move_only_when_the_transaction_commits(source: tuple[Hub, str]) -> None:
    """A rolled-back run stored and quarantined nothing (it is retried), so it must not count."""
    hub, sid = source
    stored = ("crmhub_events_stored_total", {"source": "web", "type": "track"})
    quarantined = ("crmhub_events_quarantined_total", {"connector": "web"})
    lag = ("crmhub_processing_lag_seconds_count", {"connector": "web"})
    before = [_sample(name, **labels) for name, labels in (stored, quarantined, lag)]
    raw_id = _submit(hub, sid, {"batch": [_msg("m-1"), _msg("m-2"), {"type": "track", "messageId": "m-3"}]},
                     path="v1/batch")
    with _FailNextCommit(hub):
        assert process_raw(raw_id) == "failed"
    assert count_events(hub) == 0
    assert [_sample(name, **labels) for name, labels in (stored, quarantined, lag)] == before

    assert replay(hub, statuses=["failed"]) == 1
    wait_processed(hub)
    assert count_events(hub) == 2
    after = [_sample(name, **labels) for name, labels in (stored, quarantined, lag)]
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 1, 1]


def test_a_rolled_back_quarantine_is_not_counted(source: tuple[Hub, str]) -> None:
    hub, sid = source
    before = _sample("crmhub_events_quarantined_total", connector="web")
    raw_id = _submit(hub, sid, {"batch": "not-a-list"}, path="v1/batch")
    with _FailNextCommit(hub):
        assert process_raw(raw_id) == "failed"
    assert _sample("crmhub_events_quarantined_total", connector="web") == before
    assert replay(hub, statuses=["failed"]) == 1
    wait_processed(hub)
    assert _sample("crmhub_events_quarantined_total", connector="web") == before + 1


@pytest.fixture
def small_lane(tmp_path: Path) -> Iterator[tuple[Hub, str]]:
    """A hub whose ingest lane holds 4 tasks."""
    for hub in running(make_hub(make_settings(tmp_path, inprocess_queue_size=4))):
        yield hub, add_source(client_for(hub), "web", "site", {"write_key": KEY})


@pytest.fixture
def eager_sweep(tmp_path: Path) -> Iterator[tuple[Hub, str]]:
    """A hub whose requeue sweep takes rows as soon as they are pending."""
    for hub in running(make_hub(make_settings(tmp_path, requeue_after_s=0))):
        yield hub, add_source(client_for(hub), "web", "site", {"write_key": KEY})


def test_startup_recovery_queues_every_pending_row_however_long_the_backlog(
    small_lane: tuple[Hub, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It took the first 10,000 pending rows, and only as many as the lane held: the rest dropped, left to the
    sweep. Now it pages through all of them (3 ids a page here) and waits for room in the lane."""
    hub, sid = small_lane
    monkeypatch.setattr("hub.pipeline.RECOVERY_PAGE", 3)
    ids = [_submit(hub, sid, _msg(f"b{i}")) for i in range(20)]
    assert recover_on_startup(hub) == len(ids)
    wait_processed(hub)
    assert count_events(hub) == 20 and hub.runner.dropped == 0


def test_the_app_recovers_a_backlog_longer_than_the_lane_at_startup(tmp_path: Path) -> None:
    """The lifespan used to queue what fitted in the lane and drop the rest. It now feeds every pending row, from
    a thread of its own (waiting for room on the startup path would hold the server's start)."""
    from fastapi.testclient import TestClient

    from hub.app import create_app

    for hub in running(make_hub(make_settings(tmp_path, inprocess_queue_size=4))):
        sid = add_source(client_for(hub), "web", "site", {"write_key": KEY})
        hub.stop()  # as if the process had died with these rows stored and unprocessed
        for i in range(12):
            _submit(hub, sid, _msg(f"s{i}"))
        with TestClient(create_app(hub)) as client:  # the lifespan starts the hub and its recovery
            assert client.get("/healthz").status_code == 200
            wait_processed(hub)
        assert count_events(hub) == 12


def test_the_sweep_does_not_queue_a_second_copy_of_a_row_still_queued(
    eager_sweep: tuple[Hub, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows queued behind a backlog are pending and old, so every sweep queued them again (each ran twice, the
    second finding it handled) and the copies took the lane's room from new requests."""
    import threading

    from hub.pipeline import requeue_pending
    from hub.tasks import TASKS, TaskDef, enqueue

    hub, sid = eager_sweep
    runs: list[int] = []
    original = TASKS["hub.pipeline.process_raw"]

    def counted(raw_id: int) -> str:
        runs.append(raw_id)
        return str(original.fn(raw_id))

    release = threading.Event()
    monkeypatch.setitem(TASKS, "hub.pipeline.process_raw", TaskDef(original.name, counted, "ingest", 8))
    monkeypatch.setitem(TASKS, "test.backlog", TaskDef("test.backlog", lambda: release.wait(30), "ingest", 0))
    try:
        enqueue("test.backlog")  # the lane's worker is busy: what follows waits in the lane
        ids = [_submit(hub, sid, _msg(f"q{i}")) for i in range(3)]
        for raw_id in ids:
            enqueue("hub.pipeline.process_raw", raw_id)
        assert requeue_pending() == 3  # all three are pending and old enough
    finally:
        release.set()
    wait_processed(hub)
    assert sorted(runs) == ids and count_events(hub) == 3


# A process that runs one request through the pipeline, with the web connector's parse dying as the kernel's OOM
# killer ends a process (no exception, no rollback handler, no `finally`) when the body says "poison".
_RUN_IN_A_PROCESS_OF_ITS_OWN = """
import os, sys
from pathlib import Path
from tests.conftest import make_hub, make_settings
from hub.pipeline import process_raw
hub = make_hub(make_settings(Path(sys.argv[1]), requeue_after_s=float(sys.argv[3])))
web = hub.connectors.get("web")
real_parse = web.parse
def parse(request, config, ctx):
    if b"poison" in request.body:
        os._exit(137)
    return real_parse(request, config, ctx)
web.parse = parse
print(process_raw(int(sys.argv[2])))
"""


def _run_in_a_process_of_its_own(
    tmp_path: Path, raw_id: int, requeue_after_s: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _RUN_IN_A_PROCESS_OF_ITS_OWN, str(tmp_path), str(raw_id), str(requeue_after_s)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": checkout_pythonpath()},
    )


def _unfinished_runs(hub: Hub, raw_id: int) -> tuple[str, int, str | None]:
    with hub.sessions() as s:
        raw = s.get(RawEvent, raw_id)
        assert raw is not None
        return raw.status, raw.unfinished_runs, raw.error


def test_a_request_that_kills_its_process_at_every_run_is_set_aside_not_run_for_ever(tmp_path: Path) -> None:
    """Each run's attempt rolled back with the dying process, so the row stayed pending and the sweep ran it again
    every minute: a Celery worker child killed every minute, the in-process server crash-looping at each start.
    A run of a row older than the requeue delay is now counted first; after three that never ended, it is failed
    with a reason, and replay (once the cause is fixed) runs it again."""
    for hub in running(make_hub(make_settings(tmp_path))):
        sid = add_source(client_for(hub), "web", "site", {"write_key": KEY})
        raw_id = _submit(hub, sid, _msg("poison-1"))
        # A fresh row (younger than the 60 s requeue delay) runs uncounted: no commit before the work.
        assert _run_in_a_process_of_its_own(tmp_path, raw_id, 60).returncode == 137
        assert _unfinished_runs(hub, raw_id) == ("pending", 0, None)
        for run in range(1, MAX_UNFINISHED_RUNS + 1):  # left pending, as the sweep finds it: counted runs
            assert _run_in_a_process_of_its_own(tmp_path, raw_id, 0).returncode == 137
            assert _unfinished_runs(hub, raw_id) == ("pending", run, None)
        last = _run_in_a_process_of_its_own(tmp_path, raw_id, 0)
        assert last.returncode == 0, last.stderr
        assert last.stdout.split()[-1] == "failed"  # set aside without running the connector
        status, runs, error = _unfinished_runs(hub, raw_id)
        assert (status, runs) == ("failed", MAX_UNFINISHED_RUNS)
        assert error is not None and "3 runs on this request never finished" in error and "crmhub replay" in error
        assert replay(hub, statuses=["failed"]) == 1  # this process's parse is the real one: the cause is fixed
        wait_processed(hub)
        assert _unfinished_runs(hub, raw_id) == ("handled", 0, None) and count_events(hub) == 1


def test_counted_runs_that_end_in_python_are_never_set_aside(
    source: tuple[Hub, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upstream outage leaves a row pending through many retries and sweeps; each run ends (RetryableError), so
    it uncounts itself and the row is processed once the outage is over."""
    from datetime import timedelta

    from sqlalchemy import update

    from hub.errors import RetryableError
    from hub.schemas import utcnow

    hub, sid = source
    raw_id = _submit(hub, sid, _msg("outage-1"))
    with hub.transaction() as s:  # left pending for an hour: every run of it is counted
        s.execute(update(RawEvent).where(RawEvent.id == raw_id).values(received_at=utcnow() - timedelta(hours=1)))

    def upstream_down(*_: Any) -> Any:
        raise RetryableError("upstream down")

    monkeypatch.setattr(hub.connectors.get("web"), "parse", upstream_down)
    from hub import pipeline

    counted: list[int] = []
    real_end = pipeline._end_counted_run
    monkeypatch.setattr("hub.pipeline._end_counted_run", lambda h, r: (counted.append(r), real_end(h, r)))
    for _ in range(MAX_UNFINISHED_RUNS + 2):
        with pytest.raises(RetryableError):
            process_raw(raw_id)
        assert _unfinished_runs(hub, raw_id) == ("pending", 0, None)
    assert counted == [raw_id] * (MAX_UNFINISHED_RUNS + 2)  # each run was counted, and uncounted when it ended
    monkeypatch.undo()
    assert process_raw(raw_id) == "handled" and count_events(hub) == 1


def _transactions(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """How each of the hub's transactions from now on ended, in order: "commit" or "rollback"."""
    from contextlib import contextmanager

    from sqlalchemy.orm import Session

    ended: list[str] = []
    real = hub.transaction

    @contextmanager
    def recorded() -> Iterator[Session]:
        try:
            with real() as session:
                yield session
        except BaseException:
            ended.append("rollback")
            raise
        ended.append("commit")

    monkeypatch.setattr(hub, "transaction", recorded)
    return ended


def _left_pending_for_an_hour(hub: Hub, raw_id: int) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from hub.schemas import utcnow

    with hub.transaction() as s:
        s.execute(update(RawEvent).where(RawEvent.id == raw_id).values(received_at=utcnow() - timedelta(hours=1)))


def test_a_counted_run_that_stores_its_outcome_uncounts_itself_in_the_same_commit(
    source: tuple[Hub, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A counted run's end was a commit of its own after the one that stored its outcome: a third commit per old
    row (13.5 ms a row on PostgreSQL against 5.6 ms fresh, with the attempt below). A run whose transaction rolls
    back still uncounts itself in another (here the one that marks the row failed)."""
    hub, sid = source
    raw_id, broken_id = _submit(hub, sid, _msg("old-1")), _submit(hub, sid, _msg("old-2"))
    for row in (raw_id, broken_id):
        _left_pending_for_an_hour(hub, row)
    ended = _transactions(hub, monkeypatch)
    assert process_raw(raw_id) == "handled"
    assert ended.count("commit") == 2, ended  # the count, then the outcome with the count cleared
    assert _unfinished_runs(hub, raw_id) == ("handled", 0, None) and count_events(hub) == 1

    monkeypatch.setattr(hub.connectors.get("web"), "parse", lambda *_: 1 / 0)
    assert process_raw(broken_id) == "failed"
    status, runs, error = _unfinished_runs(hub, broken_id)
    assert (status, runs) == ("failed", 0) and error is not None and "ZeroDivisionError" in error


def test_an_old_row_is_counted_by_the_transaction_that_finds_it_old(
    source: tuple[Hub, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An old row's run first ran uncounted, found the row old, rolled back and started again counted: a wasted
    transaction per row of a backlog. The row's age is known as soon as it is read, so that read counts the run."""
    hub, sid = source
    raw_id = _submit(hub, sid, _msg("old-3"))
    _left_pending_for_an_hour(hub, raw_id)
    ended = _transactions(hub, monkeypatch)
    assert process_raw(raw_id) == "handled"
    assert "rollback" not in ended, ended
    assert _unfinished_runs(hub, raw_id) == ("handled", 0, None) and count_events(hub) == 1


def test_a_set_aside_request_is_not_run_by_a_copy_of_its_task_queued_before(
    source: tuple[Hub, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep queues a pending row every minute, so copies of its task wait behind the run that sets it aside.
    Such a copy found the row no longer pending, so uncounted, and ran the request that kills its process again
    (and its end reset the count): set aside, it stays so until `crmhub replay`."""
    from datetime import timedelta

    from sqlalchemy import update

    from hub.schemas import utcnow

    hub, sid = source
    raw_id = _submit(hub, sid, _msg("poison-2"))
    with hub.transaction() as s:  # three counted runs of it died with their process
        s.execute(update(RawEvent).where(RawEvent.id == raw_id).values(
            received_at=utcnow() - timedelta(hours=1), unfinished_runs=MAX_UNFINISHED_RUNS))
    assert process_raw(raw_id) == "failed"
    parsed: list[int] = []
    monkeypatch.setattr(hub.connectors.get("web"), "parse", lambda *_: parsed.append(raw_id) or [])
    assert process_raw(raw_id) == "failed"  # the copy queued before
    status, runs, error = _unfinished_runs(hub, raw_id)
    assert (status, runs, parsed) == ("failed", MAX_UNFINISHED_RUNS, [])
    assert error is not None and "never finished" in error


def _run_copies_at_once(raw_id: int, copies: int) -> list[str]:
    """What `copies` runs of one row, started together on threads of their own, returned."""
    import threading

    start, outcomes = threading.Barrier(copies), []

    def run_a_copy() -> None:
        start.wait()
        outcomes.append(process_raw(raw_id))

    threads = [threading.Thread(target=run_a_copy) for _ in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


@pytest.mark.postgres
def test_copies_of_an_old_row_running_at_once_never_set_it_aside(
    tmp_path: Path, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """On Celery the sweep queues a copy of every old pending row per pass, and a worker's children run copies
    of one row at once. Each counted itself: with six copies, one healthy row in two went past
    MAX_UNFINISHED_RUNS, and a copy failed it "set aside: 3 runs ... never finished" (counted as a failed event)
    while another stored it. Only the one live counted run of a row runs it now; the other copies leave it."""
    import logging
    from datetime import timedelta

    from sqlalchemy import update

    from hub.schemas import utcnow

    caplog.set_level(logging.ERROR, logger="hub.pipeline")
    for hub in running(make_hub(make_settings(tmp_path, pg_url))):
        sid = add_source(client_for(hub), "web", "site", {"write_key": KEY})
        for trial in range(5):
            raw_id = _submit(hub, sid, _msg(f"copies-{trial}"))
            an_hour_ago = utcnow() - timedelta(hours=1)  # behind a backlog older than the requeue delay: counted
            with hub.transaction() as s:
                s.execute(update(RawEvent).where(RawEvent.id == raw_id).values(received_at=an_hour_ago))
            outcomes = _run_copies_at_once(raw_id, copies=6)
            assert "failed" not in outcomes and "handled" in outcomes, outcomes  # the others left it to that run
            assert _unfinished_runs(hub, raw_id) == ("handled", 0, None)
        assert "set aside" not in caplog.text and count_events(hub) == 5
