"""The hub-defined POS push format (contract §9): one event object or a JSON array of them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

POS_TYPES = ("purchase", "refund", "member.updated")


class PosItem(BaseModel):
    model_config = ConfigDict(extra="allow")

    sku: str | None = None
    name: str | None = None
    qty: float | None = None
    price: Any = None

    @field_validator("sku", mode="before")
    @classmethod
    def _sku_as_text(cls, value: Any) -> Any:
        """A barcode sent as a JSON number (6901234567892) is still the item's code, not a reason to quarantine."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class PosEvent(BaseModel):
    """One POS event. Unknown fields are kept (extra="allow") and passed on as properties."""

    model_config = ConfigDict(extra="allow")

    event_id: str = Field(min_length=1, max_length=200)
    type: Literal["purchase", "refund", "member.updated"]
    store_id: str | None = None
    member_card_no: str | None = None
    phone: str | None = None
    order_no: str | None = None
    order_type: str | None = None
    amount: Any = None
    currency: str | None = "CNY"
    items: list[PosItem] = Field(default_factory=list)
    paid_at: Any = None
    name: str | None = None

    @field_validator("event_id", "store_id", "member_card_no", "phone", "order_no", mode="before")
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


