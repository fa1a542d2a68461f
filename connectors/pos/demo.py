"""Demo traffic: 张伟 joins the member programme at a store and buys a course package with his card."""

from __future__ import annotations

import json
from typing import Any

from hub import push
from hub.demo import DemoRequest, DemoSource

SECRET = "demo-pos-secret-0001"


def signed(payload: Any, secret: str = SECRET) -> DemoRequest:
    body = json.dumps(payload, ensure_ascii=False).encode()
    return DemoRequest(body, {"content-type": "application/json", push.SIGNATURE_HEADER: push.sign(body, secret)})


def _requests() -> list[DemoRequest]:
    member = {"event_id": "pos-demo-1001", "type": "member.updated", "store_id": "SZ-NS-01",
              "member_card_no": "M20260001", "phone": "13800138000", "name": "张伟", "level": "silver",
              "paid_at": "2026-03-05 11:58:00"}
    purchase = [{"event_id": "pos-demo-1002", "type": "purchase", "store_id": "SZ-NS-01",
                 "member_card_no": "M20260001", "phone": "13800138000", "order_no": "POS-20260305-0042",
                 "amount": "12,800.00", "currency": "CNY",
                 "items": [{"sku": "PY-JOB-01", "name": "Python 就业班", "qty": 1, "price": "12800.00"}],
                 "paid_at": "2026-03-05 12:03:41"},
                {"event_id": "pos-demo-1003", "type": "purchase", "store_id": "SZ-NS-01",
                 "member_card_no": "M20260001", "order_no": "POS-20260305-0043", "amount": 68,
                 "items": [{"sku": "BOOK-PY", "name": "Python 编程：从入门到实践", "qty": 1, "price": 68}],
                 "paid_at": "2026-03-05 12:05:10"}]
    requests = [signed(member), signed(purchase)]
    for order, request in zip((50, 51), requests, strict=True):
        request.order = order
    return requests


def demo_sources() -> list[DemoSource]:
    return [DemoSource("pos", "demo-pos", {"secret": SECRET}, _requests)]
