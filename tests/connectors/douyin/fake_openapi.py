"""A local fake of Douyin's OpenAPI (token + get_related_id) that checks requests like the real one.

Tokens stop working when they expire (28001008) or after two newer fetches (28001003); a newer fetch also ends
the previous token's life 5 minutes later (platforms.md §1.6: "5-min grace"). get_related_id takes a JSON body.
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

from hub.demo import loopback_server


@dataclass
class FakeDouyin:
    client_key: str
    client_secret: str
    expires_in: int = 7200
    grace_s: float = 300.0  # how long the previous token keeps working after a newer fetch
    allied_ids: dict[str, str] = field(default_factory=dict)
    tokens: list[str] = field(default_factory=list)
    expires: dict[str, float] = field(default_factory=dict)  # token → when it stops working
    api_errors: list[int] = field(default_factory=list)  # err_no to answer the next API calls with
    requests: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    base_url: str = ""

    def token_reply(self, headers: dict[str, str], body: Any) -> dict[str, Any]:
        def error(code: int, text: str) -> dict[str, Any]:
            return {"data": {"error_code": code, "description": text}, "message": "error"}

        if "application/json" not in headers.get("content-type", ""):
            return error(10002, "参数错误: content-type must be application/json")
        if not isinstance(body, dict) or not body.get("client_key"):
            return error(10003, "client_key 参数缺失")
        if body.get("grant_type") != "client_credential":
            return error(10002, "grant_type 参数错误")
        if body["client_key"] != self.client_key or body.get("client_secret") != self.client_secret:
            return error(10013, "client_key 或 client_secret 错误")
        now = time.time()
        if self.tokens:  # re-fetching ends the previous token after the grace period
            previous = self.tokens[-1]
            self.expires[previous] = min(self.expires[previous], now + self.grace_s)
        token = "clt." + secrets.token_hex(16)
        self.tokens.append(token)
        self.expires[token] = now + self.expires_in
        return {"data": {"access_token": token, "expires_in": self.expires_in, "error_code": 0, "description": ""},
                "message": "success"}

    def related_id_reply(self, headers: dict[str, str], body: Any) -> dict[str, Any]:
        if "application/json" not in headers.get("content-type", ""):
            return {"err_no": 2100005, "err_msg": "参数不合法: content-type must be application/json", "log_id": "fake"}
        token = headers.get("access-token")
        if token not in self.tokens[-2:]:  # a newer fetch ends an older token: at most the latest two work
            return {"err_no": 28001003, "err_msg": "access_token无效", "log_id": "fake"}
        if time.time() >= self.expires[token]:
            return {"err_no": 28001008, "err_msg": "access_token过期,请刷新或重新授权", "log_id": "fake"}
        if self.api_errors:
            return {"err_no": self.api_errors.pop(0), "err_msg": "请求重试", "log_id": "fake"}
        open_id = body.get("open_id") if isinstance(body, dict) else None
        if open_id not in self.allied_ids:
            return {"err_no": 2100005, "err_msg": "参数不合法", "log_id": "fake"}
        return {"data": {"allied_id": self.allied_ids[open_id]}, "err_no": 0, "err_msg": "", "log_id": "fake"}


@contextmanager
def serve(fake: FakeDouyin) -> Iterator[FakeDouyin]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("latin-1")
            fake.requests.append((self.path, headers, body))
            if self.path == "/oauth/client_token/":
                reply = fake.token_reply(headers, body)
            elif self.path == "/api/douyin/v1/auth/get_related_id/":
                reply = fake.related_id_reply(headers, body)
            else:
                self.send_response(404)
                self.end_headers()
                return
            data = json.dumps(reply, ensure_ascii=False).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    with loopback_server(Handler) as base_url:
        fake.base_url = base_url
        yield fake
