"""Retry delays: the backoff, and an upstream's `Retry-After` believed by both task runners."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from hub.errors import RetryableError
from hub.retry import RETRY_AFTER_MAX_S, backoff_s, parse_retry_after, retry_delay_s
from hub.tasks import TASKS, TaskDef
from tests.helpers import first_retry


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("", None), ("30", 30.0), (" 7 ", 7.0),
                                                 ("soon", None), ("-5", None), ("1.5", None),
                                                 ("\u00b2", None), ("\u0663", None)])
def test_parse_retry_after_reads_delta_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_reads_an_http_date_and_never_goes_negative() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    assert 100 < (parse_retry_after(later) or 0) <= 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_the_delay_is_the_backoff_or_the_upstreams_wish_when_longer_capped() -> None:
    assert [backoff_s(a) for a in range(3)] == [0.2, 0.4, 0.8] and backoff_s(20) == 60.0
    assert retry_delay_s(0, None) == 0.2
    assert retry_delay_s(0, 30.0) == 30.0
    assert retry_delay_s(10, 1.0) == 60.0  # the backoff is already longer
    assert retry_delay_s(0, 86_400.0) == RETRY_AFTER_MAX_S
    assert retry_delay_s(1, -3.0) == 0.4


@pytest.mark.parametrize(("retry_after", "low", "high"), [(None, 0.16, 0.24), (42.0, 42.0, 50.4)])
def test_both_runners_wait_the_same_before_a_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, retry_after: float | None, low: float, high: float
) -> None:
    """Celery's autoretry waited 0–1 s, 0–2 s … (1 s doubling, full jitter) where the in-process runner waited
    0.2 s, 0.4 s …; both now wait `hub.retry.retry_countdown_s`: the backoff ±20 %, never less than a
    `Retry-After` (which Celery's autoretry could not see at all)."""
    from hub.inprocess import InProcessRunner
    from hub.settings import Settings
    from hub.worker import make_celery

    def throttled() -> None:
        raise RetryableError("429", retry_after=retry_after)

    name = f"test.throttled.{retry_after}"  # one name per callable: Celery refuses to register another under it
    TASKS[name] = TaskDef(name, throttled, "ingest", 3)
    try:
        settings = Settings(_env_file=None, database_url=f"sqlite:///{tmp_path}/t.db", secret_key="k",  # type: ignore[call-arg]
                            admin_token="t", data_dir=tmp_path, broker_url="memory://")
        task = make_celery(settings).tasks[name]
        asked = first_retry(task, monkeypatch)  # the first attempt failed: request.retries == 0
        assert low <= asked["countdown"] <= high and isinstance(asked["exc"], RetryableError)

        runner = InProcessRunner()  # not started: the retry stays on its timer
        before = time.monotonic()
        runner._run(name, (), 0)
        after = time.monotonic()
        [(due, _, retried, _, attempt)] = runner._timers
        assert (retried, attempt) == (name, 1)
        assert before + low <= due <= after + high
    finally:
        del TASKS[name]
