"""Pure ERP order → EventDraft mapping, including `properties.changes` against the last seen version."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hub import EventDraft, Identity, QualityIssue
from hub.identifiers import normalize_uscc
from hub.values import amount_json, parse_amount, parse_platform_time, platform_date, time_or_received

from .payloads import ErpOrder

ORDER_TYPES = ("formal", "intent", "sample")
TRACKED_FIELDS = ("contract_date", "order_type", "amount")


def version_of(order: ErpOrder) -> dict[str, Any]:
    """The fields a change is reported on, normalised so equal values compare equal."""
    order_type = (order.order_type or "").strip().lower() or None
    updated = parse_platform_time(order.updated_at)
    return {
        "order_type": order_type,
        "amount": amount_json(parse_amount(order.amount)),
        "contract_date": platform_date(order.contract_date),
        "updated_at": updated.isoformat() if updated else None,
    }


def changes_between(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    if not before:
        return {}
    return {
        field: {"before": before.get(field), "after": after.get(field)}
        for field in TRACKED_FIELDS
        if before.get(field) != after.get(field)
    }


def is_older(version: dict[str, Any], last: dict[str, Any] | None) -> bool:
    if not last or not last.get("updated_at") or not version.get("updated_at"):
        return False
    return datetime.fromisoformat(version["updated_at"]) < datetime.fromisoformat(last["updated_at"])


def _identities(order: ErpOrder, issues: list[QualityIssue]) -> list[Identity]:
    out = []
    if order.customer_code:
        out.append(Identity(type="erp_customer_code", value=order.customer_code))
    if order.uscc:
        result = normalize_uscc(order.uscc)
        if result.value:
            out.append(Identity(type="uscc", value=result.value))
        elif result.reason != "empty":
            issues.append(QualityIssue(field="uscc", code="invalid_uscc",
                                       detail=f"{order.uscc[:40]!r} is not a valid USCC; left out of identities"))
    if order.contact_phone:
        out.append(Identity(type="phone", value=order.contact_phone))
    return out


def to_draft(order: ErpOrder, version: dict[str, Any], changes: dict[str, Any], received_at: datetime) -> EventDraft:
    issues: list[QualityIssue] = []
    occurred = time_or_received(order.updated_at, "updated_at", received_at, issues)
    if order.amount is not None and version["amount"] is None:
        issues.append(QualityIssue(field="properties.amount", code="invalid_amount",
                                   detail=f"{str(order.amount)[:40]!r} is not an amount"))
    if version["order_type"] not in (None, *ORDER_TYPES):
        issues.append(QualityIssue(field="properties.order_type", code="unknown_order_type",
                                   detail=f"{version['order_type']!r} is not formal, intent or sample"))
    properties: dict[str, Any] = {
        "order_no": order.order_no,
        "order_type": version["order_type"],
        "amount": version["amount"],
        "currency": (order.currency or "CNY").upper(),
        "contract_date": version["contract_date"],
        "updated_at": version["updated_at"],
        "customer_code": order.customer_code,
        "customer_name": order.customer_name,
        "account": {"name": order.customer_name, "erp_customer_code": order.customer_code},
    }
    if order.type == "order.updated":
        properties["changes"] = changes
    traits = {"name": order.contact_name} if order.contact_name else {}
    return EventDraft(
        type=order.type, source_event_id=order.event_id, occurred_at=occurred,
        identities=_identities(order, issues), properties=properties, traits=traits, quality={"issues": issues},
    )
