"""Demo: a stand-in for Tianyancha on 127.0.0.1, so `crmhub demo` shows an account's registry profile.

The demo never calls the internet (a lookup is a paid call). The stand-in answers the one endpoint the
connector calls, checks the token as Tianyancha does (`error_code` 300009 otherwise) and knows only the
demo's company (300000 "无数据" for any other code), so the lookup runs through the real provider code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from hub.demo import DemoRequest, DemoSource, loopback_server

from .providers import TIANYANCHA_BASEINFO

TOKEN = "demo-tianyancha-token-0001"
# The ERP demo's customer company (connectors/erp/demo.py), as Tianyancha's baseinfo answers it.
COMPANIES: dict[str, dict[str, Any]] = {
    "9144030071526726XG": {
        "name": "腾讯科技（深圳）有限公司", "creditCode": "9144030071526726XG", "legalPersonName": "马化腾",
        "regStatus": "存续", "regCapital": "6500万美元", "actualCapital": "6500万美元", "socialStaffNum": 7322,
        "estiblishTime": 948297600000,
    },
}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != TIANYANCHA_BASEINFO:
            self._answer(404, {"error_code": 404, "reason": "not found"})
        elif self.headers.get("Authorization") != TOKEN:
            self._answer(200, {"error_code": 300009, "reason": "token 无效", "result": None})
        else:
            company = COMPANIES.get((parse_qs(url.query).get("keyword") or [""])[0])
            if company is None:
                self._answer(200, {"error_code": 300000, "reason": "无数据", "result": None})
            else:
                self._answer(200, {"error_code": 0, "reason": "ok", "result": company})

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        """Quiet: the demo prints its own summary."""


@contextmanager
def tianyancha_stand_in() -> Iterator[dict[str, Any]]:
    """Serve the stand-in on a free loopback port; yields the config that points a source at it."""
    with loopback_server(_Handler) as base_url:
        yield {"base_url": base_url}


def _no_requests() -> list[DemoRequest]:
    return []  # the registry pushes nothing: ERP's USCC makes enrichment/ look the company up


def demo_sources() -> list[DemoSource]:
    return [DemoSource("credit_registry", "demo-registry", {"provider": "tianyancha", "token": TOKEN},
                       _no_requests, stand_in=tianyancha_stand_in)]
