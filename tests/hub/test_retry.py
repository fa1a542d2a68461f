"""Retry delays: the backoff, and an upstream's `Retry-After` believed by both task runners."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from hub.errors import RetryableError
from hub.retry import RETRY_AFTER_MAX_S, backoff_s, parse_retry_after, retry_delay_s
from hub.tasks import TASKS, TaskDef


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


def test_the_celery_task_retries_after_the_errors_retry_after(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Celery's autoretry backoff cannot see the error's delay; the task asks for its own countdown."""
    from hub.settings import Settings
    from hub.worker import make_celery

    calls: list[str] = []

    def throttled(kind: str) -> None:
        calls.append(kind)
        raise RetryableError("429", retry_after=42.0 if kind == "told" else None)

    TASKS["test.throttled"] = TaskDef("test.throttled", throttled, "ingest", 3)
    try:
        settings = Settings(_env_file=None, database_url=f"sqlite:///{tmp_path}/t.db", secret_key="k",  # type: ignore[call-arg]
                            admin_token="t", data_dir=tmp_path, broker_url="memory://")
        task = make_celery(settings).tasks["test.throttled"]
        asked: list[dict[str, Any]] = []

        class Retried(Exception):
            pass

        def retry(**kwargs: Any) -> Exception:
            asked.append(kwargs)
            return Retried()

        monkeypatch.setattr(task, "retry", retry)
        with pytest.raises(Retried):
            task.run("told")
        assert asked[0]["countdown"] == 42.0 and isinstance(asked[0]["exc"], RetryableError)
        with pytest.raises(Retried):  # no Retry-After: Celery's own exponential backoff with jitter
            task.run("untold")
        assert "countdown" in asked[1] and asked[1]["countdown"] <= 60
        assert calls == ["told", "untold"]
    finally:
        del TASKS["test.throttled"]
