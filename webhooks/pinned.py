"""Connect only to the addresses the SSRF guard vetted: the defence against DNS rebinding.

`check_url` resolves the host and vets every address. If httpx then resolved the name again
to connect, a DNS answer that changed in between (rebinding) would reach an address nobody
checked. So the sender puts the vetted addresses in a context variable for its request,
and this network backend connects to one of them instead of resolving the name. TLS
still uses the hostname (SNI and certificate verification), and the pool still keys
connections by hostname, so the receiver sees exactly what it saw before.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass

import httpcore
import httpx


@dataclass(frozen=True)
class Vetted:
    """The host as the connection pool spells it (IDNA, no brackets) and the addresses checked for it."""

    host: str
    addresses: tuple[str, ...]


VETTED: ContextVar[Vetted | None] = ContextVar("webhooks_vetted", default=None)


def pool_host(url: str) -> str:
    """The host name httpcore hands to `connect_tcp` for `url`."""
    return httpx.URL(url).raw_host.decode("ascii")


class PinnedBackend(httpcore.AnyIOBackend):
    """Opens TCP connections to vetted addresses only; it never resolves a name itself."""

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        vetted = VETTED.get()
        if vetted is None or vetted.host != host or not vetted.addresses:
            raise httpcore.ConnectError(f"refused: no vetted address for {host!r}")
        error: Exception | None = None
        for address in vetted.addresses:
            try:
                return await super().connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                 socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with the pinned backend (httpx takes no backend argument, so the pool is replaced)."""

    def __init__(self, *, limits: httpx.Limits, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(limits=limits, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=PinnedBackend(),
        )
