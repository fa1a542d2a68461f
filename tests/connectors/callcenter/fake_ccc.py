"""A local fake of ccc.tencentcloudapi.com that re-computes the TC3-HMAC-SHA256 signature (platforms.md §4.5).

Written here because tests/fakes/tencent_cloud.py did not exist yet; it answers DescribeTelCdr only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.server import serving

SECRET_ID = "AKIDfakeccc0001"
SECRET_KEY = "fake-ccc-secret-key-0001"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def tc3_signature(secret_key: str, headers: dict[str, str], body: bytes, service: str = "ccc") -> str:
    timestamp = headers["x-tc-timestamp"]
    day = datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%d")
    canonical = (f"POST\n/\n\ncontent-type:{headers['content-type']}\nhost:{headers['host']}\n\n"
                 f"content-type;host\n{hashlib.sha256(body).hexdigest()}")
    to_sign = (f"TC3-HMAC-SHA256\n{timestamp}\n{day}/{service}/tc3_request\n"
               f"{hashlib.sha256(canonical.encode()).hexdigest()}")
    key = _hmac(_hmac(_hmac(("TC3" + secret_key).encode(), day), service), "tc3_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


class FakeCcc:
    def __init__(self) -> None:
        self.cdrs: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.endpoint = f"127.0.0.1:{self.server.server_address[1]}"

    def _answer(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        if action != "DescribeTelCdr":
            return {"Error": {"Code": "InvalidAction", "Message": action}}
        self.requests.append(params)
        rows = [c for c in self.cdrs if params["StartTimeStamp"] <= c["StartTimestamp"] < params["EndTimeStamp"]]
        size, page = params.get("PageSize", 10), params.get("PageNumber", 0)
        return {"TotalCount": len(rows), "TelCdrs": rows[page * size:(page + 1) * size]}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                auth = headers.get("authorization", "")
                given = auth.rpartition("Signature=")[2]
                expected = tc3_signature(SECRET_KEY, headers, body)
                if f"Credential={SECRET_ID}/" not in auth or not hmac.compare_digest(given, expected):
                    result: dict[str, Any] = {"Error": {"Code": "AuthFailure.SignatureFailure",
                                                        "Message": "signature mismatch"}}
                else:
                    result = fake._answer(headers.get("x-tc-action", ""), json.loads(body))
                data = json.dumps({"Response": {**result, "RequestId": "fake-req"}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")  # exactly: the SDK checks it
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    @contextmanager
    def running(self) -> Iterator[FakeCcc]:
        with serving(self.server):
            yield self
