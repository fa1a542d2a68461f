"""Demo traffic: 张伟's company (腾讯科技（深圳）, valid USCC) orders in the ERP, then moves the contract date."""

from __future__ import annotations

import json
from typing import Any

from hub import push
from hub.demo import DemoRequest, DemoSource

SECRET = "demo-erp-secret-0001"
COMPANY = {"customer_code": "C-SZ-0088", "customer_name": "腾讯科技（深圳）有限公司", "uscc": "9144030071526726XG",
           "contact_name": "张伟", "contact_phone": "13800138000"}


def signed(payload: Any, secret: str = SECRET) -> DemoRequest:
    body = json.dumps(payload, ensure_ascii=False).encode()
    return DemoRequest(body, {"content-type": "application/json", push.SIGNATURE_HEADER: push.sign(body, secret)})


def _requests() -> list[DemoRequest]:
    created = {"event_id": "erp-demo-2001", "type": "order.created", "order_no": "SO-2026-000318",
               "order_type": "formal", "amount": "256000.00", "currency": "CNY", "contract_date": "2026-03-20",
               "updated_at": "2026-03-09 10:12:00", **COMPANY}
    updated = {**created, "event_id": "erp-demo-2002", "type": "order.updated", "contract_date": "2026-03-31",
               "amount": "238000.00", "updated_at": "2026-03-12 16:40:00"}
    requests = [signed(created), signed([updated])]
    for order, request in zip((60, 61), requests, strict=True):
        request.order = order
    return requests


def demo_sources() -> list[DemoSource]:
    return [DemoSource("erp", "demo-erp", {"secret": SECRET}, _requests)]
