"""A local stand-in for WeCom's server API (`gettoken`, `externalcontact/get`) on 127.0.0.1.

`crmhub demo` runs it so the demo's contact gets its details without the internet; the tests drive it. It checks
what WeCom checks: the corp id and secret (40013, 40001), a missing or unknown token (41001, 40014), an expired one
(42001), a missing or unknown contact (40096), and the employee's relation (84061). Like WeCom it hands out the same
token while that one is valid. `follow_user` is paged `page_size` entries at a time with `next_cursor`.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from hub.demo import loopback_server

from .api import CONTACT_PATH, TOKEN_PATH


@dataclass
class WeComStandIn:
    corp_id: str
    secret: str
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)  # external_userid → the answer's body
    expires_in: int = 7200
    page_size: int = 500
    errors: list[int] = field(default_factory=list)  # errcodes to answer the next contact calls with
    status_errors: list[int] = field(default_factory=list)  # HTTP statuses to answer the next contact calls with
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    tokens: dict[str, float] = field(default_factory=dict)  # token → when it expires
    base_url: str = ""

    def expire_tokens(self) -> None:
        """Every token handed out so far stops working (42001), as after two hours."""
        self.tokens = dict.fromkeys(self.tokens, 0.0)

    def token_reply(self, query: dict[str, str]) -> dict[str, Any]:
        if query.get("corpid") != self.corp_id:
            return {"errcode": 40013, "errmsg": "invalid corpid"}
        if not query.get("corpsecret"):
            return {"errcode": 41004, "errmsg": "corpsecret missing"}
        if query["corpsecret"] != self.secret:
            return {"errcode": 40001, "errmsg": "invalid credential"}
        now = time.time()
        token = next((t for t, end in self.tokens.items() if end > now), None)
        if token is None:
            token = secrets.token_urlsafe(24)
            self.tokens[token] = now + self.expires_in
        return {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": int(self.tokens[token] - now)}

    def contact_reply(self, query: dict[str, str]) -> dict[str, Any]:
        token = query.get("access_token")
        if not token:
            return {"errcode": 41001, "errmsg": "access_token missing"}
        if token not in self.tokens:
            return {"errcode": 40014, "errmsg": "invalid access_token"}
        if time.time() >= self.tokens[token]:
            return {"errcode": 42001, "errmsg": "access_token expired"}
        if self.errors:
            return {"errcode": self.errors.pop(0), "errmsg": "injected"}
        contact = self.contacts.get(query.get("external_userid", ""))
        if contact is None:
            return {"errcode": 40096, "errmsg": "invalid external userid"}
        follow = list(contact.get("follow_user") or [])
        if not follow:
            return {"errcode": 84061, "errmsg": "not external contact"}
        start = int(query.get("cursor") or 0)
        page = follow[start:start + self.page_size]
        more = start + self.page_size < len(follow)
        return {"errcode": 0, "errmsg": "ok", "external_contact": contact.get("external_contact") or {},
                "follow_user": page, "next_cursor": str(start + self.page_size) if more else ""}


@contextmanager
def serve(stand_in: WeComStandIn) -> Iterator[WeComStandIn]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            stand_in.requests.append((url.path, query))
            if url.path == CONTACT_PATH and stand_in.status_errors:
                self._answer(stand_in.status_errors.pop(0), {"errcode": -1, "errmsg": "system busy"})
            elif url.path == TOKEN_PATH:
                self._answer(200, stand_in.token_reply(query))
            elif url.path == CONTACT_PATH:
                self._answer(200, stand_in.contact_reply(query))
            else:
                self._answer(404, {"errcode": 404, "errmsg": "not found"})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
            """Quiet: the demo prints its own summary."""

    with loopback_server(Handler) as base_url:
        stand_in.base_url = base_url
        yield stand_in
