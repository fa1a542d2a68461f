"""From a call-centre push to `call.summarized`: channel roles, per-source lexicons, pluggable extractors."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import select

from enrichment.models import AsrJob
from enrichment.summarize import make_lexicons, summarise
from enrichment.summary import CallSummary, TranscriptLine
from hub import Connector, hookimpl
from hub.models import EventRow
from hub.plugins import make_plugin_manager
from hub.runtime import Hub, set_hub
from tests.conftest import make_settings
from tests.enrichment.conftest import build_hub, call_draft, store_call
from tests.fakes.tencent_cloud import (
    SECRET_ID,
    SECRET_KEY,
    AsrFake,
    FakeTencentCloud,
    HunyuanFake,
    clear_proxy_env,
    sentence,
)
from tests.helpers import add_source, basic, client_for, wait_processed

CALLCENTER_FIXTURE = Path(__file__).parents[1] / "connectors" / "callcenter" / "fixtures" / "cdr_inbound.json"
# Channel 0 = the customer on this inbound call.
CALL = [
    sentence(1, 0, 2100, "您好，极客职训课程顾问小李。"),
    sentence(0, 2400, 6900, "你好，我想报数据分析的课，之前也看过极客大学，不过没考虑过新东方。"),
    sentence(1, 7200, 9800, "我们这个班学费是一万二。"),
    sentence(0, 10100, 14000, "我预算大概一万左右吧，这个我得问问我老公。"),
]


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTencentCloud]:
    clear_proxy_env(monkeypatch)
    with FakeTencentCloud("asr") as fake:
        yield fake


def _hub(tmp_path: Path, cloud: FakeTencentCloud, plugins: Sequence[object] = (), **extra: Any) -> Hub:
    hub = build_hub(tmp_path, plugins, tencentcloud_secret_id=SECRET_ID, tencentcloud_secret_key=SECRET_KEY,
                    asr_endpoint=cloud.endpoint, asr_protocol="http", **extra)
    hub.start()
    return hub


def _close(hub: Hub) -> None:
    hub.stop()
    hub.engine.dispose()
    set_hub(None)


def _finish(hub: Hub) -> dict[str, Any]:
    """Run submit and every poll (skipping waits); the stored call.summarized event's data."""
    for _ in range(10):
        wait_processed(hub)
        with hub.sessions() as s:
            row = s.scalars(select(EventRow).where(EventRow.type == "call.summarized")).first()
            states = list(s.scalars(select(AsrJob.state)))
        if row is not None:
            return row.data
        assert "failed" not in states and "quarantined" not in states, states
        hub.runner.run_due_timers()
    raise AssertionError(f"no call.summarized; jobs: {states}")


def test_callcenter_push_to_summary_with_channel_override(tmp_path: Path, cloud: FakeTencentCloud) -> None:
    pytest.importorskip("connectors.callcenter")
    # The source overrides contract §10: on its inbound calls channel 0 is the agent.
    flipped = [{**line, "SpeakerId": 1 - line["SpeakerId"]} for line in CALL]
    asr = AsrFake(cloud, statuses=("doing", "success"), sentences=flipped)
    hub = build_hub(tmp_path, plugins="identity,webhooks,enrichment,callcenter", tencentcloud_secret_id=SECRET_ID,
                    tencentcloud_secret_key=SECRET_KEY, asr_endpoint=cloud.endpoint, asr_protocol="http")
    hub.start()
    try:
        client = client_for(hub)
        config = {"vendor": "tccc", "username": "tccc-push", "password": "tccc-password-01",
                  "own_numbers": ["4008001234"], "channel_roles": {"inbound": ["agent", "customer"]}}
        source_id = add_source(client, "callcenter", "tccc", config)
        body = CALLCENTER_FIXTURE.read_bytes()
        resp = client.post(f"/hooks/{source_id}", params={"action": "cdr", "version": "1"}, content=body,
                           headers={**basic("tccc-push", "tccc-password-01"), "content-type": "application/json",
                                    "x-tccc-push-uuid": "push-1"})
        assert resp.status_code == 200, resp.text
        data = _finish(hub)
        [task] = asr.tasks.values()
        assert task.params["Url"] == "https://ccc.example.cn/rec/fix-1111.mp3"
        props = data["properties"]
        assert [line["speaker"] for line in props["transcript"]] == ["agent", "customer", "agent", "customer"]
        summary = props["summary"]
        assert summary["course"] == "数据分析"
        assert summary["budget"]["min"] == pytest.approx(10000, rel=0.05)  # not the agent's 一万二 quote
        assert summary["budget"]["max"] == pytest.approx(10000, rel=0.05)
        assert summary["decision_role"] is not None and "新东方" not in summary["competitors"]
        with hub.sessions() as s:
            call = s.scalars(select(EventRow).where(EventRow.type == "call.completed")).one()
        assert props["call_event_id"] == str(call.id)
        assert data["customer_id"] == str(call.customer_id)
        assert {"type": "phone", "value": "+8613800138000"} in data["identities"]
    finally:
        _close(hub)


