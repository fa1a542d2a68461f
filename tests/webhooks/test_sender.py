"""The sender on its own: what a receiver's answer becomes, and that no answer can cost the process a sender."""

from __future__ import annotations

import gzip
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator

import pytest

from tests.webhooks.conftest import Received, Receiver
from webhooks import sender
from webhooks.signing import Signer, generate_secret

RawServer = Callable[[bytes], str]


@pytest.fixture
def raw_server() -> Iterator[RawServer]:
    """A loopback TCP server that reads the request, writes `head` as it is, then holds the connection 3 s."""
    sockets: list[socket.socket] = []

    def start(head: bytes) -> str:
        srv = socket.create_server(("127.0.0.1", 0))
        sockets.append(srv)

        def serve() -> None:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(head)
                time.sleep(3)

        threading.Thread(target=serve, daemon=True).start()
        return f"http://127.0.0.1:{srv.getsockname()[1]}/crm/hook"

    yield start
    for srv in sockets:
        srv.close()


def _send(url: str) -> sender.SendResult:
    [result] = sender.send_batch(url, Signer([generate_secret()]), [sender.Outgoing("msg_1", "{}")],
                                 allow_private=True)
    return result


def _senders_alive() -> int:
    return sum(1 for future in sender._runtime().senders if not future.done())


def test_an_unreadable_retry_after_is_ignored_and_costs_no_sender(receiver: Receiver) -> None:
    """`retry-after: ²` (latin-1 0xB2) passed `str.isdigit` and crashed float(): the sender coroutine died
    and the batch waited BATCH_TIMEOUT_S; 8 such answers left the process unable to deliver anything."""
    receiver.script = lambda _r: (503, {"retry-after": "\u00b2"}, b"busy")
    started = time.monotonic()
    result = _send(receiver.url)
    assert (result.status_code, result.retry_after, result.error) == (503, None, "HTTP 503")
    assert time.monotonic() - started < 5
    assert _senders_alive() == sender.MAX_IN_FLIGHT


