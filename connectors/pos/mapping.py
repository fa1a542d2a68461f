"""Pure POS event → EventDraft mapping."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hub import EventDraft, Identity, QualityIssue
from hub.values import amount_json, parse_amount, time_or_received

from .payloads import PosEvent

EVENT_TYPES = {"purchase": "purchase.completed", "refund": "purchase.refunded", "member.updated": "contact.updated"}
TRAIT_KEYS = ("name", "gender", "birthday", "level", "points", "email")


def identities(event: PosEvent) -> list[Identity]:
    out = []
    if event.member_card_no:
        out.append(Identity(type="pos_member_id", value=event.member_card_no))
    if event.phone:
        out.append(Identity(type="phone", value=event.phone))
    email = (event.model_extra or {}).get("email")
    if isinstance(email, str) and email:
        out.append(Identity(type="email", value=email))
    return out


def _items(event: PosEvent, issues: list[QualityIssue]) -> list[dict[str, Any]]:
    out = []
    for index, item in enumerate(event.items):
        price = parse_amount(item.price)
        if item.price is not None and price is None:
            issues.append(QualityIssue(field=f"properties.items.{index}.price", code="invalid_amount",
                                       detail=f"{str(item.price)[:40]!r} is not an amount"))
        out.append({"sku": item.sku, "name": item.name, "qty": item.qty, "price": amount_json(price)})
    return out


def to_draft(event: PosEvent, received_at: datetime) -> EventDraft:
    issues: list[QualityIssue] = []
    occurred = time_or_received(event.paid_at, "paid_at", received_at, issues)
    amount = parse_amount(event.amount)
    if event.amount is not None and amount is None:
        issues.append(QualityIssue(field="properties.amount", code="invalid_amount",
                                   detail=f"{str(event.amount)[:40]!r} is not an amount"))
    extra = event.model_extra or {}
    properties: dict[str, Any] = {
        "pos_event_type": event.type,
        "store_id": event.store_id,
        "order_no": event.order_no,
        "amount": amount_json(amount),
        "currency": (event.currency or "CNY").upper(),
        "items": _items(event, issues),
        "paid_at": occurred.isoformat() if event.paid_at is not None else None,
    }
    if event.order_type is not None:
        properties["order_type"] = event.order_type  # the kernel's formal-order rule applies
    if event.type == "refund" and "original_order_no" in extra:
        properties["original_order_no"] = extra["original_order_no"]
    traits = {key: extra[key] for key in TRAIT_KEYS if key in extra}
    if event.name:
        traits["name"] = event.name
    return EventDraft(
        type=EVENT_TYPES[event.type], source_event_id=event.event_id, occurred_at=occurred,
        identities=identities(event), properties=properties, traits=traits, quality={"issues": issues},
    )
