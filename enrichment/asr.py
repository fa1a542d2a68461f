"""Tencent Cloud ASR (录音文件识别, asr 2019-06-14) through tencentcloud-sdk-python.

Only this module talks to the SDK. It turns SDK failures into the hub's error
vocabulary: throttling, 5xx, network trouble and answers it cannot read become `RetryableError` (the task
is retried with backoff); anything else is `AsrRejected` (the job fails, no retry).
Credentials, region, endpoint and protocol come from settings (contract §1), so
tests point the SDK at a local fake server with `CRMHUB_ASR_ENDPOINT=127.0.0.1:PORT`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hub.errors import HubError, RetryableError
from hub.settings import Settings

ASR_RATE_PER_S = 20.0  # CreateRecTask's default account limit (platforms.md §4.1)
REQUEST_TIMEOUT_S = 10

# Callback `code` values for audio that can never be recognised (platforms.md §4.3).
AUDIO_FAILURES: dict[int, str] = {
    10000: "transcode_failed",
    10001: "recognition_failed",
    10002: "audio_too_short",
    10003: "audio_too_long",
    10004: "invalid_audio_file",
    10005: "other_audio_error",
    10006: "track_count_mismatch",
    10007: "audio_download_failed",
}
# DescribeTaskStatus only gives text on failure; these phrases identify the same causes.
_ERROR_PHRASES: tuple[tuple[str, int], ...] = (
    ("download", 10007),
    ("transcod", 10000),
    ("too short", 10002),
    ("too long", 10003),
    ("channel", 10006),
    ("track", 10006),
    ("invalid", 10004),
    ("format", 10004),
)
_RETRYABLE_CODES = ("RequestLimitExceeded", "ServerNetworkError", "ClientNetworkError", "InternalError",
                    "ServiceUnavailable", "FailedOperation.ServiceIsolate", "ResourceUnavailable")
# The SDK reports an answer it cannot read under the name of the Python error it hit (`JSONDecodeError` for a
# proxy's HTML page answered 200, `TypeError` for JSON that is not an object). Tencent never said no: such an
# answer failed the job for good, and a poll's paid-for transcript with it.
_UNREADABLE_ANSWER = ("JSONDecodeError", "UnicodeDecodeError", "TypeError", "KeyError", "AttributeError",
                      "IndexError", "ValueError")


class AsrRejected(HubError):
    """Tencent refused the request for good (bad credentials, invalid parameters): do not retry."""

    status_code = 502
    code = "asr_rejected"


def audio_failure_code(code: int | None, message: str | None) -> int | None:
    """The 10000–10007 failure code for a failed task, from the callback code or the error text."""
    if code is not None and code in AUDIO_FAILURES:
        return code
    text = (message or "").lower()
    for number in AUDIO_FAILURES:
        if str(number) in text:
            return number
    for phrase, number in _ERROR_PHRASES:
        if phrase in text:
            return number
    return None


class TokenBucket:
    """A per-process token bucket: `acquire()` blocks until a request may go out.

    Tencent limits CreateRecTask to 20 req/s per account. Each worker process gets its
    own bucket, so N processes can together exceed the limit; the server then answers
    RequestLimitExceeded, which is retried with backoff — the bucket only keeps one
    process from causing that storm by itself.
    """

    def __init__(self, rate: float = ASR_RATE_PER_S, capacity: float | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.rate = rate
        self.capacity = capacity if capacity is not None else rate
        self._tokens = self.capacity
        self._clock, self._sleep = clock, sleep
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token; returns how long the caller waited (seconds)."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1.0 - 1e-9:  # tolerance: float refill must not spin forever
                    self._tokens = max(0.0, self._tokens - 1.0)
                    return waited
                delay = (1.0 - self._tokens) / self.rate
            self._sleep(delay)
            waited += delay


SUBMIT_BUCKET = TokenBucket()


@dataclass(frozen=True)
class SubmitRequest:
    url: str
    callback_url: str | None
    engine: str = "8k_zh"
    channel_num: int = 2

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "EngineModelType": self.engine,
            "ChannelNum": self.channel_num,
            "ResTextFormat": 2,  # word detail with punctuation: gives SpeakerId and timestamps
            "SourceType": 0,
            "Url": self.url,
        }
        if self.callback_url:
            params["CallbackUrl"] = self.callback_url
        if self.channel_num == 1:  # mono: separate the voices by model (platforms.md §4.1: 8k and 16k engines)
            params["SpeakerDiarization"] = 1
            # 16k engines take no fixed number (0 = automatic); a phone call has two voices
            params["SpeakerNumber"] = 2 if self.engine.startswith("8k") else 0
        return params


class AsrClient:
    """Thin typed wrapper over `tencentcloud.asr.v20190614.asr_client.AsrClient`."""

    def __init__(self, settings: Settings, bucket: TokenBucket | None = None) -> None:
        from tencentcloud.asr.v20190614 import asr_client
        from tencentcloud.common import credential
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile

        http = HttpProfile(protocol=settings.asr_protocol, endpoint=settings.asr_endpoint or None,
                           reqMethod="POST", reqTimeout=REQUEST_TIMEOUT_S)
        cred = credential.Credential(settings.tencentcloud_secret_id, settings.tencentcloud_secret_key)
        self._client = asr_client.AsrClient(cred, settings.asr_region, ClientProfile(httpProfile=http))
        self._bucket = bucket or SUBMIT_BUCKET

    def create_task(self, request: SubmitRequest) -> int:
        """Submit a recording; returns Tencent's TaskId."""
        from tencentcloud.asr.v20190614 import models

        req = models.CreateRecTaskRequest()
        req.from_json_string(json.dumps(request.params()))
        self._bucket.acquire()
        resp = _call(lambda: self._client.CreateRecTask(req))
        task_id = (resp.get("Data") or {}).get("TaskId")
        if task_id is None:
            raise RetryableError("CreateRecTask answered without a TaskId")
        return int(task_id)

    def describe(self, task_id: int) -> dict[str, Any]:
        """DescribeTaskStatus's `Data` as a plain dict (Status, ErrorMsg, Result, ResultDetail …)."""
        from tencentcloud.asr.v20190614 import models

        req = models.DescribeTaskStatusRequest()
        req.from_json_string(json.dumps({"TaskId": task_id}))
        resp = _call(lambda: self._client.DescribeTaskStatus(req))
        data = resp.get("Data")
        if not isinstance(data, dict):
            raise RetryableError("DescribeTaskStatus answered without Data")
        return data


def _call(fn: Callable[[], Any]) -> dict[str, Any]:
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

    try:
        resp = fn()
    except TencentCloudSDKException as exc:
        code = str(exc.code or "")
        detail = f"{code}: {exc.message}"
        if code.startswith(_RETRYABLE_CODES):
            raise RetryableError(f"Tencent ASR transient error, retrying: {detail}", code="asr_retry") from exc
        if code in _UNREADABLE_ANSWER:
            raise RetryableError(f"Tencent ASR answered something unreadable, retrying: {detail}",
                                 code="asr_retry") from exc
        raise AsrRejected(f"Tencent ASR refused the request: {detail}", details={"tencent_code": code}) from exc
    result: dict[str, Any] = json.loads(resp.to_json_string())
    return result


ClientFactory = Callable[[Settings], AsrClient]
