"""The fake Tencent Cloud server: it accepts what the real SDK sends and rejects what the real service would."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tencentcloud.asr.v20190614 import asr_client, models as asr_models
from tencentcloud.ccc.v20200210 import ccc_client, models as ccc_models
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.hunyuan.v20230901 import hunyuan_client, models as hunyuan_models

from tests.fakes.tencent_cloud import (
    SECRET_ID,
    SECRET_KEY,
    AsrFake,
    FakeApiError,
    FakeTencentCloud,
    HunyuanFake,
    clear_proxy_env,
    sentence,
    sentences_for,
)

REC_TASK = {
    "EngineModelType": "8k_zh",
    "ChannelNum": 2,
    "ResTextFormat": 2,
    "SourceType": 0,
    "Url": "https://example.com/recordings/call-1.wav",
    "CallbackUrl": "http://127.0.0.1:9/hooks/asr/token",
}
CREDENTIAL = credential.Credential(SECRET_ID, SECRET_KEY)
HELLO = {"Role": "user", "Content": "hi"}


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTencentCloud]:
    clear_proxy_env(monkeypatch)
    with FakeTencentCloud("asr") as fake:
        yield fake


def asr(cloud: FakeTencentCloud, key: str = SECRET_KEY, secret_id: str = SECRET_ID, **profile: Any) -> Any:
    return asr_client.AsrClient(credential.Credential(secret_id, key), "ap-shanghai", cloud.client_profile(**profile))


def create(client: Any, **overrides: Any) -> int:
    request = asr_models.CreateRecTaskRequest()
    request.from_json_string(json.dumps({**REC_TASK, **overrides}))
    return int(client.CreateRecTask(request).Data.TaskId)


def describe(client: Any, task_id: int) -> Any:
    request = asr_models.DescribeTaskStatusRequest()
    request.TaskId = task_id
    return client.DescribeTaskStatus(request).Data


def sdk_error(excinfo: pytest.ExceptionInfo[TencentCloudSDKException]) -> str:
    return str(excinfo.value.get_code())


# ---------------------------------------------------------------- the real SDK is accepted


def test_sdk_create_then_poll_waiting_doing_success(cloud: FakeTencentCloud) -> None:
    fake = AsrFake(cloud)
    client = asr(cloud)
    task_id = create(client)
    assert task_id == 1000000286
    assert [describe(client, task_id).StatusStr for _ in range(2)] == ["waiting", "doing"]
    done = describe(client, task_id)
    assert (done.Status, done.StatusStr, done.AudioDuration) == (2, "success", 8.42)
    assert [(s.SpeakerId, s.StartMs, s.FinalSentence) for s in done.ResultDetail] == [
        (0, 0, "您好，这里是极客职训，请问有什么可以帮您？"),
        (1, 2900, "你好，我想了解一下Python课程，预算两三万。"),
    ]
    assert done.Result.startswith("[0:0.000,0:2.260,0]  您好")
    assert fake.tasks[task_id].polls == 3
    received = cloud.requests_for("CreateRecTask")[0]
    assert received.params == REC_TASK and received.error_code is None
    assert received.headers["X-TC-Version"] == "2019-06-14"


def test_sdk_failed_task(cloud: FakeTencentCloud) -> None:
    AsrFake(cloud, statuses=("waiting", "failed"), error_msg="Failed to download audio file!")
    client = asr(cloud)
    task_id = create(client)
    assert describe(client, task_id).Status == 0
    failed = describe(client, task_id)
    assert (failed.Status, failed.StatusStr, failed.ErrorMsg) == (3, "failed", "Failed to download audio file!")
    assert describe(client, task_id).Status == 3  # the last scripted status sticks


def test_sdk_get_requests_are_verified_too(cloud: FakeTencentCloud) -> None:
    AsrFake(cloud, statuses=("success",))
    task_id = create(asr(cloud))
    assert describe(asr(cloud, method="GET"), task_id).StatusStr == "success"


def test_ccc_and_hunyuan_clients_work_against_their_fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_proxy_env(monkeypatch)
    with FakeTencentCloud("ccc") as ccc:
        cdrs = {"TotalCount": 1, "TelCdrs": [{"SessionId": "s-1", "Direction": 0}]}
        ccc.handle("DescribeTelCdr", lambda params: cdrs)
        client = ccc_client.CccClient(CREDENTIAL, "ap-shanghai", ccc.client_profile())
        request = ccc_models.DescribeTelCdrRequest()
        request.from_json_string(json.dumps({"SdkAppId": 1400000001, "StartTimeStamp": 1, "EndTimeStamp": 2}))
        response = client.DescribeTelCdr(request)
        assert (response.TotalCount, response.TelCdrs[0].SessionId) == (1, "s-1")
    with FakeTencentCloud("hunyuan") as hy:
        HunyuanFake(hy).reply("你好")
        client = hunyuan_client.HunyuanClient(CREDENTIAL, "ap-guangzhou", hy.client_profile())
        request = hunyuan_models.ChatCompletionsRequest()
        request.from_json_string(json.dumps({"Model": "hunyuan-turbos-latest", "Messages": [HELLO]}))
        assert client.ChatCompletions(request).Choices[0].Message.Content == "你好"


# ---------------------------------------------------------------- what the real service rejects


def test_wrong_secret_key_is_a_signature_failure(cloud: FakeTencentCloud) -> None:
    AsrFake(cloud)
    with pytest.raises(TencentCloudSDKException) as excinfo:
        create(asr(cloud, key="not-the-key"))
    assert sdk_error(excinfo) == "AuthFailure.SignatureFailure"
    assert cloud.requests[-1].error_code == "AuthFailure.SignatureFailure"


def test_unknown_secret_id(cloud: FakeTencentCloud) -> None:
    with pytest.raises(TencentCloudSDKException) as excinfo:
        create(asr(cloud, secret_id="AKIDunknown"))
    assert sdk_error(excinfo) == "AuthFailure.SecretIdNotFound"


def test_skewed_timestamp_is_expired(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_proxy_env(monkeypatch)
    with FakeTencentCloud("asr", clock=lambda: time.time() + 301) as skewed:
        AsrFake(skewed)
        with pytest.raises(TencentCloudSDKException) as excinfo:
            create(asr(skewed))
    assert sdk_error(excinfo) == "AuthFailure.SignatureExpire"


def test_another_services_signature_is_rejected(cloud: FakeTencentCloud) -> None:
    client = hunyuan_client.HunyuanClient(CREDENTIAL, "ap-guangzhou", cloud.client_profile())
    request = hunyuan_models.ChatCompletionsRequest()
    request.from_json_string(json.dumps({"Model": "m", "Messages": [HELLO]}))
    with pytest.raises(TencentCloudSDKException) as excinfo:
        client.ChatCompletions(request)
    assert sdk_error(excinfo) == "AuthFailure.SignatureFailure"


def _replay(cloud: FakeTencentCloud, *, body: bytes | None = None, **header_changes: str) -> dict[str, Any]:
    """Re-send the last SDK request byte for byte, optionally tampered with."""
    original = cloud.requests[-1]
    headers = {k: v for k, v in original.headers.items() if k.lower() not in ("content-length", "connection")}
    headers.update(header_changes)
    with httpx.Client(trust_env=False, timeout=5) as client:
        response = client.post(cloud.url, content=original.body if body is None else body, headers=headers)
    assert response.headers["content-type"] == "application/json"  # exactly, or the SDK would not raise
    return dict(response.json()["Response"])


def test_replayed_request_verifies_and_a_tampered_one_does_not(cloud: FakeTencentCloud) -> None:
    AsrFake(cloud)
    create(asr(cloud))
    assert "Error" not in _replay(cloud)  # the fake recomputes the same signature from the same bytes
    tampered_body = cloud.requests[0].body.replace(b"8k_zh", b"8k_en")
    assert _replay(cloud, body=tampered_body)["Error"]["Code"] == "AuthFailure.SignatureFailure"
    timestamp = str(int(cloud.requests[0].headers["X-TC-Timestamp"]) + 1)
    assert _replay(cloud, **{"X-TC-Timestamp": timestamp})["Error"]["Code"] == "AuthFailure.SignatureFailure"
    assert _replay(cloud, Host="example.com")["Error"]["Code"] == "AuthFailure.SignatureFailure"
    assert _replay(cloud, Authorization="Bearer abc")["Error"]["Code"] == "AuthFailure.InvalidAuthorization"


def test_missing_action_or_version_and_unknown_action(cloud: FakeTencentCloud) -> None:
    with httpx.Client(trust_env=False, timeout=5) as client:
        response = client.post(cloud.url, json={}, headers={"X-TC-Version": "2019-06-14"})
        assert response.headers["content-type"] == "application/json"
        assert response.json()["Response"]["Error"]["Code"] == "MissingParameter"
        response = client.post(cloud.url, json={}, headers={"X-TC-Action": "CreateRecTask"})
        assert response.json()["Response"]["Error"]["Code"] == "MissingParameter"
    with pytest.raises(TencentCloudSDKException) as excinfo:
        asr(cloud).call_json("NoSuchAction", {})
    assert sdk_error(excinfo) == "InvalidAction"


# ---------------------------------------------------------------- ASR behaviour


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"EngineModelType": None}, "MissingParameter"),
        ({"ChannelNum": 2, "EngineModelType": "16k_zh"}, "InvalidParameterValue"),
        ({"SourceType": 0, "Url": ""}, "MissingParameter"),
        ({"ResTextFormat": 9}, "InvalidParameterValue"),
        ({"EngineModelType": "zh"}, "InvalidParameterValue"),
        ({"SpeakerDiarization": 1, "SpeakerNumber": 2}, "InvalidParameterValue"),  # two channels: no diarization
        ({"ChannelNum": 1, "EngineModelType": "16k_zh", "SpeakerDiarization": 1, "SpeakerNumber": 2},
         "InvalidParameterValue"),  # 16k engines count the speakers themselves
        ({"ChannelNum": 1, "SpeakerDiarization": 2}, "InvalidParameterValue"),
        ({"ChannelNum": 1, "SpeakerDiarization": 1, "SpeakerNumber": 11}, "InvalidParameterValue"),
    ],
)
def test_create_rec_task_validates_like_the_service(
    cloud: FakeTencentCloud, overrides: dict[str, Any], code: str
) -> None:
    AsrFake(cloud)
    params = {k: v for k, v in {**REC_TASK, **overrides}.items() if v is not None}
    with pytest.raises(TencentCloudSDKException) as excinfo:
        asr(cloud).call_json("CreateRecTask", params)
    assert sdk_error(excinfo) == code


def test_throttling_then_success(cloud: FakeTencentCloud) -> None:
    fake = AsrFake(cloud)
    fake.throttle(2)
    client = asr(cloud)
    for _ in range(2):
        with pytest.raises(TencentCloudSDKException) as excinfo:
            create(client)
        assert sdk_error(excinfo) == "RequestLimitExceeded"
    assert create(client) == 1000000286
    assert [r.error_code for r in cloud.requests_for("CreateRecTask")] == [
        "RequestLimitExceeded",
        "RequestLimitExceeded",
        None,
    ]


def test_5xx_surfaces_as_a_network_error(cloud: FakeTencentCloud) -> None:
    AsrFake(cloud)
    cloud.fail_http(502)
    with pytest.raises(TencentCloudSDKException) as excinfo:
        create(asr(cloud))
    assert sdk_error(excinfo) == "ServerNetworkError"
    assert create(asr(cloud)) == 1000000286


def test_unknown_task_and_crashing_handler(cloud: FakeTencentCloud) -> None:
    AsrFake(cloud)
    with pytest.raises(TencentCloudSDKException) as excinfo:
        describe(asr(cloud), 42)
    assert sdk_error(excinfo) == "FailedOperation.NoSuchTask"

    def broken(params: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("oops")

    cloud.handle("DescribeTaskStatus", broken)
    with pytest.raises(TencentCloudSDKException) as excinfo:
        describe(asr(cloud), 42)
    assert sdk_error(excinfo) == "InternalError"


def test_callback_is_form_encoded_with_result_detail_as_a_json_string(cloud: FakeTencentCloud) -> None:
    fake = AsrFake(cloud)
    task_id = create(asr(cloud))
    seen: list[httpx.Request] = []

    def hub(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"code": 0, "message": "success"})

    with httpx.Client(transport=httpx.MockTransport(hub)) as client:
        response = fake.post_callback(task_id, client=client)
    assert response.json() == {"code": 0, "message": "success"}
    (request,) = seen
    assert str(request.url) == REC_TASK["CallbackUrl"]
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    form = dict(httpx.QueryParams(request.content.decode()))
    assert (form["code"], form["requestId"], form["audioUrl"]) == ("0", str(task_id), REC_TASK["Url"])
    assert [s["SpeakerId"] for s in json.loads(form["resultDetail"])] == [0, 1]


def test_failed_callback_carries_the_failure_code(cloud: FakeTencentCloud) -> None:
    fake = AsrFake(cloud, statuses=("failed",), failure_code=10002, error_msg="audio too short")
    task_id = create(asr(cloud), ResTextFormat=0)
    form = fake.callback_form(task_id)
    assert (form["code"], form["message"], "resultDetail" in form) == ("10002", "audio too short", False)


def test_transcript_channels_follow_the_call_direction() -> None:
    lines = [{"speaker": "agent", "start_ms": 0, "end_ms": 900, "text": "您好"}]
    assert sentences_for(lines, "outbound")[0]["SpeakerId"] == 0
    assert sentences_for(lines, "inbound")[0]["SpeakerId"] == 1
    assert sentence(1, 0, 1000, "好的")["WordsNum"] == 2


def test_scripting_errors() -> None:
    with pytest.raises(ValueError, match="statuses"):
        AsrFake(FakeTencentCloud("asr"), statuses=("finished",))
    assert FakeApiError("InvalidParameter").message == "InvalidParameter"
    with pytest.raises(RuntimeError, match="not started"):
        _ = FakeTencentCloud("asr").endpoint
