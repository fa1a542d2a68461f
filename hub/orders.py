"""The formal-order rule (contract §9): only an ERP source may emit an order whose type is `formal`.

Kept in the kernel and applied to every event, so a report can trust `order_type == "formal"`
whatever connector (POS, a spreadsheet, a future one) the event came through.
"""

from __future__ import annotations

from typing import Any

from hub.schemas import QualityIssue

FORMAL_ORDER_SOURCES: frozenset[str] = frozenset({"erp"})
FORMAL_ORDER_ISSUE = "formal_order_not_from_erp"


def enforce_formal_order_rule(source: str, properties: dict[str, Any], issues: list[QualityIssue]) -> None:
    """Downgrade `properties.order_type` `formal` to `intent` unless `source` is an ERP connector."""
    if source in FORMAL_ORDER_SOURCES:
        return
    value = properties.get("order_type")
    if isinstance(value, str) and value.strip().lower() == "formal":
        properties["order_type"] = "intent"
        issues.append(QualityIssue(field="properties.order_type", code=FORMAL_ORDER_ISSUE,
                                   detail=f"formal order from source {source!r} stored as intent"))
