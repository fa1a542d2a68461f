"""How long to wait before retrying a step that failed for a transient reason.

Why one module: the in-process runner and the Celery worker must back off alike, and an upstream that says
how long to wait (HTTP 429/503 with `Retry-After`) must be believed by both. Retrying a throttled ERP after
0.2, 0.4 … 3.2 s spent all five retries inside its own rate-limit window, so the pull failed every time.
"""

from __future__ import annotations

import email.utils
import random
from datetime import UTC, datetime

import httpx

from hub.errors import RetryableError

__all__ = [
    "BACKOFF_MAX_S", "JITTER", "RETRY_AFTER_MAX_S",
    "backoff_s", "parse_retry_after", "raise_if_throttled", "retry_countdown_s", "retry_delay_s",
]

BACKOFF_MAX_S = 60.0
# An upstream asking for more than this is still retried after this long: a task waiting hours would hold
# a pull or an enrichment that the next schedule redoes anyway.
RETRY_AFTER_MAX_S = 900.0
JITTER = 0.2  # each retry waits its delay ±20 %


def raise_if_throttled(response: httpx.Response, who: str) -> None:
    """RetryableError, carrying the upstream's `Retry-After`, when `who` answered 429 or a 5xx: the one rule every
    client of an upstream API here (Douyin, WeCom, the registries, the ERP pull) applies before reading the body."""
    if response.status_code == 429 or response.status_code >= 500:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        raise RetryableError(f"{who} answered HTTP {response.status_code}"
                             + (f"; retry after {retry_after:g}s" if retry_after is not None else ""),
                             retry_after=retry_after)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from `Retry-After` (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # `str.isdigit` also takes "²", which float() refuses
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def backoff_s(attempt: int) -> float:
    """The delay before retry number `attempt + 1` when nobody said how long to wait: 0.2 s doubling, ≤ 60 s."""
    return min(BACKOFF_MAX_S, 0.2 * 2**attempt)


def retry_delay_s(attempt: int, retry_after: float | None) -> float:
    """The backoff, or the upstream's `Retry-After` (capped at RETRY_AFTER_MAX_S) when that is longer."""
    if retry_after is None:
        return backoff_s(attempt)
    return max(backoff_s(attempt), min(max(retry_after, 0.0), RETRY_AFTER_MAX_S))


def retry_countdown_s(attempt: int, retry_after: float | None) -> float:
    """What both task runners wait before retry number `attempt + 1`: `retry_delay_s`, spread ±JITTER so tasks
    that failed together do not all come back together, and never sooner than the upstream's `Retry-After`.

    Celery's own autoretry backoff (1 s doubling, anywhere from 0 to that) differed from the in-process runner's
    (0.2 s doubling): the same deployment retried on another schedule once it moved to Celery.
    """
    delay = retry_delay_s(attempt, retry_after) * random.uniform(1 - JITTER, 1 + JITTER)
    if retry_after is not None:
        delay = max(delay, min(max(retry_after, 0.0), RETRY_AFTER_MAX_S))
    return delay