def test_a_crash_while_sending_is_a_failed_attempt_and_the_sender_lives_on(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(value: str | None) -> float | None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(sender, "parse_retry_after", broken)
    started = time.monotonic()
    result = _send(receiver.url)
    assert result.sent and not result.ok and result.error == "RuntimeError: a bug"
    assert time.monotonic() - started < 5
    assert _senders_alive() == sender.MAX_IN_FLIGHT
    monkeypatch.undo()
    assert _send(receiver.url).ok


def test_a_2xx_stands_when_its_body_is_slower_than_the_timeout(
    raw_server: RawServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receiver said 200; treating the stalled body read as a failure re-sent a delivered message."""
    monkeypatch.setattr(sender, "TOTAL_TIMEOUT_S", 1.0)
    result = _send(raw_server(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"ok\":"))
    assert result.ok and result.error is None and result.excerpt == '{"ok":'


def test_a_trickled_body_is_waited_for_briefly_once_the_status_came(
    raw_server: RawServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer is known from the status line: waiting the whole total timeout for the excerpt held one of the
    process's MAX_IN_FLIGHT connections 15 s per message of a receiver that trickles (here until it hangs up)."""
    monkeypatch.setattr(sender, "EXCERPT_WAIT_S", 0.1)
    result = _send(raw_server(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"ok\":"))
    # Unbounded, the excerpt waits for the server to hang up, 3 s: a margin wide enough for a loaded machine.
    assert result.ok and result.excerpt == '{"ok":' and (result.latency_ms or 0) < 2500


def test_a_2xx_stands_when_its_body_breaks_off(raw_server: RawServer) -> None:
    url = raw_server(b"HTTP/1.1 202 Accepted\r\ncontent-length: 100\r\nconnection: close\r\n\r\npartial")
    # the server closes after 3 s with 93 bytes missing: httpx raises RemoteProtocolError on the body read
    result = _send(url)
    assert result.ok and result.status_code == 202 and result.excerpt == "partial"


def test_no_status_line_in_time_is_a_timeout(raw_server: RawServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sender, "TOTAL_TIMEOUT_S", 1.0)
    result = _send(raw_server(b""))
    assert result.status_code is None and result.error == "timeout: total delivery timeout exceeded"


def test_a_compressed_answer_is_never_inflated(receiver: Receiver) -> None:
    """The excerpt is 1000 bytes, but one 64 KiB read of a gzip body used to be inflated whole (here to 64 MB)."""
    bomb = gzip.compress(b"\0" * (64 << 20))
    receiver.script = lambda _r: (200, {"content-encoding": "gzip"}, bomb)
    tracemalloc.start()
    try:
        result = _send(receiver.url)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.ok and len(result.excerpt or "") <= sender.EXCERPT_BYTES
    assert peak < 8 << 20, f"{peak / 2**20:.0f} MiB"
    assert receiver.received[0].headers["accept-encoding"] == "identity"


def test_a_redirect_is_an_answer_never_followed(raw_server: RawServer, receiver: Receiver) -> None:
    """Standard Webhooks: a 3xx is a failed attempt. Followed, it would carry the signed body to another host,
    past the SSRF check (which vets only the endpoint's own host)."""
    url = raw_server(f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {receiver.url}\r\nContent-Length: 0\r\n\r\n"
                     .encode())
    result = _send(url)
    assert (result.status_code, result.ok, result.error) == (307, False, "HTTP 307")
    time.sleep(0.2)
    assert receiver.received == []


def test_a_batch_whose_time_is_up_starts_only_its_first_post(receiver: Receiver) -> None:
    """`budget_s`: no POST starts once the budget has passed since the batch's first; the rest come back
    unsent (deferred, not attempts). The first always goes, so every pump's turn makes progress."""
    items = [sender.Outgoing(f"msg_{i}", "{}") for i in range(4)]
    results = sender.send_batch(receiver.url, Signer([generate_secret()]), items, allow_private=True,
                                budget_s=0.0, clock=lambda: 0.0)
    assert len(receiver.received) == 1 and sum(r.ok for r in results) == 1
    assert [(r.sent, r.deferred) for r in results if not r.ok] == [(False, True)] * 3


def test_a_batchs_time_counts_from_its_first_post_not_its_wait_for_a_connection(receiver: Receiver) -> None:
    """The process's 8 connections are shared: a healthy endpoint's batch queued behind a hanging one's POSTs
    must still go out once it gets them, not come back deferred for time it spent waiting."""
    gate, holding = threading.Event(), threading.Event()

    def held(r: Received) -> tuple[int, dict[str, str], bytes]:
        if r.path == "/block":
            holding.set()
            gate.wait(10)
        return 200, {}, b""

    receiver.script = held
    base = receiver.url.rsplit("/", 2)[0]
    signer = Signer([generate_secret()])
    blockers = threading.Thread(target=sender.send_batch, args=(f"{base}/block", signer,
                                [sender.Outgoing(f"b_{i}", "{}") for i in range(sender.MAX_IN_FLIGHT)]),
                                kwargs={"allow_private": True})
    blockers.start()
    holding.wait(10)  # the first blocker is held in the receiver; the other 7 wait on its lock
    clock = [0.0]
    results: list[sender.SendResult] = []
    batch = threading.Thread(target=lambda: results.extend(sender.send_batch(
        f"{base}/fast", signer, [sender.Outgoing(f"f_{i}", "{}") for i in range(4)], allow_private=True,
        budget_s=1.0, clock=lambda: clock[0])))
    batch.start()
    while sender._runtime().queue.qsize() < 4:  # queued behind the 8 held POSTs
        time.sleep(0.01)
    clock[0] = 10.0  # waited ten times its budget for a connection
    gate.set()
    batch.join(10)
    blockers.join(10)
    assert [r.ok for r in results] == [True] * 4
