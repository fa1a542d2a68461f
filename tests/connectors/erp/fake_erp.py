"""A local fake ERP API on 127.0.0.1: an OAuth2 client-credentials token endpoint and `GET /orders` behind it."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.server import serving

CLIENT_ID = "hub-client"
CLIENT_SECRET = "hub-client-secret-01"


class FakeErp:
    """Checks what an OAuth 2 server and a paged API check: client_secret_basic credentials (401 with
    WWW-Authenticate, RFC 6749 §5.2), the grant type, the scope, token expiry, and the required query."""

    def __init__(self, expires_in: int = 3600) -> None:
        self.orders: list[dict[str, Any]] = []
        self.tokens: dict[str, float] = {}  # token → when it expires
        self.expires_in = expires_in
        self.clock = time.time
        self.log: list[tuple[str, dict[str, str]]] = []
        self.fail_requests: set[int] = set()  # `GET /orders` calls (1-based) answered 500 once (a crash mid-pull)
        self.after_request: Callable[[int], None] | None = None  # e.g. an order edited while the hub pages
        # Rate limiting as an API gateway does it: `throttle(s)` answers every `GET /orders` with 429 and
        # `Retry-After: s` until s seconds have passed; `throttled` counts those answers.
        self.throttled_until = 0.0
        self.retry_after = 0
        self.throttled = 0
        self.requests = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any, challenge: str | None = None,
                      headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                if challenge:
                    self.send_header("www-authenticate", challenge)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802
                form = parse_qs(self.rfile.read(int(self.headers.get("content-length") or 0)).decode())
                expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
                if self.path != "/oauth/token":
                    return self._send(404, {"error": "not_found"})
                if self.headers.get("authorization") != expected:
                    return self._send(401, {"error": "invalid_client"}, challenge='Basic realm="erp"')
                if form.get("grant_type") != ["client_credentials"]:
                    return self._send(400, {"error": "unsupported_grant_type"})
                if set(" ".join(form.get("scope", [])).split()) - {"orders.read"}:
                    return self._send(400, {"error": "invalid_scope"})
                token = f"tok-{len(fake.tokens) + 1}"
                fake.tokens[token] = fake.clock() + fake.expires_in
                fake.log.append(("token", {}))
                self._send(200, {"access_token": token, "token_type": "Bearer", "expires_in": fake.expires_in})

            def do_GET(self) -> None:  # noqa: N802
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                auth = self.headers.get("authorization") or ""
                if url.path != "/orders":
                    return self._send(404, {"error": "not_found"})
                if not auth.startswith("Bearer ") or fake.tokens.get(auth[7:], 0) <= fake.clock():
                    return self._send(401, {"error": "invalid_token"}, challenge='Bearer error="invalid_token"')
                fake.log.append(("orders", query))
                try:
                    page, size = int(query.get("page", 1)), int(query.get("page_size", 100))
                    since = datetime.fromisoformat(query["updated_since"])
                except (KeyError, ValueError) as exc:
                    return self._send(400, {"error": "invalid_request", "detail": f"bad query: {exc}"})
                if time.monotonic() < fake.throttled_until:
                    fake.throttled += 1
                    return self._send(429, {"error": "rate_limited"}, headers={"retry-after": str(fake.retry_after)})
                fake.requests += 1
                if fake.requests in fake.fail_requests:
                    fake.fail_requests.discard(fake.requests)
                    return self._send(500, {"error": "boom"})
                rows = sorted((o for o in fake.orders if datetime.fromisoformat(o["updated_at"]) >= since),
                              key=lambda o: (o["updated_at"], o["order_no"]))
                self._send(200, {"items": rows[(page - 1) * size: page * size], "page": page})
                if fake.after_request is not None:
                    fake.after_request(fake.requests)

        return Handler

    def throttle(self, seconds: int) -> None:
        self.retry_after = seconds
        self.throttled_until = time.monotonic() + seconds

    @contextmanager
    def running(self) -> Iterator[FakeErp]:
        with serving(self.server):
            yield self
