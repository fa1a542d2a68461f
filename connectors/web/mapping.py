"""Pure Segment message → EventDraft mapping."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hub.campaign import campaign_from_url, merge_campaign
from hub.errors import QuarantineError
from hub.schemas import Campaign, EventDraft, Identity, QualityIssue
from hub.values import parse_iso_time

from .payloads import message_id

CAMPAIGN_KEYS = {"name": "name", "source": "source", "medium": "medium", "term": "term", "content": "content"}
TIME_KEYS = ("timestamp", "originalTimestamp", "sentAt")  # Segment's, in the order they are trusted


def occurred_at(message: dict[str, Any], received_at: datetime, issues: list[QualityIssue]) -> datetime:
    """The first readable of Segment's times; a time without a zone is Asia/Shanghai (contract: local time is
    converted). One that cannot be read is noted (`invalid_time`): it used to be dropped without a word."""
    for key in TIME_KEYS:
        value = message.get(key)
        if value is None:
            continue
        parsed = parse_iso_time(value)
        if parsed is not None:
            return parsed
        issues.append(QualityIssue(field=key, code="invalid_time", detail=f"{str(value)[:40]!r} unreadable"))
    return received_at


def _str(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int | float):
        text = str(value).strip()
        return text or None
    return None


def explicit_campaign(context: dict[str, Any]) -> Campaign | None:
    raw = context.get("campaign")
    if not isinstance(raw, dict):
        return None
    fields = {ours: _str(raw.get(theirs)) for theirs, ours in CAMPAIGN_KEYS.items()}
    if not any(fields.values()):
        return None
    return Campaign(**fields)


def message_to_draft(message: Any, received_at: datetime) -> EventDraft:
    if not isinstance(message, dict):
        raise QuarantineError("invalid_message", "a message must be a JSON object")
    call = message.get("type")
    if call not in ("identify", "track", "page", "screen", "group", "alias"):
        raise QuarantineError("unknown_call", f"unknown message type {str(call)[:40]!r}")
    user_id, anonymous_id = _str(message.get("userId")), _str(message.get("anonymousId"))
    if user_id is None and anonymous_id is None:
        raise QuarantineError("missing_identity", "a message needs userId or anonymousId")
    context = message.get("context") if isinstance(message.get("context"), dict) else {}
    traits = message.get("traits") if isinstance(message.get("traits"), dict) else {}
    if not traits and isinstance(context.get("traits"), dict):
        traits = context["traits"]
    identities = []
    if user_id:
        identities.append(Identity(type="web_user_id", value=user_id))
    if anonymous_id:
        identities.append(Identity(type="web_anonymous_id", value=anonymous_id))
    for key, kind in (("email", "email"), ("phone", "phone")):
        value = _str(traits.get(key))
        if value:
            identities.append(Identity(type=kind, value=value))
    page = context.get("page") if isinstance(context.get("page"), dict) else {}
    props = message.get("properties") if isinstance(message.get("properties"), dict) else {}
    url = _str(page.get("url")) or _str(props.get("url"))
    campaign = merge_campaign(explicit_campaign(context), campaign_from_url(url))
    issues: list[QualityIssue] = []
    occurred = occurred_at(message, received_at, issues)
    properties: dict[str, Any] = {"call": call, "properties": props}
    if call == "track":
        properties["event"] = _str(message.get("event"))
    if call in ("page", "screen"):
        properties["name"] = _str(message.get("name"))
    if call == "group":
        properties["group_id"] = _str(message.get("groupId"))
    if call == "alias":
        properties["previous_id"] = _str(message.get("previousId"))
    if page:
        properties["page"] = {k: page.get(k) for k in ("url", "path", "title", "referrer") if k in page}
    for key in ("ip", "userAgent", "locale"):
        if key in context:
            properties.setdefault("context", {})[key] = context[key]
    event_type = {"identify": "identify", "track": "track"}.get(call, call)
    return EventDraft(
        type=event_type, source_event_id=message_id(message), occurred_at=occurred, identities=identities,
        campaign=campaign, properties=properties, traits=traits if call == "identify" else {},
        quality={"issues": issues},
    )
