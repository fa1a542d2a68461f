"""DNS rebinding: the connection goes to the address the SSRF check vetted, never to a second DNS answer.

Only loopback is ever contacted: the real-connection tests vet 127.0.0.1 (private endpoints
allowed) and make every later lookup answer 127.0.0.2, where nothing listens; the test with
a public first answer stubs the TCP connect itself.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpcore
import httpx
import pytest

from hub.runtime import Hub
from tests.webhooks.conftest import Receiver, add_endpoint, draft, settle, store
from webhooks import sender, ssrf
from webhooks.pinned import PinnedBackend
from webhooks.signing import Signer, generate_secret

HOST = "rebind.test"


class Rebinding:
    """`getaddrinfo` for HOST: the first lookup after `arm()` answers `first`, every later one `then`."""

    def __init__(self, first: str, then: str) -> None:
        self.first, self.then, self.lookups = first, then, 0
        self._real = socket.getaddrinfo

    def arm(self) -> None:
        self.lookups = 0

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != HOST:
            return self._real(host, port, *args, **kwargs)
        self.lookups += 1
        address = self.first if self.lookups == 1 else self.then
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 80)))]


@pytest.fixture
def rebinding(monkeypatch: pytest.MonkeyPatch) -> Rebinding:
    fake = Rebinding("127.0.0.1", "127.0.0.2")
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


def _url(receiver: Receiver) -> str:
    return receiver.url.replace("127.0.0.1", HOST)


def test_send_connects_to_the_vetted_address_not_a_second_answer(rebinding: Rebinding, receiver: Receiver) -> None:
    url = _url(receiver)
    rebinding.arm()
    [result] = sender.send_batch(url, Signer([generate_secret()]), [sender.Outgoing("m1", "{}")], allow_private=True)
    assert result.ok, result.error
    assert rebinding.lookups == 1  # the check's lookup only; the connection did not resolve again
    assert receiver.received[0].headers["host"] == url.split("/")[2]  # Host header keeps the name
    with pytest.raises(httpx.ConnectError):  # control: an unpinned client follows the second answer
        httpx.post(url, content=b"{}", timeout=5)


def test_delivery_end_to_end_is_pinned(shub: Hub, rebinding: Rebinding, receiver: Receiver) -> None:
    url = _url(receiver)
    add_endpoint(shub, url)  # vetted at creation (127.0.0.1, private endpoints allowed)
    rebinding.arm()
    store(shub, draft("e-1"))
    settle(shub)
    assert [r.source_event_id for r in receiver.ok()] == ["e-1"]
    assert rebinding.lookups == 1


def test_public_answer_at_check_then_loopback_connects_to_the_public_address(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Rebinding("203.0.113.7", "127.0.0.1")
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    monkeypatch.setattr(ssrf, "_refusal", lambda ip: None)  # treat the TEST-NET answer as public
    dialled: list[str] = []

    async def no_network(self: Any, host: str, port: int, **kwargs: Any) -> Any:
        dialled.append(host)
        raise httpcore.ConnectError("stubbed: no network in tests")

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", no_network)
    [result] = sender.send_batch(f"http://{HOST}:8080/hook", Signer([generate_secret()]),
                                 [sender.Outgoing("m1", "{}")], allow_private=False)
    assert dialled == ["203.0.113.7"] and fake.lookups == 1
    assert result.status_code is None and "ConnectError" in (result.error or "")


def test_refused_answer_at_the_check_is_never_sent(rebinding: Rebinding, receiver: Receiver) -> None:
    url = _url(receiver)
    rebinding.first = "127.0.0.1"
    rebinding.arm()
    [result] = sender.send_batch(url, Signer([generate_secret()]), [sender.Outgoing("m1", "{}")], allow_private=False)
    assert result.error and result.error.startswith("refused:") and "loopback" in result.error
    assert receiver.received == []


def test_backend_without_a_vetted_address_refuses_to_connect() -> None:
    with pytest.raises(httpcore.ConnectError, match="no vetted address"):
        asyncio.run(PinnedBackend().connect_tcp("127.0.0.1", 9))
