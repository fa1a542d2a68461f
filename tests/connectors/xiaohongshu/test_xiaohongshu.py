"""Xiaohongshu lead mapping, label map, signature and one end-to-end run over HTTP."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from connectors.xiaohongshu import XiaohongshuConnector
from hub.connector import ParseContext
from hub.errors import QuarantineError, VerificationError
from hub.runtime import Hub
from hub.schemas import EventDraft, utcnow
from tests.connectors.xiaohongshu.acceptance import CONFIG, FIXTURES, sign
from tests.helpers import add_source, client_for, count_events, wait_processed

connector = XiaohongshuConnector()
CST = timezone(timedelta(hours=8))


class _State:
    def get(self, key: str) -> None:
        return None

    def set(self, key: str, value: object) -> None:
        pass


def parse_body(body: bytes, config: dict[str, object] = CONFIG) -> EventDraft:
    cfg = connector.validate_config(config)
    [draft] = connector.parse(sign(body, CONFIG), cfg, ParseContext(uuid.uuid4(), "xhs", utcnow(), _State()))
    return draft


def test_lead_push_becomes_lead_submitted() -> None:
    draft = parse_body((FIXTURES / "lead_push.json").read_bytes())
    assert draft.type == "lead.submitted" and draft.source_event_id == "lead:LD20260303100500001"
    assert [(i.type, i.value) for i in draft.identities] == [("phone", "13800138000")]
    assert draft.traits == {"name": "张伟", "city": "上海", "wechat": "zhangwei_88", "gender": "男"}
    assert draft.occurred_at == datetime(2026, 3, 3, 10, 5, 12, tzinfo=CST)
    assert draft.properties["answers"][-1] == {"label": "想学的课程", "value": "Python 就业班"}
    assert draft.properties["form"]["wechat"] == "zhangwei_88"


def test_a_year_one_submitted_time_reaches_the_pipeline_instead_of_raising() -> None:
    """`0001-01-01 00:00:00` cannot convert to UTC; it used to raise OverflowError and fail the request."""
    push = json.loads((FIXTURES / "lead_push.json").read_bytes())
    push["data"]["submitted_time"] = "0001-01-01 00:00:00"
    draft = parse_body(json.dumps(push).encode())
    assert draft.occurred_at.year == 1  # the pipeline replaces it with the received time, as invalid_time


def test_campaign_merges_explicit_ids_with_the_landing_url() -> None:
    campaign = parse_body((FIXTURES / "lead_push.json").read_bytes()).campaign
    assert campaign is not None
    # explicit values win; the URL fills what the push lacks (utm_content) and is kept whole
    assert (campaign.source, campaign.medium, campaign.name, campaign.term) == (
        "xiaohongshu", "信息流", "spring2026-python", "python培训")
    assert campaign.content == "一线城市-职场转行"
    assert campaign.landing_url and campaign.landing_url.endswith("utm_content=video-a")
    assert campaign.ad_ids == {"account_id": "5f8a0c3d000000000101", "campaign_id": "20260301",
                               "unit_id": "30260301", "creative_id": "40260301", "landing_page_id": "6601230045"}


def test_decorated_labels_multi_choice_and_click_id() -> None:
    draft = parse_body((FIXTURES / "lead_push_email_search.json").read_bytes())
    assert [(i.type, i.value) for i in draft.identities] == [("email", "LiNa@Example.cn")]
    assert draft.traits == {"name": "李娜", "company": "上海云杉科技有限公司"}
    assert draft.properties["answers"][-1]["value"] == "数据分析、机器学习"
    assert draft.campaign is not None and draft.campaign.name == "20260302"
    assert (draft.campaign.click_id, draft.campaign.network) == ("nHRvn1DkPHcz", "baidu")
    assert draft.campaign.source == "xiaohongshu" and "source" not in draft.campaign.inferred


def test_label_map_overrides_the_default() -> None:
    doc = json.loads((FIXTURES / "lead_push.json").read_bytes())
    doc["data"]["data"] = [{"label": "联系号码", "value": "13900001111"}, {"label": "城市", "value": "杭州"}]
    body = json.dumps(doc, ensure_ascii=False).encode()
    with pytest.raises(QuarantineError) as err:
        parse_body(body)
    assert err.value.reason == "missing_identity" and "联系号码" in err.value.message
    draft = parse_body(body, {**CONFIG, "label_map": {"联系号码": "phone", "城市": "company"}})
    assert [(i.type, i.value) for i in draft.identities] == [("phone", "13900001111")]
    assert draft.traits == {"company": "杭州"}


def test_signature_is_hmac_sha1_and_plain_sha1_is_logged_not_accepted(caplog: pytest.LogCaptureFixture) -> None:
    cfg = connector.validate_config(CONFIG)
    body = (FIXTURES / "lead_push.json").read_bytes()
    connector.verify(sign(body, CONFIG), cfg)
    plain = "sha1=" + hashlib.sha1(CONFIG["token"].encode() + body).hexdigest()
    with caplog.at_level(logging.WARNING), pytest.raises(VerificationError):
        connector.verify(replace(sign(body, CONFIG), headers={"x-red-signature": plain}), cfg)
    assert "plain sha1" in caplog.text and "accept_plain_sha1" in caplog.text
    for header in ({}, {"x-red-signature": "md5=abc"}, {"x-red-signature": "deadbeef"}):
        with pytest.raises(VerificationError):
            connector.verify(replace(sign(body, CONFIG), headers=header), cfg)


def test_a_source_may_opt_in_to_the_plain_sha1_form_and_still_needs_the_token() -> None:
    cfg = connector.validate_config({**CONFIG, "accept_plain_sha1": True})
    body = (FIXTURES / "lead_push.json").read_bytes()
    plain = "sha1=" + hashlib.sha1(CONFIG["token"].encode() + body).hexdigest()
    connector.verify(replace(sign(body, CONFIG), headers={"x-red-signature": plain}), cfg)
    connector.verify(sign(body, CONFIG), cfg)  # HMAC-SHA1 as well
    forged = "sha1=" + hashlib.sha1(b"another-token" + body).hexdigest()
    with pytest.raises(VerificationError):
        connector.verify(replace(sign(body, CONFIG), headers={"x-red-signature": forged}), cfg)


def test_dedup_on_leads_id() -> None:
    cfg = connector.validate_config(CONFIG)
    body = (FIXTURES / "lead_push.json").read_bytes()
    assert connector.dedup_key(sign(body, CONFIG), cfg) == "lead:LD20260303100500001"


def test_end_to_end_over_http(hub: Hub) -> None:
    client = client_for(hub)
    source_id = add_source(client, "xiaohongshu", "brand-xhs", CONFIG)
    body = (FIXTURES / "lead_push.json").read_bytes()
    headers = dict(sign(body, CONFIG).headers)
    resp = client.post(f"/hooks/{source_id}", content=body, headers=headers)
    assert resp.status_code == 200 and resp.json() == {"accepted": 1, "duplicates": 0}
    assert client.post(f"/hooks/{source_id}", content=body, headers=headers).json() == {"accepted": 0, "duplicates": 1}
    bad = client.post(f"/hooks/{source_id}", content=body, headers={**headers, "x-red-signature": "sha1=" + "0" * 40})
    assert bad.status_code == 401
    wait_processed(hub)
    assert count_events(hub, source="xiaohongshu", type="lead.submitted") == 1