class PbxConfig(BaseModel):
    channel_roles: dict[str, list[str]] | None = None
    lexicons: dict[str, Any] | None = None


class Pbx(Connector):
    """A minimal call source whose config carries `channel_roles` and `lexicons`."""

    name = "pbx"
    title = "Test PBX"
    config_model = PbxConfig


class PbxPlugin:
    @hookimpl
    def register_connectors(self, register: Callable[[Connector], None]) -> None:
        register(Pbx())


def test_source_config_roles_and_lexicons(tmp_path: Path, cloud: FakeTencentCloud) -> None:
    AsrFake(cloud, statuses=("success",), sentences=[
        sentence(0, 0, 2000, "您好，我是顾问。"),  # the source says channel 0 is the agent, even inbound
        sentence(1, 2100, 6000, "我在对比星辰学苑和你们的课程。"),
    ])
    hub = _hub(tmp_path, cloud, [PbxPlugin()])
    try:
        source_id = add_source(client_for(hub), "pbx", "pbx", {
            "channel_roles": {"inbound": ["agent", "customer"]},
            "lexicons": {"competitors": ["星辰学苑"]},
        })
        store_call(hub, call_draft(direction="inbound"), source_id=uuid.UUID(source_id))
        props = _finish(hub)["properties"]
        assert [line["speaker"] for line in props["transcript"]] == ["agent", "customer"]
        assert "星辰学苑" in props["summary"]["competitors"]
        assert props["extractor"] == "rules"
    finally:
        _close(hub)


def test_hunyuan_extractor_by_setting_and_fallback(tmp_path: Path, cloud: FakeTencentCloud) -> None:
    AsrFake(cloud, statuses=("success",), sentences=CALL)
    with FakeTencentCloud("hunyuan") as llm:
        hunyuan = HunyuanFake(llm)
        hunyuan.reply(json.dumps({"course": "数据分析", "budget": {"min": 9000, "max": 11000, "currency": "CNY",
                                                                   "text": "一万左右"},
                                  "decision_role": "配偶", "competitors": ["极客大学"]}, ensure_ascii=False),
                      "这不是JSON")
        hub = _hub(tmp_path, cloud, summary_extractor="hunyuan", hunyuan_endpoint=llm.endpoint)
        try:
            store_call(hub, call_draft())
            props = _finish(hub)["properties"]
            assert props["extractor"] == "hunyuan" and props["summary"]["decision_role"] == "配偶"
            assert props["summary"]["budget"]["min"] == 9000 and len(hunyuan.calls) == 1
            store_call(hub, call_draft())  # the second reply is not JSON: the rules answer instead
            for _ in range(10):
                wait_processed(hub)
                hub.runner.run_due_timers()
            with hub.sessions() as s:
                rows = list(s.scalars(select(EventRow).where(EventRow.type == "call.summarized")
                                      .order_by(EventRow.seq)))
            second = rows[1].data
            assert second["properties"]["extractor"] == "rules"
            assert second["properties"]["summary"]["course"] == "数据分析"
            assert [i["code"] for i in second["quality"]["issues"]] == ["extractor_fallback"]
        finally:
            _close(hub)


