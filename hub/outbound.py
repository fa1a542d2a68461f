"""Outbound HTTP clients whose answers are bounded in size and in total time, not only per read.

httpx's timeouts apply to each socket read, and `response.json()` reads the whole body into memory. A peer
that trickles its answer a byte at a time therefore held a registry lookup for as long as it liked (a 38-byte
answer sent a byte a second took 37 s under a 5 s timeout, and a longer one hours, with the enrichment lane's
only worker waiting), and one answering an endless chunked stream grew the process by 1.4 GB until MemoryError.
Every client that calls an upstream API (the registries, the ERP pull, WeCom, Douyin; not Tencent's SDK) is made
here: its response hook refuses an answer larger than MAX_RESPONSE_BYTES or still arriving `total_s` after its headers.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator

import httpx

MAX_RESPONSE_BYTES = 10 * 1024 * 1024  # an API answer this large is a misrouted URL or a broken proxy, not data
TOTAL_TIMEOUT_S = 30.0
DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
_DECODED = ("gzip", "x-gzip", "deflate")
# Compressions httpx decodes itself when a package is installed (brotli, zstandard), unbounded: refused here. Any other
# label (`UTF-8`, `none`: servers send them) names no compression, and httpx read such an answer as sent.
_REFUSED = ("br", "zstd", "compress", "x-compress")


class ResponseTooLarge(httpx.ReadError):
    """The answer exceeded the size limit. Says so without the URL (WeCom's carries the secret)."""


class ResponseTooSlow(httpx.ReadTimeout):
    """The answer was still arriving when the total time ran out."""


class ResponseBounds:
    """A response hook that bounds the body about to be read: `total_s` from its headers, and `max_bytes` decoded.

    A hook rather than a transport: httpx sends through a transport of its own for a proxy from the environment,
    and a hook sees every response. The body is decoded here (gzip, deflate), counting the decoded bytes, since a
    10 MB gzip bomb inflates to 10 GB. Deadline and size are checked as each chunk arrives, so the overrun is one
    read timeout at most.
    """

    def __init__(self, *, max_bytes: int | None = None, total_s: float | None = None) -> None:
        self.max_bytes = MAX_RESPONSE_BYTES if max_bytes is None else max_bytes
        self.total_s = TOTAL_TIMEOUT_S if total_s is None else total_s

    def __call__(self, response: httpx.Response) -> None:
        encoding = _compression(response.headers.get_list("content-encoding", split_commas=True))
        declared = response.headers.get("content-length", "")
        if encoding == "identity" and declared.isdigit() and int(declared) > self.max_bytes:
            raise ResponseTooLarge(f"the answer declares {declared} bytes, over the {self.max_bytes}-byte limit")
        if "content-encoding" in response.headers:  # decoded below (or none): httpx must not decode it again
            del response.headers["content-encoding"]
        assert isinstance(response.stream, httpx.SyncByteStream)
        response.stream = _BoundedStream(response.stream, encoding, self.max_bytes,
                                         time.monotonic() + self.total_s, self.total_s)


def _compression(labels: list[str]) -> str:
    """The one compression of the answer ("identity" for none); DecodingError for one this client does not read or
    for several. Labels that name no compression are ignored, as httpx ignores them."""
    known = [label for label in (v.strip().lower() for v in labels) if label in _DECODED or label in _REFUSED]
    if not known:
        return "identity"
    if len(known) > 1 or known[0] in _REFUSED:
        raise httpx.DecodingError(f"the answer is {', '.join(known)}-encoded, which this client does not read")
    return known[0]


class _BoundedStream(httpx.SyncByteStream):
    def __init__(self, raw: httpx.SyncByteStream, encoding: str, max_bytes: int, deadline: float,
                 total_s: float) -> None:
        self.raw = raw
        self.inflate = zlib.decompressobj(zlib.MAX_WBITS | 32) if encoding in ("gzip", "x-gzip") else (
            zlib.decompressobj() if encoding == "deflate" else None)
        self.raw_deflate_untried = encoding == "deflate"
        self.max_bytes, self.deadline, self.total_s = max_bytes, deadline, total_s

    def __iter__(self) -> Iterator[bytes]:
        size = 0
        for chunk in self.raw:
            if time.monotonic() > self.deadline:
                raise ResponseTooSlow(f"the answer was still arriving after {self.total_s:g} s")
            data = self._decoded(chunk, self.max_bytes - size + 1)
            size += len(data)
            if size > self.max_bytes:
                raise ResponseTooLarge(f"the answer exceeded the {self.max_bytes}-byte limit")
            yield data

    def _decoded(self, chunk: bytes, room: int) -> bytes:
        """The chunk as the caller reads it, never more than `room` bytes of it (the rest is over the limit anyway)."""
        if self.inflate is None:
            return chunk
        try:
            data = self.inflate.decompress(chunk, room)
        except zlib.error as exc:
            if not self.raw_deflate_untried:
                raise httpx.DecodingError(f"the answer is not valid compressed data: {exc}") from exc
            # `deflate` without its zlib header, as some servers (IIS) send it: httpx reads it so, so does this.
            self.inflate, self.raw_deflate_untried = zlib.decompressobj(-zlib.MAX_WBITS), False
            return self._decoded(chunk, room)
        self.raw_deflate_untried = False
        return data

    def close(self) -> None:
        self.raw.close()


def outbound_client(timeout: httpx.Timeout | float = DEFAULT_TIMEOUT, *, total_s: float | None = None,
                    max_bytes: int | None = None) -> httpx.Client:
    """A client for an upstream API: answers bounded in time and size, no redirects."""
    return httpx.Client(**outbound_client_options(timeout, total_s=total_s, max_bytes=max_bytes))


def outbound_client_options(timeout: httpx.Timeout | float = DEFAULT_TIMEOUT, *, total_s: float | None = None,
                            max_bytes: int | None = None) -> dict[str, object]:
    """`outbound_client`'s settings, for a client class of its own (authlib's OAuth2Client takes the same)."""
    return {"timeout": timeout, "follow_redirects": False,
            "event_hooks": {"response": [ResponseBounds(max_bytes=max_bytes, total_s=total_s)]},
            # asked for as sent: a server compressing anyway is decoded under the same limit
            "headers": {"accept-encoding": "identity"}}


def failure(exc: httpx.HTTPError) -> str:
    """Why a call failed, for a log or a recorded error: the class, plus the message for the limits set here
    (theirs never holds the URL; httpx's own messages do, and a WeCom URL carries the secret)."""
    if isinstance(exc, ResponseTooLarge | ResponseTooSlow | httpx.DecodingError):
        return f"{exc.__class__.__name__}: {exc}"
    return exc.__class__.__name__
