"""The hub-defined ERP push format (contract §9), also the shape the incremental pull yields."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hub.errors import PayloadError

MAX_EVENTS = 500


class ErpOrder(BaseModel):
    """One order event. `event_id`/`type` are absent on pulled orders; parse() supplies them."""

    model_config = ConfigDict(extra="allow")

    event_id: str = Field(min_length=1, max_length=200)
    type: Literal["order.created", "order.updated"]
    order_no: str = Field(min_length=1, max_length=200)
    order_type: str | None = None
    customer_code: str | None = None
    customer_name: str | None = None
    uscc: str | None = None
    contact_phone: str | None = None
    contact_name: str | None = None
    amount: Any = None
    currency: str | None = "CNY"
    contract_date: Any = None
    updated_at: Any = None

    @field_validator("event_id", "order_no", "customer_code", "uscc", "contact_phone", mode="before")
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def read_items(body: bytes) -> list[Any]:
    """The body as a list of JSON objects (one object or an array); PayloadError (400) otherwise."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"body is not valid JSON: {exc}", code="invalid_json") from exc
    items = data if isinstance(data, list) else [data]
    if not items or len(items) > MAX_EVENTS:
        raise PayloadError(f"send 1 to {MAX_EVENTS} events", code="bad_event_count")
    if not all(isinstance(item, dict) for item in items):
        raise PayloadError("every event must be a JSON object", code="invalid_event")
    return items


def event_id_of(item: dict[str, Any]) -> str | None:
    value = item.get("event_id")
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        return None
    return str(value).strip()
