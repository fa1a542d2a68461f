"""Demo: a stand-in for Tencent Cloud ASR on 127.0.0.1, so `crmhub demo` shows a call's four facts.

The demo never calls the internet (recognition is a paid call, and the demo's recording URLs are made up).
`crmhub demo` points the hub's ASR settings at this stand-in. It checks what Tencent checks before
answering: the TC3-HMAC-SHA256 signature over the received bytes, the action and version headers, and
CreateRecTask's required parameters. It answers with errors in Tencent's shape (HTTP 200 with
`Response.Error`). A task succeeds at its first DescribeTaskStatus with the demo call's transcript: 张伟
asks about the Python course he saw in a Douyin live stream.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from enrichment.asr_rules import rec_task_problem
from hub.demo import loopback_server

SECRET_ID = "AKIDcrmhubDemo0000000000000000000000"
API_VERSION = "2019-06-14"
MAX_SKEW_S = 300
_AUTH = re.compile(r"TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>[\d-]+)/asr/tc3_request, "
                   r"SignedHeaders=(?P<signed>[a-z;-]+), Signature=(?P<signature>[0-9a-f]{64})")
# channel 0 is the caller (an inbound call: the customer), channel 1 the agent
TRANSCRIPT = [
    (1, "您好，极客职训，请问有什么可以帮您？"),
    (0, "你好，我在抖音直播间看到你们的Python就业班，想问一下价格。"),
    (1, "就业班是一万二千八，四个月直播课，结业推荐就业。"),
    (0, "我预算一万到一万五吧，报名这个事我自己就能定。"),
    (1, "好的。您之前还了解过别的机构吗？"),
    (0, "看过达内和黑马程序员，他们便宜一点。"),
    (1, "我们可以先约个试听课，周六下午方便吗？"),
    (0, "可以，周六见。"),
]


class TencentError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _stamp(ms: int) -> str:
    """Tencent's `Result` time stamps: minutes:seconds.millis."""
    return f"{ms // 60000}:{(ms % 60000) / 1000:.3f}"


def _sentences() -> list[dict[str, Any]]:
    return [{"FinalSentence": text, "StartMs": n * 4000, "EndMs": n * 4000 + 3500, "SpeakerId": channel,
             "WordsNum": len(text), "SpeechSpeed": round(len(text) / 3.5, 1)}
            for n, (channel, text) in enumerate(TRANSCRIPT)]


class AsrStandIn:
    """CreateRecTask and DescribeTaskStatus, for one secret pair."""

    def __init__(self, secret_key: str) -> None:
        self.secret_key = secret_key
        self.tasks: dict[int, dict[str, Any]] = {}
        self._next_task = 1_000_000_001
        self._lock = threading.Lock()

    def answer(self, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        self._verify(headers, body)
        if headers.get("x-tc-version") != API_VERSION:
            raise TencentError("NoSuchVersion", f"the API version {headers.get('x-tc-version')!r} does not exist")
        try:
            params = json.loads(body or b"{}")
        except ValueError as exc:
            raise TencentError("InvalidParameter", f"the body is not JSON: {exc}") from exc
        action = headers.get("x-tc-action")
        if action == "CreateRecTask":
            return self._create(params)
        if action == "DescribeTaskStatus":
            return self._describe(params)
        raise TencentError("InvalidAction", f"the action {action!r} does not exist")

    def _verify(self, headers: dict[str, str], body: bytes) -> None:
        match = _AUTH.fullmatch(headers.get("authorization", "").strip())
        if match is None:
            raise TencentError("AuthFailure.InvalidAuthorization", "Authorization is not TC3-HMAC-SHA256 for asr")
        if match["id"] != SECRET_ID:
            raise TencentError("AuthFailure.SecretIdNotFound", f"SecretId {match['id']} does not exist")
        stamp = headers.get("x-tc-timestamp", "")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > MAX_SKEW_S:
            raise TencentError("AuthFailure.SignatureExpire", "X-TC-Timestamp is missing or too far off")
        names = match["signed"].split(";")
        if not {"content-type", "host"} <= set(names) or any(n not in headers for n in names):
            raise TencentError("AuthFailure.SignatureFailure", "SignedHeaders must cover content-type and host")
        canonical = "\n".join(["POST", "/", "", "".join(f"{n}:{headers[n].strip().lower()}\n" for n in names),
                               match["signed"], hashlib.sha256(body).hexdigest()])
        scope = f"{match['date']}/asr/tc3_request"
        to_sign = f"TC3-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        key = ("TC3" + self.secret_key).encode()
        for part in (match["date"], "asr", "tc3_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if match["date"] != datetime.fromtimestamp(int(stamp), UTC).strftime("%Y-%m-%d") or not hmac.compare_digest(
                expected, match["signature"]):
            raise TencentError("AuthFailure.SignatureFailure", "the signature does not match the request")

    def _create(self, params: dict[str, Any]) -> dict[str, Any]:
        problem = rec_task_problem(params)
        if problem is not None:
            raise TencentError(*problem)
        with self._lock:
            task_id, self._next_task = self._next_task, self._next_task + 1
            self.tasks[task_id] = dict(params)
        return {"Data": {"TaskId": task_id}}

    def _describe(self, params: dict[str, Any]) -> dict[str, Any]:
        task_id = params.get("TaskId")
        if not isinstance(task_id, int) or task_id not in self.tasks:
            raise TencentError("FailedOperation.NoSuchTask", f"no task {task_id!r}")
        sentences = _sentences()
        detail = sentences if self.tasks[task_id].get("ResTextFormat", 0) >= 1 else None  # format 0: text only
        return {"Data": {"TaskId": task_id, "Status": 2, "StatusStr": "success", "ErrorMsg": "",
                         "Result": "".join(f"[{_stamp(s['StartMs'])},{_stamp(s['EndMs'])},{s['SpeakerId']}]  "
                                           f"{s['FinalSentence']}\n" for s in sentences),
                         "ResultDetail": detail, "AudioDuration": len(sentences) * 4.0}}


def _handler(stand_in: AsrStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            request_id = secrets.token_hex(16)
            try:
                response = stand_in.answer({k.lower(): v for k, v in self.headers.items()}, body)
            except TencentError as exc:
                response = {"Error": {"Code": exc.code, "Message": str(exc)}}
            data = json.dumps({"Response": {**response, "RequestId": request_id}}, ensure_ascii=False).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
            """Quiet: the demo prints its own summary."""

    return Handler


@contextmanager
def asr_stand_in() -> Iterator[dict[str, Any]]:
    """Serve the stand-in on a free loopback port; yields the hub settings that point ASR at it."""
    secret_key = secrets.token_hex(16)
    with loopback_server(_handler(AsrStandIn(secret_key))) as base_url:
        yield {"tencentcloud_secret_id": SECRET_ID, "tencentcloud_secret_key": secret_key,
               "asr_endpoint": base_url.removeprefix("http://"), "asr_protocol": "http"}
