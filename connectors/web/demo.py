"""Demo traffic: a visitor arriving from a Douyin ad, browsing, then leaving a phone number."""

from __future__ import annotations

import base64
import json

from hub.demo import DemoRequest, DemoSource

WRITE_KEY = "demo-write-key-0001"


def _auth() -> dict[str, str]:
    token = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    return {"authorization": f"Basic {token}", "content-type": "application/json"}


def _requests() -> list[DemoRequest]:
    landing = "https://edu.example.cn/python?utm_source=douyin&utm_medium=live&utm_campaign=spring2026&clickid=EQA1b2"
    batch = {
        "batch": [
            {"type": "page", "messageId": "demo-web-1", "anonymousId": "anon-7f3a", "name": "Python 课程",
             "timestamp": "2026-03-02T20:15:00+08:00", "context": {"page": {"url": landing, "title": "Python 就业班"}}},
            {"type": "track", "messageId": "demo-web-2", "anonymousId": "anon-7f3a", "event": "Price Viewed",
             "properties": {"course": "Python 就业班", "price": 12800}, "timestamp": "2026-03-02T20:17:10+08:00",
             "context": {"page": {"url": landing}}},
        ]
    }
    identify = {"type": "identify", "messageId": "demo-web-3", "anonymousId": "anon-7f3a", "userId": "u-10086",
                "traits": {"name": "张伟", "phone": "138 0013 8000", "email": "ZhangWei@Example.cn"},
                "timestamp": "2026-03-02T20:19:30+08:00"}
    return [
        DemoRequest(json.dumps(batch, ensure_ascii=False).encode(), _auth(), path="v1/batch", order=10),
        DemoRequest(json.dumps(identify, ensure_ascii=False).encode(), _auth(), path="v1/identify", order=11),
    ]


def demo_sources() -> list[DemoSource]:
    return [DemoSource("web", "demo-website", {"write_key": WRITE_KEY}, _requests)]
