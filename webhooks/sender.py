"""One signed POST to a receiver: SSRF re-check, finite timeouts, no redirects, a bounded excerpt.

Kept free of the database so the delivery task holds no transaction while waiting on
the network, and so the benchmark can time the HTTP part on its own.
"""

from __future__ import annotations

import email.utils
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from webhooks.signing import sign
from webhooks.ssrf import UnsafeURL, check_url

CONNECT_TIMEOUT_S = 5.0
TOTAL_TIMEOUT_S = 15.0
EXCERPT_BYTES = 1000
USER_AGENT = "crmhub-webhooks/1"

_client: httpx.Client | None = None
_client_lock = threading.Lock()


def client() -> httpx.Client:
    """One pooled client per process (httpx.Client is thread-safe)."""
    global _client
    if _client is None:
        with _client_lock:
            if _client is None:
                _client = httpx.Client(
                    timeout=httpx.Timeout(TOTAL_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
                    follow_redirects=False, trust_env=False,
                    limits=httpx.Limits(max_connections=200, max_keepalive_connections=100),
                    headers={"user-agent": USER_AGENT},
                )
    return _client


@dataclass
class SendResult:
    status_code: int | None
    latency_ms: float
    error: str | None = None
    excerpt: str | None = None
    retry_after: float | None = None
    abort: bool = False

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def outcome(self) -> str:
        if self.ok:
            return "delivered"
        if self.status_code is None:
            return "error"
        return f"http_{self.status_code // 100}xx"


def signed_headers(secrets: list[str], msg_id: str, body: str, now: datetime | None = None) -> dict[str, str]:
    now = now or datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": sign(secrets, msg_id, now, body),
    }


def send(url: str, body: str, headers: dict[str, str], *, allow_private: bool) -> SendResult:
    """POST once. Never raises for network or receiver trouble: it all becomes a SendResult."""
    started = time.perf_counter()
    try:
        check_url(url, allow_private=allow_private)
    except UnsafeURL as exc:
        return SendResult(None, 0.0, error=f"refused: {exc.message}")
    try:
        with client().stream("POST", url, content=body.encode(), headers=headers) as resp:
            excerpt = _read_excerpt(resp, started)
            return SendResult(
                resp.status_code, _ms(started), error=None if resp.is_success else f"HTTP {resp.status_code}",
                excerpt=excerpt, retry_after=parse_retry_after(resp.headers.get("retry-after")),
                abort=resp.headers.get("webhook-delivery", "").strip().lower() == "abort-message",
            )
    except httpx.TimeoutException as exc:
        return SendResult(None, _ms(started), error=f"timeout: {exc.__class__.__name__}")
    except httpx.HTTPError as exc:
        return SendResult(None, _ms(started), error=f"{exc.__class__.__name__}: {exc}"[:500])


def _read_excerpt(resp: httpx.Response, started: float) -> str:
    data = bytearray()
    for chunk in resp.iter_bytes():
        data += chunk
        if len(data) >= EXCERPT_BYTES:
            break
        if time.perf_counter() - started > TOTAL_TIMEOUT_S:
            raise httpx.ReadTimeout("total delivery timeout exceeded")
    return bytes(data[:EXCERPT_BYTES]).decode("utf-8", errors="replace")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from `retry-after` (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)
