"""The SSRF guard: only http(s), and the host must resolve to public addresses only.

Checked when an endpoint is created or its URL changed, and again before every batch of
sends (DNS can change in between); the sends then connect only to the addresses checked
here (`webhooks.pinned`), so a rebinding DNS answer is never used. Redirects are never
followed, so a public host cannot bounce a delivery to an internal one.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from hub.errors import InvalidRequest


class UnsafeURL(InvalidRequest):
    code = "unsafe_url"


def _refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    elif isinstance(ip, ipaddress.IPv6Address):
        # Python < 3.12.4 calls these global: deprecated site-local, and 6to4, which tunnels to its embedded IPv4.
        if ip.is_site_local:
            return "site-local"
        if ip.sixtofour is not None and (reason := _refusal(ip.sixtofour)):
            return f"6to4 of a {reason}"
    for attr, name in (("is_loopback", "loopback"), ("is_link_local", "link-local"), ("is_multicast", "multicast"),
                       ("is_unspecified", "unspecified"), ("is_reserved", "reserved"), ("is_private", "private")):
        if getattr(ip, attr):
            return name
    if not ip.is_global:
        return "non-global"
    return None


def resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeURL(f"endpoint host {host!r} does not resolve: {exc}",
                        details=[{"field": "url", "message": "host does not resolve"}]) from exc
    return sorted({str(info[4][0]) for info in infos})


def check_url(url: str, *, allow_private: bool) -> list[str]:
    """Validate `url` and return the addresses its host resolves to. UnsafeURL (422) names the problem."""
    try:
        parts = urlsplit(url)
        parts.hostname  # noqa: B018 - parsing `http://[zz]/` fails only here
    except ValueError as exc:
        raise UnsafeURL(f"endpoint URL {url[:200]!r} cannot be parsed: {exc}",
                        details=[{"field": "url", "message": "not a URL"}]) from exc
    if parts.scheme not in ("http", "https"):
        found = f"not {parts.scheme!r}" if parts.scheme else f"and {url!r} has none (e.g. https://crm.example.com/hooks)"
        raise UnsafeURL(f"endpoint URL must start with http:// or https://, {found}",
                        details=[{"field": "url", "message": "only http and https"}])
    if not parts.hostname:
        raise UnsafeURL("endpoint URL has no host", details=[{"field": "url", "message": "no host"}])
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeURL(f"endpoint URL port is invalid: {exc}",
                        details=[{"field": "url", "message": "bad port"}]) from exc
    addresses = resolve(parts.hostname, port)
    if allow_private:
        return addresses
    for address in addresses:
        reason = _refusal(ipaddress.ip_address(address.split("%", 1)[0]))
        if reason:
            raise UnsafeURL(
                f"endpoint host {parts.hostname!r} resolves to {reason} address {address}; "
                "set CRMHUB_ALLOW_PRIVATE_ENDPOINTS=true to allow it",
                details=[{"field": "url", "message": f"{reason} address {address}"}],
            )
    return addresses
