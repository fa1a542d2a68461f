"""Demo traffic: 张伟 fills a Xiaohongshu lead form with the phone he gave on Douyin; a second lead too."""

from __future__ import annotations

import json
from typing import Any

from hub.demo import DemoRequest, DemoSource

from .connector import signature

TOKEN = "demo-xhs-landing-token-0001"
LANDING = ("https://www.xiaohongshu.com/landing/6601a2b3c4d5?utm_source=xiaohongshu&utm_medium=feed"
           "&utm_campaign=spring2026-python")


def _push(leads_id: str, when: str, answers: list[tuple[str, str]], keyword: str | None) -> dict[str, Any]:
    return {
        "timestamp": 0, "source": "juguang",
        "data": {
            "landing_page_id": 6601230045, "url": LANDING, "submitted_time": when, "source_channel": "信息流",
            "account_id": "5f8a0c3d000000000101", "account_name": "码上学教育",
            "campaign_id": 20260301, "campaign_name": "spring2026-python", "unit_id": 30260301,
            "unit_name": "一线城市-职场转行", "creative_id": 40260301, "leads_id": leads_id, "keyword": keyword,
            "data": [{"label": label, "value": value} for label, value in answers],
        },
    }


def _request(doc: dict[str, Any], order: float) -> DemoRequest:
    body = json.dumps(doc, ensure_ascii=False).encode()
    return DemoRequest(body, {"content-type": "application/json", "x-red-signature": signature(TOKEN.encode(), body)},
                       order=order)


def _requests() -> list[DemoRequest]:
    zhang = _push("LD20260303100500001", "2026-03-03 10:05:12",
                  [("姓名", "张伟"), ("手机号", "13800138000"), ("微信号", "zhangwei_88"), ("所在城市", "上海"),
                   ("想学的课程", "Python 就业班")], keyword="python培训")
    li = _push("LD20260303113000002", "2026-03-03 11:30:45",
               [("姓名", "李娜"), ("电话", "139 1234 5678"), ("邮箱", "LiNa@Example.cn"),
                ("公司", "上海云杉科技有限公司")],
               keyword=None)
    return [_request(zhang, 20), _request(li, 21)]


def demo_sources() -> list[DemoSource]:
    return [DemoSource("xiaohongshu", "demo-xiaohongshu", {"token": TOKEN, "label_map": {"想学的课程": "message"}},
                       _requests)]
