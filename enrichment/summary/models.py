"""The shapes of a call summary, exactly as contract §5 publishes them.

Why a module of its own: the rule-based and the LLM extractor both return these models, the
LLM's JSON reply is validated against them, and the `call.summarized` event dumps them verbatim
(`CallSummary.model_dump()` is the contract's `summary` object, key for key).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Speaker = Literal["agent", "customer"]
# Ways of writing yuan an extractor (an LLM, a plugin) may answer with; contract §5 publishes only "CNY".
CNY_SPELLINGS = frozenset({"cny", "rmb", "人民币", "元", "¥", "￥"})


def as_cny(value: Any) -> Literal["CNY"]:
    """`CNY` for yuan however written (or left out); ValueError for another currency, which the contract's
    budget cannot carry (an LLM answering "人民币" reached the event as it was)."""
    if value is None or (isinstance(value, str) and (not value.strip() or value.strip().lower() in CNY_SPELLINGS)):
        return "CNY"
    raise ValueError(f"a budget is in CNY (contract §5), not {str(value)[:20]!r}")


class TranscriptLine(BaseModel):
    """One recognised sentence, already mapped from an ASR channel to a party (contract §10)."""

    model_config = ConfigDict(frozen=True)

    speaker: Speaker
    start_ms: int = Field(ge=0)
    end_ms: int = Field(ge=0)
    text: str


class Budget(BaseModel):
    """A money range in CNY; an open end is `None` ("不超过八万" has no minimum).

    `text` keeps the customer's own words ("一年三四万") so a rep sees the period and the hedging
    that the two numbers cannot carry.
    """

    min: float | None
    max: float | None
    currency: Literal["CNY"] = "CNY"
    text: str

    @field_validator("currency", mode="before")
    @classmethod
    def _yuan(cls, value: Any) -> str:
        return as_cny(value)

    @model_validator(mode="after")
    def _ordered(self) -> Budget:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("budget min must not exceed max")
        return self


class CallSummary(BaseModel):
    """The four facts a rep needs from a call: course or product, budget, decision-maker, competitors."""

    course: str | None = None
    budget: Budget | None = None
    decision_role: str | None = None
    competitors: list[str] = Field(default_factory=list)
