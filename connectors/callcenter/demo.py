"""Demo traffic: 张伟 calls the school's 400 line; TCCC pushes the CDR and both legs' recordings."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from hub.demo import DemoRequest, DemoSource
from hub.values import CHINA_TZ

USERNAME = "tccc-push"
PASSWORD = "demo-tccc-password"
OWN_LINE = "4008001234"
SDK_APP_ID = 1400000001
SESSION = "a1b2c3d4-5e6f-4a7b-8c9d-0e1f2a3b4c5d"


def _ts(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=CHINA_TZ).timestamp())


def push(payload: dict[str, Any], action: str, push_uuid: str) -> DemoRequest:
    token = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    headers = {"authorization": f"Basic {token}", "content-type": "application/json;charset=utf8",
               "x-tccc-push-uuid": push_uuid}
    body = json.dumps(payload, ensure_ascii=False).encode()
    return DemoRequest(body, headers, query={"action": action, "version": "1"})


def _requests() -> list[DemoRequest]:
    cdr = {"SdkAppId": SDK_APP_ID, "SessionId": SESSION, "Caller": "13800138000", "Callee": OWN_LINE,
           "Direction": 0, "CallType": 2, "Time": _ts("2026-03-03 10:05:00"),
           "StartTimestamp": _ts("2026-03-03 10:05:00"), "RingTimestamp": _ts("2026-03-03 10:05:12"),
           "AcceptTimestamp": _ts("2026-03-03 10:05:16"), "EndedTimestamp": _ts("2026-03-03 10:11:40"),
           "Duration": 384, "IVRDuration": 12, "EndStatus": 1, "EndStatusString": "ok",
           "SeatUser": {"Mail": "li.na@edu.example.cn", "Name": "李娜", "StaffNumber": "1001"},
           "SkillGroup": "课程咨询", "HungUpSide": "user",
           "CallerLocation": "广东深圳", "RecordURL": "https://ccc.example.cn/rec/a1b2c3d4.mp3"}
    customer_leg = {"SdkAppId": SDK_APP_ID, "SessionId": SESSION, "RecordId": "rec-7001",
                    "Timestamp": _ts("2026-03-03 10:11:45"), "EndpointUser": "13800138000",
                    "RecordURL": "https://ccc.example.cn/rec/a1b2c3d4-user.mp3"}
    agent_leg = {**customer_leg, "RecordId": "rec-7002", "EndpointUser": "li.na@edu.example.cn",
                 "RecordURL": "https://ccc.example.cn/rec/a1b2c3d4-seat.mp3"}
    requests = [push(cdr, "cdr", "9f0e6c1a-0001"), push(customer_leg, "record", "9f0e6c1a-0002"),
                push(agent_leg, "record", "9f0e6c1a-0003")]
    for order, request in zip((40, 41, 42), requests, strict=True):
        request.order = order
    return requests


def demo_sources() -> list[DemoSource]:
    config = {"vendor": "tccc", "username": USERNAME, "password": PASSWORD, "own_numbers": [OWN_LINE]}
    return [DemoSource("callcenter", "demo-callcenter", config, _requests)]
