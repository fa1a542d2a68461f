"""The shapes of a call summary, exactly as contract §5 publishes them.

Why a module of its own: the rule-based and the LLM extractor both return these models, the
LLM's JSON reply is validated against them, and the `call.summarized` event dumps them verbatim
(`CallSummary.model_dump()` is the contract's `summary` object, key for key).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Speaker = Literal["agent", "customer"]


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
    currency: str = "CNY"
    text: str

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
