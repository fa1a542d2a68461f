"""A local fake of a Tencent Cloud API 3.0 endpoint that checks TC3-HMAC-SHA256 like the real one.

Why a real HTTP server and not a mocked SDK: the SDK's own request building, signing and error
handling are what production runs, so tests drive the real `AsrClient` / `HunyuanClient` / `CccClient`
through `HttpProfile(protocol="http", endpoint=fake.endpoint)` (platforms.md §4.4). The fake rebuilds the
canonical request from the *received* raw body and headers (§4.5), so a client that signs anything
other than what it sends fails here as it would in production.

    with FakeTencentCloud("asr") as cloud:
        asr = AsrFake(cloud, statuses=("waiting", "success"))
        client = AsrClient(credential.Credential(SECRET_ID, SECRET_KEY), "ap-shanghai", cloud.client_profile())

Error codes follow Tencent's common ones: AuthFailure.InvalidAuthorization (malformed header),
AuthFailure.SecretIdNotFound, AuthFailure.SignatureExpire (timestamp more than 300 s off),
AuthFailure.SignatureFailure (anything else about the signature), MissingParameter, NoSuchVersion,
InvalidAction, RequestLimitExceeded (scripted), InternalError (a handler crashed). Errors come back as HTTP
200 with Content-Type exactly `application/json`, the only form the SDK raises on (gotcha 1).
Tests must clear proxy variables (gotcha 2): use the `no_proxy_env` fixture or `clear_proxy_env()`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

from enrichment.asr_rules import rec_task_problem

SECRET_ID = "AKIDfakeSecretIdForLocalTests0000"
SECRET_KEY = "fakeSecretKeyForLocalTests000000"
SERVICE_VERSIONS = {"asr": "2019-06-14", "ccc": "2020-02-10", "hunyuan": "2023-09-01"}
MAX_SKEW_S = 300
PROXY_VARS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")

Handler = Callable[[dict[str, Any]], dict[str, Any]]

_AUTH = re.compile(
    r"TC3-HMAC-SHA256\s+Credential=(?P<id>[^/\s,]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[^/\s,]+)/tc3_request"
    r"\s*,\s*SignedHeaders=(?P<signed>[a-z0-9;-]+)\s*,\s*Signature=(?P<signature>[0-9a-f]{64})"
)


class FakeApiError(Exception):
    """Raised by a handler (or the fake itself) to answer with a Tencent Cloud error."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message or code


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the fake saw it; `error_code` is set when it was answered with an error."""

    action: str
    params: dict[str, Any]
    headers: dict[str, str]
    body: bytes
    error_code: str | None = None


def clear_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset proxy variables: the SDK would send 127.0.0.1 traffic to a proxy (platforms.md §4.4, gotcha 2)."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fixture form of `clear_proxy_env`; import it into a test module or request it by name."""
    clear_proxy_env(monkeypatch)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tc3_signature(secret_key: str, date: str, service: str, string_to_sign: str) -> str:
    """Signature = hex(HMAC(kSigning, StringToSign)), with the key derived as in platforms.md §4.5."""

    def mac(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()

    k_signing = mac(mac(mac(("TC3" + secret_key).encode("utf-8"), date), service), "tc3_request")
    return hmac.new(k_signing, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


class FakeTencentCloud:
    """One Tencent Cloud service (`asr`, `ccc`, `hunyuan`, …) on 127.0.0.1 with a free port."""

    def __init__(
        self,
        service: str = "asr",
        *,
        version: str | None = None,
        credentials: Mapping[str, str] | None = None,
        max_skew_s: int = MAX_SKEW_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.version = version or SERVICE_VERSIONS.get(service)
        self.credentials = dict(credentials or {SECRET_ID: SECRET_KEY})
        self.max_skew_s = max_skew_s
        self.clock = clock
        self.requests: list[ReceivedRequest] = []
        self._handlers: dict[str, Handler] = {}
        self._api_errors: deque[tuple[str | None, str, str]] = deque()
        self._http_errors: deque[tuple[int, str]] = deque()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _RequestHandler)
        httpd.daemon_threads = True
        httpd.fake = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"fake-tencent-{self.service}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd, self._thread = None, None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """`host:port` for `HttpProfile(endpoint=...)` (no scheme, as the SDK wants)."""
        if self._httpd is None:
            raise RuntimeError("the fake is not started")
        return f"127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}/"

    def client_profile(self, *, timeout_s: int = 5, method: str = "POST") -> ClientProfile:
        """A `ClientProfile` that points an SDK client at this fake over plain HTTP."""
        http = HttpProfile(protocol="http", endpoint=self.endpoint, reqMethod=method, reqTimeout=timeout_s)
        return ClientProfile(httpProfile=http)

    # ------------------------------------------------------------------ scripting

    def handle(self, action: str, fn: Handler) -> None:
        """Answer `action` with `fn(params)` (the Response minus RequestId), or its `FakeApiError`."""
        self._handlers[action] = fn

    def fail_next(self, code: str, message: str = "", *, times: int = 1, action: str | None = None) -> None:
        """Answer the next `times` authenticated calls (of `action`, or of any action) with an API error."""
        with self._lock:
            self._api_errors.extend([(action, code, message or code)] * times)

    def fail_http(self, status: int = 502, *, times: int = 1, body: str = "Bad Gateway") -> None:
        """Answer the next `times` requests with a bare HTTP error (the SDK raises ServerNetworkError)."""
        with self._lock:
            self._http_errors.extend([(status, body)] * times)

    def requests_for(self, action: str) -> list[ReceivedRequest]:
        with self._lock:
            return [r for r in self.requests if r.action == action]

    # ------------------------------------------------------------------ request handling

    def dispatch(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> tuple[int, str, bytes]:
        """Process one raw request; returns (status, content type, body). Used by the HTTP handler."""
        with self._lock:
            http_error = self._http_errors.popleft() if self._http_errors else None
        if http_error is not None:
            return http_error[0], "text/plain", http_error[1].encode("utf-8")
        lowered = {k.lower(): v for k, v in headers.items()}
        action, request_id = lowered.get("x-tc-action", ""), str(uuid.uuid4())
        params: dict[str, Any] = {}
        try:
            self._require_headers(lowered)
            split = urlsplit(target)
            self.verify_signature(method, split.path or "/", split.query, lowered, body)
            if self.version and lowered["x-tc-version"] != self.version:
                version = lowered["x-tc-version"]
                raise FakeApiError("NoSuchVersion", f"version {version} of {self.service} does not exist")
            params = self._params(method, split.query, lowered, body)
            result = self._answer(action, params)
        except FakeApiError as err:
            self._record(action, params, headers, body, err.code)
            error = {"Response": {"Error": {"Code": err.code, "Message": err.message}, "RequestId": request_id}}
            return 200, "application/json", json.dumps(error, ensure_ascii=False).encode("utf-8")
        self._record(action, params, headers, body, None)
        payload = {"Response": {**result, "RequestId": request_id}}
        return 200, "application/json", json.dumps(payload, ensure_ascii=False).encode("utf-8")

    def verify_signature(self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes) -> None:
        """Raise `FakeApiError` unless the TC3-HMAC-SHA256 signature matches what was received."""
        match = _AUTH.fullmatch(headers.get("authorization", "").strip())
        if match is None:
            raise FakeApiError("AuthFailure.InvalidAuthorization", "Authorization is missing or not TC3-HMAC-SHA256")
        secret_key = self.credentials.get(match["id"])
        if secret_key is None:
            raise FakeApiError("AuthFailure.SecretIdNotFound", f"SecretId {match['id']} does not exist")
        timestamp = headers.get("x-tc-timestamp", "")
        if not timestamp.isdigit():
            raise FakeApiError("AuthFailure.InvalidAuthorization", "X-TC-Timestamp is missing or not an integer")
        if abs(self.clock() - int(timestamp)) > self.max_skew_s:
            raise FakeApiError("AuthFailure.SignatureExpire", "the signature has expired (X-TC-Timestamp too far off)")
        if match["date"] != datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%d"):
            raise FakeApiError("AuthFailure.SignatureFailure", "credential date is not the UTC date of X-TC-Timestamp")
        if match["service"] != self.service:
            raise FakeApiError("AuthFailure.SignatureFailure", f"credential scope names {match['service']!r}")
        names = match["signed"].split(";")
        if "content-type" not in names or "host" not in names or any(n not in headers for n in names):
            raise FakeApiError("AuthFailure.SignatureFailure", "SignedHeaders must cover content-type and host")
        canonical_headers = "".join(f"{n}:{headers[n].strip().lower()}\n" for n in names)
        if headers.get("x-tc-content-sha256") == "UNSIGNED-PAYLOAD":
            payload = b"UNSIGNED-PAYLOAD"
        else:
            payload = b"" if method == "GET" else body
        canonical = "\n".join(
            [method, path, query if method == "GET" else "", canonical_headers, match["signed"], sha256_hex(payload)]
        )
        scope = f"{match['date']}/{match['service']}/tc3_request"
        string_to_sign = f"TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{sha256_hex(canonical.encode('utf-8'))}"
        expected = tc3_signature(secret_key, match["date"], match["service"], string_to_sign)
        if not hmac.compare_digest(expected, match["signature"]):
            raise FakeApiError("AuthFailure.SignatureFailure", "the signature does not match the request")

    def _require_headers(self, headers: Mapping[str, str]) -> None:
        for name, header in (("Action", "x-tc-action"), ("Version", "x-tc-version")):
            if not headers.get(header):
                raise FakeApiError("MissingParameter", f"the request is missing the X-TC-{name} header")

    def _params(self, method: str, query: str, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        if method == "GET":
            return dict(parse_qsl(query, keep_blank_values=True))
        if not headers.get("content-type", "").startswith("application/json"):
            raise FakeApiError("InvalidParameter", "the fake only accepts JSON POST bodies")
        try:
            params = json.loads(body or b"{}")
        except ValueError as exc:
            raise FakeApiError("InvalidParameter", f"the body is not JSON: {exc}") from exc
        if not isinstance(params, dict):
            raise FakeApiError("InvalidParameter", "the body is not a JSON object")
        return params

    def _answer(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            for n, (only, code, message) in enumerate(self._api_errors):
                if only is None or only == action:
                    del self._api_errors[n]
                    raise FakeApiError(code, message)
        handler = self._handlers.get(action)
        if handler is None:
            raise FakeApiError("InvalidAction", f"action {action} does not exist in the fake {self.service}")
        try:
            return handler(params)
        except FakeApiError:
            raise
        except Exception as exc:  # a bug in a test's handler must surface as an API error, not a hang
            raise FakeApiError("InternalError", f"{type(exc).__name__}: {exc}") from exc

    def _record(
        self, action: str, params: dict[str, Any], headers: Mapping[str, str], body: bytes, code: str | None
    ) -> None:
        with self._lock:
            self.requests.append(ReceivedRequest(action, params, dict(headers), body, code))


class _RequestHandler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fake: FakeTencentCloud = self.server.fake  # type: ignore[attr-defined]
        status, content_type, payload = fake.dispatch(self.command, self.path, dict(self.headers.items()), body)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return


# ---------------------------------------------------------------------- ASR behaviour

_STATUS = {"waiting": 0, "doing": 1, "success": 2, "failed": 3}


def sentence(speaker_id: int, start_ms: int, end_ms: int, text: str) -> dict[str, Any]:
    """A `SentenceDetail` dict as DescribeTaskStatus returns it (only fields the SDK model knows)."""
    seconds = max((end_ms - start_ms) / 1000, 0.001)
    return {
        "FinalSentence": text,
        "SliceSentence": " ".join(text),
        "WrittenText": "",
        "StartMs": start_ms,
        "EndMs": end_ms,
        "WordsNum": len(text),
        "Words": [],
        "SpeechSpeed": round(len(text) / seconds, 1),
        "SpeakerId": speaker_id,
        "EmotionalEnergy": 0.0,
        "SilenceTime": 0,
        "EmotionType": [],
    }


def sentences_for(lines: Iterable[Mapping[str, Any]], direction: str) -> list[dict[str, Any]]:
    """ResultDetail for a labelled transcript: channel 0 is the caller (contract §10)."""
    caller = "customer" if direction == "inbound" else "agent"
    return [
        sentence(0 if line["speaker"] == caller else 1, int(line["start_ms"]), int(line["end_ms"]), line["text"])
        for line in lines
    ]


DEFAULT_SENTENCES = [
    sentence(0, 0, 2260, "您好，这里是极客职训，请问有什么可以帮您？"),
    sentence(1, 2900, 6100, "你好，我想了解一下Python课程，预算两三万。"),
]


@dataclass
class AsrTask:
    """One recognition task with its scripted future: statuses are consumed one per poll, the last sticks."""

    task_id: int
    params: dict[str, Any]
    statuses: list[str]
    sentences: list[dict[str, Any]]
    error_msg: str
    failure_code: int
    audio_duration: float
    polls: int = 0

    @property
    def outcome(self) -> str:
        return self.statuses[-1]


@dataclass
class AsrFake:
    """CreateRecTask / DescribeTaskStatus on a `FakeTencentCloud("asr")`, plus the form-encoded callback."""

    server: FakeTencentCloud
    statuses: tuple[str, ...] = ("waiting", "doing", "success")
    sentences: list[dict[str, Any]] = field(default_factory=lambda: list(DEFAULT_SENTENCES))
    error_msg: str = "Failed to download audio file!"
    failure_code: int = 10007
    audio_duration: float = 8.42
    app_id: int = 1251234567
    next_task_id: int = 1000000286
    tasks: dict[int, AsrTask] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.statuses or any(s not in _STATUS for s in self.statuses):
            raise ValueError(f"statuses must be a non-empty sequence of {sorted(_STATUS)}")
        self.server.handle("CreateRecTask", self.create_rec_task)
        self.server.handle("DescribeTaskStatus", self.describe_task_status)

    def throttle(self, times: int, action: str | None = None) -> None:
        """The next `times` calls get RequestLimitExceeded (the account's 20 req/s limit)."""
        self.server.fail_next("RequestLimitExceeded", "请求的次数超过了频率限制。", times=times, action=action)

    def create_rec_task(self, params: dict[str, Any]) -> dict[str, Any]:
        _validate_rec_task(params)
        task = AsrTask(
            task_id=self.next_task_id,
            params=dict(params),
            statuses=list(self.statuses),
            sentences=list(self.sentences),
            error_msg=self.error_msg,
            failure_code=self.failure_code,
            audio_duration=self.audio_duration,
        )
        self.tasks[task.task_id] = task
        self.next_task_id += 1
        return {"Data": {"TaskId": task.task_id}}

    def describe_task_status(self, params: dict[str, Any]) -> dict[str, Any]:
        if "TaskId" not in params:
            raise FakeApiError("MissingParameter", "the request is missing a required parameter `TaskId`.")
        raw = params["TaskId"]  # an int in JSON; a string when the SDK uses GET
        task = self.tasks.get(int(raw)) if str(raw).isdigit() else None
        if task is None:
            raise FakeApiError("FailedOperation.NoSuchTask", f"no task {params['TaskId']!r}")
        status = task.statuses[0] if len(task.statuses) == 1 else task.statuses.pop(0)
        task.polls += 1
        return {"Data": self._status_data(task, status)}

    def _status_data(self, task: AsrTask, status: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "TaskId": task.task_id,
            "Status": _STATUS[status],
            "StatusStr": status,
            "Result": "",
            "ErrorMsg": "",
            "ResultDetail": None,
            "AudioDuration": 0.0,
        }
        if status == "success":
            detail = task.sentences if task.params.get("ResTextFormat", 0) >= 1 else []
            data.update(Result=result_text(task.sentences), ResultDetail=detail, AudioDuration=task.audio_duration)
        elif status == "failed":
            data.update(ErrorMsg=task.error_msg)
        return data

    def callback_form(self, task_id: int) -> dict[str, str]:
        """The fields Tencent POSTs to CallbackUrl for the task's final outcome (platforms.md §4.3)."""
        task = self.tasks[task_id]
        ok = task.outcome == "success"
        form = {
            "code": "0" if ok else str(task.failure_code),
            "message": "" if ok else task.error_msg,
            "requestId": str(task.task_id),
            "appid": str(self.app_id),
            "projectid": "0",
            "text": result_text(task.sentences) if ok else "",
            "audioTime": f"{task.audio_duration:.6f}",
        }
        if task.params.get("SourceType") == 0 and task.params.get("Url"):
            form["audioUrl"] = task.params["Url"]
        if ok and task.params.get("ResTextFormat", 0) >= 1:
            form["resultDetail"] = json.dumps(task.sentences, ensure_ascii=False)
        return form

    def post_callback(
        self, task_id: int, url: str | None = None, *, client: httpx.Client | None = None
    ) -> httpx.Response:
        """POST the form-encoded callback to `url` (default: the task's CallbackUrl), as Tencent would."""
        target = url or self.tasks[task_id].params.get("CallbackUrl")
        if not target:
            raise ValueError(f"task {task_id} has no CallbackUrl and no url was given")
        form = self.callback_form(task_id)
        if client is not None:
            return client.post(target, data=form)
        with httpx.Client(trust_env=False, timeout=5.0) as own:
            return own.post(target, data=form)


def result_text(sentences: Iterable[Mapping[str, Any]]) -> str:
    """`Result` as Tencent formats it: "[0:0.000,0:2.260,0]  text" per sentence."""

    def stamp(ms: int) -> str:
        return f"{ms // 60000}:{(ms % 60000) / 1000:.3f}"

    return "".join(
        f"[{stamp(s['StartMs'])},{stamp(s['EndMs'])},{s['SpeakerId']}]  {s['FinalSentence']}\n" for s in sentences
    )


def _validate_rec_task(params: Mapping[str, Any]) -> None:
    problem = rec_task_problem(params)  # the same rules the demo's stand-in applies
    if problem is not None:
        raise FakeApiError(*problem)


# ---------------------------------------------------------------------- Hunyuan behaviour


@dataclass
class HunyuanFake:
    """ChatCompletions on a `FakeTencentCloud("hunyuan")`, answering with scripted message contents."""

    server: FakeTencentCloud
    replies: deque[str] = field(default_factory=deque)
    default_reply: str | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.server.handle("ChatCompletions", self.chat_completions)

    def reply(self, *contents: str) -> None:
        """Queue the contents of the next assistant messages, in order."""
        self.replies.extend(contents)

    def chat_completions(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("Model"):
            raise FakeApiError("MissingParameter", "the request is missing a required parameter `Model`.")
        messages = params.get("Messages")
        if not isinstance(messages, list) or not messages or any("Role" not in m for m in messages):
            raise FakeApiError("InvalidParameter", "Messages must be a non-empty list of {Role, Content}")
        if params.get("Stream"):
            raise FakeApiError("InvalidParameterValue", "the fake answers non-streaming calls only")
        self.calls.append(params)
        content = self.replies.popleft() if self.replies else self.default_reply
        if content is None:
            raise FakeApiError("InternalError", "no scripted reply left")
        prompt = sum(len(str(m.get("Content", ""))) for m in messages)
        return {
            "Id": uuid.uuid4().hex,
            "Created": int(time.time()),
            "Note": "以上内容为AI生成，不代表开发者立场，请勿删除或修改本标记",
            "Choices": [{"Index": 0, "FinishReason": "stop", "Message": {"Role": "assistant", "Content": content}}],
            "Usage": {"PromptTokens": prompt, "CompletionTokens": len(content), "TotalTokens": prompt + len(content)},
        }


def running(service: str, **kwargs: Any) -> Iterator[FakeTencentCloud]:
    """Generator for fixtures: `yield from running("asr")` starts a fake and stops it afterwards."""
    with FakeTencentCloud(service, **kwargs) as cloud:
        yield cloud