class FixedExtractor:
    def extract(self, lines: list[TranscriptLine], lexicons: Any) -> CallSummary:
        return CallSummary(course=f"{len(lines)} lines", competitors=["插件"])


class ExtractorPlugin:
    @hookimpl
    def register_extractors(self, register: Callable[[str, Callable[[Any], Any]], None]) -> None:
        register("rules", lambda settings: FixedExtractor())


def test_hook_register_extractors(tmp_path: Path, cloud: FakeTencentCloud) -> None:
    AsrFake(cloud, statuses=("success",), sentences=CALL)
    hub = _hub(tmp_path, cloud, [ExtractorPlugin()])
    try:
        store_call(hub, call_draft())
        summary = _finish(hub)["properties"]["summary"]
        assert summary == {"course": "4 lines", "budget": None, "decision_role": None, "competitors": ["插件"]}
    finally:
        _close(hub)


class BrokenExtractor:
    def extract(self, lines: list[TranscriptLine], lexicons: Any) -> CallSummary:
        raise RuntimeError("extractor bug")


class BrokenRulesPlugin:
    @hookimpl
    def register_extractors(self, register: Callable[[str, Callable[[Any], Any]], None]) -> None:
        register("rules", lambda settings: BrokenExtractor())


def test_an_extractor_that_fails_with_nothing_to_fall_back_on_keeps_the_transcript(
    tmp_path: Path, cloud: FakeTencentCloud
) -> None:
    # The default extractor raising used to leave the job `submitted`, polled by every sweep until Tencent
    # dropped the result: the transcript was lost with the facts.
    AsrFake(cloud, statuses=("success",), sentences=CALL)
    hub = _hub(tmp_path, cloud, [BrokenRulesPlugin()])
    try:
        store_call(hub, call_draft())
        data = _finish(hub)
        props = data["properties"]
        assert props["summary"] == {"course": None, "budget": None, "decision_role": None, "competitors": []}
        assert len(props["transcript"]) == len(CALL)
        assert [i["code"] for i in data["quality"]["issues"]] == ["extractor_failed"]
        with hub.sessions() as s:
            assert list(s.scalars(select(AsrJob.state))) == ["done"]
    finally:
        _close(hub)


class LooseExtractor:
    """A plugin extractor answering with a plain dict, currency spelt its own way."""

    def __init__(self, currency: str) -> None:
        self.currency = currency

    def extract(self, lines: list[TranscriptLine], lexicons: Any) -> dict[str, Any]:
        return {"course": "Python", "budget": {"min": 1000, "max": 2000, "currency": self.currency, "text": "一两千"},
                "decision_role": None, "competitors": []}


class LoosePlugin:
    def __init__(self, currency: str) -> None:
        self.currency = currency

    @hookimpl
    def register_extractors(self, register: Callable[[str, Callable[[Any], Any]], None]) -> None:
        register("loose", lambda settings: LooseExtractor(self.currency))


@pytest.mark.parametrize(("currency", "expected", "issues"), [("RMB", "CNY", []),
                                                              ("USD", None, ["extractor_fallback"])])
def test_a_plugin_budget_is_cny_or_the_rules_answer(
    tmp_path: Path, currency: str, expected: str | None, issues: list[str]
) -> None:
    pm = make_plugin_manager()
    pm.register(LoosePlugin(currency))
    line = {"speaker": "customer", "start_ms": 0, "end_ms": 1000, "text": "我想学Python。"}
    summary, name, found = summarise(pm, make_settings(tmp_path, summary_extractor="loose"), [line], make_lexicons({}))
    assert [i.code for i in found] == issues
    if expected is None:  # contract §5's budget is CNY: another currency is a failed extraction
        assert name == "rules" and summary["budget"] is None
    else:
        assert name == "loose" and summary["budget"]["currency"] == expected
