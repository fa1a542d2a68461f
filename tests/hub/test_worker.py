"""The Celery runtime does what the in-process runner does: on a real Redis broker, and with the broker down."""

from __future__ import annotations

import base64
import json
import socket
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from hub.errors import RetryableError
from hub.ingest import RawSubmission, store_raw_batch
from hub.pipeline import process_raw
from hub.schemas import utcnow
from hub.settings import Settings
from hub.tasks import TASKS, TaskDef
from hub.worker import CeleryRunner, make_celery
from tests.conftest import REDIS_URL, make_hub, make_settings, running
from tests.helpers import ADMIN, add_source, client_for, count_events, first_retry, raw_rows


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    return make_settings(tmp_path, broker_url=REDIS_URL, **overrides)


@pytest.fixture
def broker_prefix() -> Iterator[str]:
    """A key prefix of this test's own on the local Redis, its keys deleted afterwards."""
    prefix = f"crmhub-test-{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
    finally:
        client.close()


@pytest.mark.redis
def test_no_countdown_sent_to_redis_outlasts_the_visibility_timeout(tmp_path: Path, broker_prefix: str) -> None:
    """Redis hands a delayed task to a worker at once and gives it out again after every visibility timeout
    while it waits: a delivery retry 10 h out (CRMHUB_RETRY_SCHEDULE's last steps) would run about ten times.
    The runner sends at most half the timeout; the task then finds nothing due, and the sweep starts it when
    it is (the in-process runner keeps the countdown on its timer, where nothing is given out twice)."""
    import webhooks.delivery  # noqa: F401  (registers the delivery tasks)

    app = make_celery(_settings(tmp_path, broker_key_prefix=broker_prefix, broker_visibility_timeout_s=600))
    try:
        before = utcnow()
        CeleryRunner(app).enqueue("webhooks.delivery.deliver_due", (str(uuid.uuid4()),), countdown=36_000)
        after = utcnow()
    finally:
        app.close()
    client = redis.Redis.from_url(REDIS_URL)
    try:
        [message] = [json.loads(m) for m in client.lrange(f"{broker_prefix}deliver", 0, -1)]
    finally:
        client.close()
    eta = datetime.fromisoformat(message["headers"]["eta"])
    assert message["headers"]["task"] == "webhooks.delivery.deliver_due"
    assert before + timedelta(seconds=300) <= eta <= after + timedelta(seconds=300)


def test_a_retry_countdown_never_outlasts_the_visibility_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same for a retry the worker schedules itself: an upstream's `Retry-After: 900` on a broker whose
    visibility timeout is 10 s is retried after 5 s (and throttled again, rather than run twice at once)."""

    def throttled() -> None:
        raise RetryableError("429", retry_after=900)

    TASKS["test.worker_throttled"] = TaskDef("test.worker_throttled", throttled, "ingest", 3)
    try:
        settings = make_settings(tmp_path, broker_url="memory://", broker_visibility_timeout_s=10)
        task = make_celery(settings).tasks["test.worker_throttled"]
        assert first_retry(task, monkeypatch)["countdown"] == 5.0
    finally:
        del TASKS["test.worker_throttled"]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_broker_refusing_a_follow_up_enqueue_does_not_fail_the_processed_request(tmp_path: Path) -> None:
    """The event was stored and committed, then queuing its delivery failed (the broker down): the error
    escaped `process_raw`, which marked the handled request `failed` (the in-process runner never raises
    there). The request stays handled; the message is pending in the database, where the delivery sweep
    finds it."""
    from webhooks.models import MessageRow

    settings = make_settings(tmp_path, broker_url=f"redis://127.0.0.1:{_closed_port()}/0",
                             allow_private_endpoints=True)
    for hub in running(make_hub(settings, runner=CeleryRunner(make_celery(settings)))):
        client = client_for(hub)
        sid = add_source(client, "web", "site", {"write_key": "write-key-worker"})
        resp = client.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/hook", "event_types": ["*"]},
                           headers=ADMIN)
        assert resp.status_code == 201, resp.text
        auth = "Basic " + base64.b64encode(b"write-key-worker:").decode()
        body = json.dumps({"type": "track", "event": "Viewed", "userId": "u-1", "messageId": "m-1"}).encode()
        request = {"method": "POST", "headers": {"authorization": auth}, "query": {}, "path": "v1/track"}
        [(raw_id, _)] = store_raw_batch(hub, [RawSubmission(uuid.UUID(sid), "m-1", request, body)])
        assert raw_id is not None
        assert process_raw(raw_id) == "handled"
        assert [row.status for row in raw_rows(hub)] == ["handled"] and count_events(hub) == 1
        with hub.sessions() as session:
            assert [m.status for m in session.query(MessageRow)] == ["pending"]


@pytest.mark.redis
def test_beat_sends_each_periodic_task_with_an_expiry_of_its_period(tmp_path: Path, broker_prefix: str) -> None:
    """With no worker running, beat still sends every sweep: without an expiry, an hour's outage left 60 requeue sweeps
    waiting, each queueing copies of up to 10,000 pending requests once workers came back. Each now expires when the
    next is sent, and a worker drops an expired task instead of running it."""
    from celery.beat import Scheduler

    hub = make_hub(make_settings(tmp_path), runner=_NoRunner())
    app = make_celery(_settings(tmp_path, broker_key_prefix=broker_prefix), hub.schedules)
    try:
        scheduler = Scheduler(app, lazy=True)
        scheduler.setup_schedule()
        before = utcnow()
        with app.producer_or_acquire() as producer:
            scheduler.apply_async(scheduler.schedule["hub.pipeline.requeue_pending"], producer=producer)
        after = utcnow()
    finally:
        app.close()
        hub.engine.dispose()
    client = redis.Redis.from_url(REDIS_URL)
    try:
        [message] = [json.loads(m) for m in client.lrange(f"{broker_prefix}ingest", 0, -1)]
    finally:
        client.close()
    assert message["headers"]["task"] == "hub.pipeline.requeue_pending"
    expires = datetime.fromisoformat(message["headers"]["expires"])
    assert before + timedelta(seconds=60) <= expires <= after + timedelta(seconds=60)


class _NoRunner:
    def enqueue(self, name: str, args: tuple[Any, ...], countdown: float | None = None) -> None:
        raise AssertionError("nothing is queued through the hub here")

    def start(self) -> None:
        return None

    def stop(self, timeout: float = 10.0) -> None:
        return None
