"""Upstream answers that never end: every outbound client gives up after a total time and a size, over real sockets."""

from __future__ import annotations

import gzip
import json
import time
import uuid
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

import hub.outbound as outbound
from enrichment.company import lookup_company
from hub.errors import RetryableError
from hub.outbound import ResponseTooLarge, ResponseTooSlow, outbound_client
from hub.pull import run_pull
from hub.runtime import Hub
from tests.helpers import add_source, client_for
from tests.server import serving

USCC = "9144030071526726XG"
SMALL_JSON = json.dumps({"error_code": 0, "result": {"name": "x", "creditCode": USCC}}).encode()


class MisbehavingPeer(BaseHTTPRequestHandler):
    """`/token` answers an OAuth 2 token; any other path answers as `server.mode` says."""

    protocol_version = "HTTP/1.1"
    server: PeerServer

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self._answer({"content-type": "application/json"},
                     json.dumps({"access_token": "t", "token_type": "Bearer", "expires_in": 3600}).encode())

    def do_GET(self) -> None:  # noqa: N802
        mode = self.server.mode
        if mode == "trickle":  # a byte every 0.1 s, each well within the read timeout
            self._head({"content-length": str(len(SMALL_JSON))})
            for byte in SMALL_JSON:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.1)
        elif mode == "chunked":  # no length announced: 11 MB in 64 KiB chunks
            self._head({"transfer-encoding": "chunked"})
            chunk = b" " * 65536
            for _ in range(11 * 16):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        elif mode == "declared":
            self._head({"content-length": str(50_000_000)})  # the connection closes before any of it
        elif mode == "gzip_bomb":  # 20 MB of spaces, 20 KB on the wire
            self._answer({"content-encoding": "gzip"}, gzip.compress(b" " * 20_000_000))
        elif mode == "gzip":
            self._answer({"content-encoding": "gzip"}, gzip.compress(SMALL_JSON))
        elif mode.startswith("labelled "):  # a Content-Encoding that names no compression (`UTF-8`)
            self._answer({"content-encoding": mode.removeprefix("labelled ")}, SMALL_JSON)
        elif mode == "raw_deflate":  # deflate without the zlib header (IIS)
            deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
            self._answer({"content-encoding": "deflate"}, deflate.compress(SMALL_JSON) + deflate.flush())
        elif mode == "brotli":
            self._answer({"content-encoding": "br"}, b"\x0b\x02\x80hello\x03")

    def _head(self, headers: dict[str, str]) -> None:
        self.send_response(200)
        for name, value in {"content-type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.end_headers()

    def _answer(self, headers: dict[str, str], body: bytes) -> None:
        self._head({**headers, "content-length": str(len(body))})
        self.wfile.write(body)


class PeerServer(ThreadingHTTPServer):
    daemon_threads = True
    mode = "gzip"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """The client hanging up on an answer it refused is the point, not an error."""


@pytest.fixture
def peer() -> Iterator[PeerServer]:
    server = PeerServer(("127.0.0.1", 0), MisbehavingPeer)
    with serving(server):
        yield server


def _url(server: PeerServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_a_trickled_answer_ends_at_the_total_timeout_not_at_the_last_byte(
        peer: PeerServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbound, "TOTAL_TIMEOUT_S", 0.5)
    peer.mode = "trickle"
    with outbound_client(5.0) as client, pytest.raises(ResponseTooSlow, match="still arriving after 0.5 s"):
        client.get(_url(peer))


@pytest.mark.parametrize("mode", ["chunked", "declared", "gzip_bomb"])
def test_an_answer_over_the_size_limit_is_refused_without_holding_it(
        peer: PeerServer, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    monkeypatch.setattr(outbound, "MAX_RESPONSE_BYTES", 1_000_000)
    peer.mode = mode
    with outbound_client(5.0) as client, pytest.raises(ResponseTooLarge, match="1000000-byte limit"):
        client.get(_url(peer))


def test_an_answer_through_a_proxy_from_the_environment_is_bounded_too(
        peer: PeerServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx sends through a transport of its own for HTTP_PROXY: the bound is a response hook, which sees it."""
    monkeypatch.setattr(outbound, "MAX_RESPONSE_BYTES", 1_000_000)
    monkeypatch.setenv("HTTP_PROXY", _url(peer))  # the peer answers as the proxy
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    peer.mode = "chunked"
    with outbound_client(5.0) as client, pytest.raises(ResponseTooLarge):
        client.get("http://registry.example.invalid/")


def test_a_compressed_answer_within_the_limit_reads_as_sent(peer: PeerServer) -> None:
    with outbound_client(5.0) as client:
        response = client.get(_url(peer))
    assert response.json()["result"]["creditCode"] == USCC
    assert response.request.headers["accept-encoding"] == "identity"


def test_the_hubs_connector_client_is_bounded(hub: Hub, peer: PeerServer,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """`hub.http` serves parse-time calls (WeCom, Douyin): an 11 MB answer used to be read whole."""
    monkeypatch.setattr(outbound, "MAX_RESPONSE_BYTES", 1_000_000)
    peer.mode = "chunked"
    with pytest.raises(ResponseTooLarge):
        hub.http.get(_url(peer))


def test_a_registry_trickling_its_answer_fails_the_lookup_in_bounded_time_naming_why(
        hub: Hub, peer: PeerServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lookup runs on the enrichment lane's worker: a registry sending a byte at a time held it for as long."""
    monkeypatch.setattr(outbound, "TOTAL_TIMEOUT_S", 0.5)
    peer.mode = "trickle"
    add_source(client_for(hub), "credit_registry", "registry",
               {"provider": "tianyancha", "token": "t", "base_url": _url(peer)})
    with pytest.raises(RetryableError, match="still arriving after 0.5 s"):
        lookup_company(hub, USCC)


def test_an_erp_trickling_its_orders_fails_the_pull_in_bounded_time(
        hub: Hub, peer: PeerServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pulls run on the ingest lane: a trickling ERP held back the processing of every inbound request."""
    monkeypatch.setattr(outbound, "TOTAL_TIMEOUT_S", 0.5)
    peer.mode = "trickle"
    source_id = add_source(client_for(hub), "erp", "erp", {
        "secret": "s" * 16, "base_url": _url(peer), "client_id": "c", "client_secret": "cs",
        "token_url": f"{_url(peer)}/token", "rate_limit_per_s": 200})
    with pytest.raises(ResponseTooSlow):
        run_pull(hub, uuid.UUID(source_id))


@pytest.mark.parametrize("label", ["UTF-8", "none", "identity"])
def test_an_answer_labelled_with_no_compression_reads_as_sent(peer: PeerServer, label: str) -> None:
    """Servers send `Content-Encoding: UTF-8`; httpx ignores a label it does not know, and the registry lookup read
    such an answer. The bound refused it as an encoding it could not read: every lookup failed, retried for ever."""
    peer.mode = f"labelled {label}"
    with outbound_client(5.0) as client:
        assert client.get(_url(peer)).json()["result"]["creditCode"] == USCC


def test_a_compression_the_bound_cannot_count_is_refused(peer: PeerServer) -> None:
    """httpx decodes brotli itself once the package is installed, past the size limit: refused instead."""
    peer.mode = "brotli"
    with outbound_client(5.0) as client, pytest.raises(httpx.DecodingError, match="br-encoded"):
        client.get(_url(peer))


def test_deflate_without_its_zlib_header_reads_as_sent(peer: PeerServer) -> None:
    """Servers send `deflate` raw (no zlib header); httpx reads it, and so does the bound, which refused it."""
    peer.mode = "raw_deflate"
    with outbound_client(5.0) as client:
        assert client.get(_url(peer)).json()["result"]["creditCode"] == USCC
