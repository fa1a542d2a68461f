"""HunyuanExtractor through the real SDK against the local fake Tencent Cloud server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

from enrichment.summary import CallSummary, ExtractionError, Extractor, HunyuanExtractor, Lexicons, TranscriptLine
from enrichment.summary.llm import parse_reply, system_prompt
from tests.fakes.tencent_cloud import SECRET_ID, SECRET_KEY, FakeTencentCloud, HunyuanFake, clear_proxy_env

LINES = [
    TranscriptLine(speaker="agent", start_ms=0, end_ms=2000, text="您好，极客职训，请问有什么可以帮您？"),
    TranscriptLine(speaker="customer", start_ms=2500, end_ms=6000, text="我想了解Python课程，预算两三万，我自己定。"),
]
GOOD = {
    "course": "Python",
    "budget": {"min": 20000, "max": 30000, "currency": "CNY", "text": "两三万"},
    "decision_role": "本人决策",
    "competitors": ["达内"],
}


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTencentCloud]:
    clear_proxy_env(monkeypatch)
    with FakeTencentCloud("hunyuan") as fake:
        yield fake


@pytest.fixture
def hunyuan(cloud: FakeTencentCloud) -> HunyuanFake:
    return HunyuanFake(cloud)


def extractor(cloud: FakeTencentCloud, key: str = SECRET_KEY) -> HunyuanExtractor:
    return HunyuanExtractor(SECRET_ID, key, "ap-guangzhou", endpoint=cloud.endpoint, protocol="http", timeout_s=5)


def test_good_json_becomes_a_call_summary(cloud: FakeTencentCloud, hunyuan: HunyuanFake) -> None:
    hunyuan.reply(json.dumps(GOOD, ensure_ascii=False))
    result = extractor(cloud).extract(LINES, Lexicons())
    assert result == CallSummary.model_validate(GOOD)
    (params,) = hunyuan.calls
    assert (params["Model"], params["Temperature"], params["Stream"]) == ("hunyuan-turbos-latest", 0, False)
    system, user = params["Messages"]
    assert system["Role"] == "system" and "JSON Schema" in system["Content"]
    assert '"decision_role"' in system["Content"] and "新东方" in system["Content"]
    assert user["Content"] == "\n".join(
        ["坐席：您好，极客职训，请问有什么可以帮您？", "客户：我想了解Python课程，预算两三万，我自己定。"]
    )


def test_fenced_json_and_surrounding_prose_are_tolerated(cloud: FakeTencentCloud, hunyuan: HunyuanFake) -> None:
    body = json.dumps(GOOD, ensure_ascii=False, indent=2)
    hunyuan.reply(f"```json\n{body}\n```", f"以下是提取结果：\n{body}\n希望对您有帮助。")
    ex = extractor(cloud)
    assert ex.extract(LINES, Lexicons()).course == "Python"
    assert ex.extract(LINES, Lexicons()).budget is not None


def test_names_are_normalised_to_the_lexicon(cloud: FakeTencentCloud, hunyuan: HunyuanFake) -> None:
    reply = {**GOOD, "course": "python", "competitors": ["传智播客", "黑马", "达内"]}
    hunyuan.reply(json.dumps(reply, ensure_ascii=False))
    result = extractor(cloud).extract(LINES, Lexicons())
    assert (result.course, result.competitors) == ("Python", ["黑马程序员", "达内"])


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ("对不起，我无法处理这个请求。", "not JSON"),
        ('{"course": "Python", "budget": {"min": 1}', "not JSON"),
        ('["Python"]', "not an object"),
        ('{"course": "Python", "budget": {"min": "很多", "max": null, "text": "很多"}}', "budget.min"),
        ('{"course": "Python", "budget": {"min": 1, "max": 2}, "competitors": []}', "budget.text"),
        ('{"course": null, "budget": {"min": 9, "max": 2, "text": "x"}, "competitors": []}', "min must not exceed"),
        ('{"course": "Python", "competitors": "达内"}', "competitors"),
        ("   ", "no message content"),
    ],
)
def test_invalid_replies_raise_extraction_error(
    cloud: FakeTencentCloud, hunyuan: HunyuanFake, reply: str, message: str
) -> None:
    hunyuan.reply(reply)
    with pytest.raises(ExtractionError, match=message) as excinfo:
        extractor(cloud).extract(LINES, Lexicons())
    assert excinfo.value.raw == ("" if not reply.strip() else reply)


def test_wrong_secret_key_raises_the_sdks_auth_failure(cloud: FakeTencentCloud, hunyuan: HunyuanFake) -> None:
    hunyuan.reply(json.dumps(GOOD))
    with pytest.raises(TencentCloudSDKException) as excinfo:
        extractor(cloud, key="wrong-key").extract(LINES, Lexicons())
    assert excinfo.value.get_code() == "AuthFailure.SignatureFailure"
    assert hunyuan.calls == []


def test_throttling_is_left_to_the_caller(cloud: FakeTencentCloud, hunyuan: HunyuanFake) -> None:
    cloud.fail_next("LimitExceeded", "并发超限")
    with pytest.raises(TencentCloudSDKException) as excinfo:
        extractor(cloud).extract(LINES, Lexicons())
    assert excinfo.value.get_code() == "LimitExceeded"


def test_parse_reply_directly() -> None:
    assert parse_reply('```\n{"course": null, "budget": null, "decision_role": null, "competitors": []}\n```') == (
        CallSummary()
    )


def test_is_an_extractor() -> None:
    assert isinstance(HunyuanExtractor("id", "key"), Extractor)


@pytest.mark.parametrize("currency", ["CNY", "人民币", "RMB", "rmb", "元", None])
def test_a_budget_in_yuan_however_the_model_writes_it_is_cny(currency: str | None) -> None:
    reply = {**GOOD, "budget": {"min": 20000, "max": 30000, "currency": currency, "text": "两三万"}}
    budget = parse_reply(json.dumps(reply, ensure_ascii=False)).budget
    assert budget is not None and budget.currency == "CNY"  # contract §5 publishes "currency": "CNY"


def test_a_budget_in_another_currency_is_not_a_valid_reply() -> None:
    reply = {**GOOD, "budget": {"min": 20000, "max": 30000, "currency": "USD", "text": "两三万"}}
    with pytest.raises(ExtractionError, match="budget.currency"):
        parse_reply(json.dumps(reply))
    assert '"const": "CNY"' in system_prompt(Lexicons())  # and the model is told so
