"""The hub-defined ERP push format (contract §9), also the shape the incremental pull yields."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


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


