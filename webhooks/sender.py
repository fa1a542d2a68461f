"""Signed POSTs to a receiver: SSRF check, pinned connections, finite timeouts, no redirects, a bounded excerpt.

Kept free of the database so delivery holds no transaction while waiting on the network.
A batch for one endpoint is checked once (`check_url`), then its POSTs go out concurrently
on one event loop per process, each connection pinned to the vetted addresses
(`webhooks.pinned`). The calling worker thread just waits for the batch's results.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import httpx

from hub.retry import parse_retry_after
from hub.schemas import storable_text
from webhooks.pinned import VETTED, PinnedTransport, Vetted, pool_host
from webhooks.signing import Signer
from webhooks.ssrf import UnsafeURL, check_url

CONNECT_TIMEOUT_S = 5.0
TOTAL_TIMEOUT_S = 15.0
BATCH_TIMEOUT_S = 2 * TOTAL_TIMEOUT_S + 5.0  # a free slot within 15 s, then the POST within 15 s; lease is 60 s
EXCERPT_BYTES = 1000
# How long the excerpt is waited for once the status line came. The answer is known by then; a receiver trickling
# its body held one of the process's MAX_IN_FLIGHT connections for the whole TOTAL_TIMEOUT_S per message.
EXCERPT_WAIT_S = 1.0
USER_AGENT = "crmhub-webhooks/1"
# POSTs in flight per process, and the pool size. httpcore's pool scans (and polls) every connection
# on each request, so CPU per request grows with the pool: on loopback 16 cost ~1.7x the CPU of 8.
MAX_IN_FLIGHT = 8

T = TypeVar("T")


@dataclass
class SendResult:
    status_code: int | None
    latency_ms: float | None  # None: nothing went out to time (refused before sending, or a crash)
    error: str | None = None
    excerpt: str | None = None
    retry_after: float | None = None
    abort: bool = False
    sent: bool = True  # False: it never left the process (no free connection in time, or deferred); not an attempt
    deferred: bool = False  # not sent because the batch's time was up (`send_batch`'s `budget_s`)
    done: float = field(default_factory=time.monotonic)  # when it finished, to order a batch's outcomes

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def outcome(self) -> str:
        if self.ok:
            return "delivered"
        if self.status_code is None:
            return "error"
        return f"http_{self.status_code // 100}xx"


@dataclass(frozen=True)
class Outgoing:
    msg_id: str
    body: str


def signed_headers(secrets: list[str], msg_id: str, body: str, now: datetime | None = None) -> dict[str, str]:
    return headers_for(Signer(secrets), msg_id, body, now)


def headers_for(signer: Signer, msg_id: str, body: str, now: datetime | None = None) -> dict[str, str]:
    now = now or datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signer.sign(msg_id, now, body),
    }


# ---------------------------------------------------------------- the process's event loop


class _Loop:
    """One event loop thread per process (rebuilt after a fork) with MAX_IN_FLIGHT sender coroutines.

    The senders take POSTs from one queue, so at most MAX_IN_FLIGHT are in flight whatever the number
    of batches waiting, and a waiting POST costs a queue slot rather than a task, a timer and a
    semaphore wait (measured: that bookkeeping cost more CPU than the POST itself on loopback).
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        limits = httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT)
        self.client = httpx.AsyncClient(
            transport=PinnedTransport(limits=limits), follow_redirects=False, trust_env=False,
            timeout=httpx.Timeout(TOTAL_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            # identity: the excerpt is read raw, never decompressed (64 KiB of gzip inflates to 64 MB)
            headers={"user-agent": USER_AGENT, "accept-encoding": "identity"},
        )
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        threading.Thread(target=self.loop.run_forever, name="crmhub-webhooks-sender", daemon=True).start()
        self.senders = [asyncio.run_coroutine_threadsafe(self._sender(), self.loop) for _ in range(MAX_IN_FLIGHT)]
        atexit.register(self.close)

    def close(self) -> None:
        """Stop the senders and the loop (at exit: pending tasks would otherwise be reported as leaked)."""
        if self.pid != os.getpid() or not self.loop.is_running():
            return
        for sender in self.senders:
            sender.cancel()
        self.loop.call_soon_threadsafe(self.loop.stop)

    async def _sender(self) -> None:
        while True:
            job = await self.queue.get()
            if time.monotonic() - job.queued > TOTAL_TIMEOUT_S:
                result = SendResult(None, 0.0, error="not sent: no free connection", sent=False)
            elif job.batch.over():
                result = SendResult(None, None, error="not sent: the batch's time was up", sent=False, deferred=True)
            else:
                try:
                    result = await _request(self.client, job.url, job.vetted, job.body, job.headers)
                except Exception as exc:  # a bug must not end this sender: the process has only MAX_IN_FLIGHT
                    result = SendResult(None, None, error=f"{exc.__class__.__name__}: {exc}"[:500])
            job.batch.done(job.index, result)

    def submit(self, url: str, vetted: Vetted, signed: list[tuple[bytes, dict[str, str]]],
               budget: _Budget | None = None) -> _Batch:
        batch = _Batch(len(signed), budget)
        now = time.monotonic()
        jobs = [_Job(url, vetted, body, headers, batch, i, now) for i, (body, headers) in enumerate(signed)]
        self.loop.call_soon_threadsafe(lambda: [self.queue.put_nowait(job) for job in jobs])
        return batch


@dataclass(frozen=True)
class _Budget:
    """How long a batch may go on starting POSTs, counted from its first, on `clock` (the caller's)."""

    seconds: float
    clock: Callable[[], float]


class _Batch:
    """A batch's results, filled in by the sender coroutines; the worker thread waits on `ready`."""

    def __init__(self, size: int, budget: _Budget | None = None) -> None:
        self.results: list[SendResult | None] = [None] * size
        self.left = size
        self.ready = threading.Event()
        self.budget = budget
        self.first_started: float | None = None
        if size == 0:
            self.ready.set()

    def over(self) -> bool:
        """Is the batch's time up? Counted from its first POST, so time spent waiting for a connection that
        other batches held is not charged to it (a healthy endpoint queued behind a hanging one still sends)."""
        if self.budget is None:
            return False
        now = self.budget.clock()
        if self.first_started is None:  # the first POST always goes: every turn makes progress
            self.first_started = now
            return False
        return now - self.first_started >= self.budget.seconds

    def done(self, index: int, result: SendResult) -> None:
        self.results[index] = result
        self.left -= 1  # only the loop thread writes: no lock needed
        if self.left == 0:
            self.ready.set()


@dataclass(frozen=True)
class _Job:
    url: str
    vetted: Vetted
    body: bytes
    headers: dict[str, str]
    batch: _Batch
    index: int
    queued: float


_loop: _Loop | None = None
_loop_lock = threading.Lock()


def _runtime() -> _Loop:
    global _loop
    with _loop_lock:
        if _loop is None or _loop.pid != os.getpid():
            _loop = _Loop()
        return _loop


# ---------------------------------------------------------------- sending


def send_batch(url: str, signer: Signer, items: list[Outgoing], *, allow_private: bool,
               budget_s: float | None = None, clock: Callable[[], float] = time.monotonic) -> list[SendResult]:
    """Sign and POST every item to `url` concurrently. Never raises for network or receiver trouble.

    `budget_s`: no POST starts once that long (on `clock`) has passed since the batch's first one; those come
    back `sent=False, deferred=True`. A slow receiver's batch then ends near the budget, not after 32 answers.
    """
    signed = [(item.body.encode(), headers_for(signer, item.msg_id, item.body)) for item in items]
    budget = None if budget_s is None else _Budget(budget_s, clock)
    return _send_signed(url, signed, allow_private=allow_private, budget=budget)


def _send_signed(url: str, signed: list[tuple[bytes, dict[str, str]]], *, allow_private: bool,
                 budget: _Budget | None = None) -> list[SendResult]:
    try:
        addresses = check_url(url, allow_private=allow_private)
    except UnsafeURL as exc:
        return [SendResult(None, None, error=f"refused: {exc.message}") for _ in signed]
    batch = _runtime().submit(url, Vetted(pool_host(url), tuple(addresses)), signed, budget)
    if not batch.ready.wait(BATCH_TIMEOUT_S):  # cannot happen while the loop runs: every POST is bounded
        return [r or SendResult(None, BATCH_TIMEOUT_S * 1000, error="timeout: sender loop unresponsive")
                for r in batch.results]
    return [r for r in batch.results if r is not None]


async def _request(client: httpx.AsyncClient, url: str, vetted: Vetted, body: bytes,
                   headers: dict[str, str]) -> SendResult:
    VETTED.set(vetted)  # this task's context only: the backend connects to these addresses
    started = time.perf_counter()
    resp: httpx.Response | None = None
    excerpt = bytearray()
    clock = asyncio.get_running_loop()
    deadline = clock.time() + TOTAL_TIMEOUT_S
    try:
        async with asyncio.timeout_at(deadline) as budget:
            async with client.stream("POST", url, content=body, headers=headers) as resp:
                budget.reschedule(min(deadline, clock.time() + EXCERPT_WAIT_S))
                await _read_excerpt(resp, excerpt)
    except (TimeoutError, httpx.HTTPError) as exc:
        if resp is None:  # no answer: a failed attempt
            return _no_answer(exc, started)
        # The status line came: the receiver answered, and a 2xx stands however slowly its body trickles.
    assert resp is not None  # every way out of the stream without a response returned above
    return _answered(resp, excerpt, started)


def _no_answer(exc: Exception, started: float) -> SendResult:
    if isinstance(exc, TimeoutError):
        return SendResult(None, _ms(started), error="timeout: total delivery timeout exceeded")
    if isinstance(exc, httpx.TimeoutException):
        return SendResult(None, _ms(started), error=f"timeout: {exc.__class__.__name__}")
    return SendResult(None, _ms(started), error=f"{exc.__class__.__name__}: {exc}"[:500])


def _answered(resp: httpx.Response, excerpt: bytearray, started: float) -> SendResult:
    abort = resp.headers.get("webhook-delivery", "").strip().lower() == "abort-message"
    error = None if resp.is_success else f"HTTP {resp.status_code}"
    if error and abort:  # say why a single failed attempt ended the message (helper-25)
        error += "; the receiver asked not to retry (webhook-delivery: abort-message)"
    return SendResult(resp.status_code, _ms(started), error=error,
                      excerpt=_excerpt_text(excerpt),
                      retry_after=parse_retry_after(resp.headers.get("retry-after")), abort=abort)


def _excerpt_text(excerpt: bytearray) -> str:
    """The excerpt as text a database column takes: a gzip or binary answer holds NULs (read raw, not decoded)."""
    return storable_text(bytes(excerpt[:EXCERPT_BYTES]).decode("utf-8", errors="replace"))


async def _read_excerpt(resp: httpx.Response, data: bytearray) -> None:
    """Up to EXCERPT_BYTES of the body, as sent, into `data`; kept if the read then times out or breaks off."""
    async for chunk in resp.aiter_raw():
        data += chunk
        if len(data) >= EXCERPT_BYTES:
            break


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)
