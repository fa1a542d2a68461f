"""Xiaohongshu 聚光 landing-page lead push bodies (platforms.md §3.1, field list third-party), private.

Why lenient: the shape comes from a third-party Java receiver model; ids arrive as numbers or strings,
and only `data.data[]` (the form's label/value answers) and `data.leads_id` are relied on.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hub.errors import PayloadError, UnreadableBody


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = str(value).strip()
    return text or None


class Answer(BaseModel):
    model_config = ConfigDict(extra="allow")

    label: str | None = None
    value: str | None = None

    @field_validator("label", "value", mode="before")
    @classmethod
    def _str(cls, value: Any) -> str | None:
        if isinstance(value, list):  # a multiple-choice answer
            return "、".join(t for t in map(_text, value) if t) or None
        return _text(value)


class LeadData(BaseModel):
    model_config = ConfigDict(extra="allow")

    landing_page_id: str | None = None
    url: str | None = None
    submitted_time: str | None = None
    source_channel: str | None = None
    account_id: str | None = None
    account_name: str | None = None
    campaign_id: str | None = None
    campaign_name: str | None = None
    unit_id: str | None = None
    unit_name: str | None = None
    creative_id: str | None = None
    leads_id: str | None = None
    keyword: str | None = None
    data: list[Answer] = Field(default_factory=list)

    @field_validator(
        "landing_page_id", "url", "submitted_time", "source_channel", "account_id", "account_name", "campaign_id",
        "campaign_name", "unit_id", "unit_name", "creative_id", "leads_id", "keyword", mode="before",
    )
    @classmethod
    def _str(cls, value: Any) -> str | None:
        text = _text(value)
        return None if text in ("0", None) else text

    @field_validator("data", mode="before")
    @classmethod
    def _answers(cls, value: Any) -> list[Any]:
        return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


class LeadPush(BaseModel):
    """`{"timestamp", "source", "data": {…, "data": [{"label", "value"}]}}`."""

    model_config = ConfigDict(extra="allow")

    timestamp: float | None = None
    source: str | None = None
    data: LeadData

    @field_validator("timestamp", mode="before")
    @classmethod
    def _ts(cls, value: Any) -> float | None:
        try:
            return float(value) if value not in (None, "", True, False) else None
        except (TypeError, ValueError):
            return None

    @field_validator("source", mode="before")
    @classmethod
    def _source(cls, value: Any) -> str | None:
        return _text(value)


def read_push(body: bytes) -> LeadPush:
    """The lead push, or PayloadError (HTTP 400) naming what is wrong."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnreadableBody(f"body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), dict):
        raise PayloadError("a lead push is a JSON object with a 'data' object", code="invalid_body")
    try:
        return LeadPush.model_validate(doc)
    except ValidationError as exc:
        raise PayloadError(f"not a Xiaohongshu lead push: {exc.error_count()} invalid fields",
                           code="invalid_body") from exc


def lead_id(push: LeadPush, body: bytes) -> str:
    """`data.leads_id`, else a digest of the body (a 联调 test push may carry none)."""
    if push.data.leads_id:
        return "lead:" + push.data.leads_id[:200]
    return "sha256:" + hashlib.sha256(body).hexdigest()
