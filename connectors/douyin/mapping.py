"""Pure Douyin envelope → EventDraft mapping (platforms.md §1.2-§1.5).

Why every event is kept: an unknown or newly added event name becomes `douyin.<event>` with its raw
content rather than being dropped, so nothing the platform sent is lost before we know its shape.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from hub.schemas import Campaign, EventDraft, Identity

from .payloads import Envelope, UserInfo

log = logging.getLogger(__name__)

MESSAGE_EVENTS = {"im_receive_msg": "message.received", "im_send_msg": "message.sent"}
NAMED_EVENTS = {
    "im_enter_direct_msg": "conversation.opened",
    "authorize": "douyin.authorize",
    "unauthorize": "douyin.unauthorize",
    "new_follow_action": "douyin.follow",
    "new_video_digg": "douyin.like",
}
# Enterprise-account lead events (§1.5, content UNCONFIRMED): kept raw, phone picked up when present.
LEAD_EVENTS = frozenset({"dial_phone", "website_contact", "personal_tab_contact"})
AD_ID_KEYS = ("adv_id", "ad_id", "creative_id", "promotion_id", "material_title_id", "material_image_id",
              "material_video_id")
PHONE_KEYS = ("phone", "mobile", "telephone", "phone_number", "tel")
NAME_KEYS = ("name", "user_name", "nick_name")
TYPE_MAX = 64  # events.type is VARCHAR(64): a longer type failed every insert on PostgreSQL (retried, never stored)


def event_type(envelope: Envelope) -> str:
    if envelope.event in LEAD_EVENTS or _is_lead_card(envelope):
        return "lead.submitted"
    if envelope.event in MESSAGE_EVENTS:
        return MESSAGE_EVENTS[envelope.event]
    return NAMED_EVENTS.get(envelope.event, ("douyin." + envelope.event)[:TYPE_MAX])


def _is_lead_card(envelope: Envelope) -> bool:
    return envelope.event == "im_receive_msg" and envelope.content_text("message_type") == "retain_consult_card"


def occurred_at(envelope: Envelope, received_at: datetime) -> datetime:
    """`content.create_time` is 13-digit milliseconds (10-digit seconds accepted too)."""
    raw = envelope.content.get("create_time")
    if not isinstance(raw, int | float | str) or isinstance(raw, bool):
        return received_at
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return received_at
    if value <= 0:
        return received_at
    seconds = value / 1000 if value > 1e11 else value
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return received_at


def customer_open_id(envelope: Envelope) -> str:
    """The customer's open_id: the receiver for messages the account sent, otherwise the sender."""
    if envelope.event == "im_send_msg":
        return envelope.to_user_id
    return envelope.from_user_id


def message_text(content: dict[str, Any]) -> str | None:
    """The text of a message. UNCONFIRMED key: `content.text` (probable) or a nested/`content` form."""
    for key in ("text", "content"):
        value = content.get(key)
        if isinstance(value, dict):
            value = value.get("text") or value.get("content")
        if isinstance(value, str) and value.strip():
            return value
    return None


def ad_campaign(ad_info: dict[str, Any]) -> Campaign | None:
    """`ad_info` of im_enter_direct_msg → a paid Douyin campaign with the ad/creative/promotion ids."""
    ad_ids = {key: str(ad_info[key]) for key in AD_ID_KEYS if ad_info.get(key) not in (None, "", 0, "0")}
    name = ad_info.get("ad_name") or ad_info.get("adv_name")
    if not ad_ids and not name:
        return None
    return Campaign(source="douyin", medium="paid", name=str(name) if name else None,
                    content=str(ad_info["creative_id"]) if ad_info.get("creative_id") else None,
                    network="oceanengine", ad_ids=ad_ids)


def _identities(envelope: Envelope, open_id: str) -> list[Identity]:
    identities = [Identity(type="douyin_open_id", value=open_id)] if open_id else []
    for key in ("union_id", "unionid"):
        union = envelope.content_text(key) or str(getattr(envelope, key, "") or "").strip()
        if union:
            identities.append(Identity(type="douyin_union_id", value=union))
            break
    return identities


def _profile(users: list[UserInfo], open_id: str) -> dict[str, Any]:
    for user in users:
        if user.open_id == open_id and (user.nick_name or user.avatar):
            return {k: v for k, v in (("nickname", user.nick_name), ("avatar", user.avatar)) if v}
    return {}


def _lead_fields(content: dict[str, Any]) -> tuple[str | None, str | None]:
    phone = next((str(content[k]) for k in PHONE_KEYS if content.get(k)), None)
    name = next((str(content[k]) for k in NAME_KEYS if content.get(k)), None)
    return phone, name


def envelope_to_draft(envelope: Envelope, event_id: str, received_at: datetime) -> EventDraft:
    """One webhook envelope → one event; the raw content always travels in `properties.raw`."""
    kind = event_type(envelope)
    open_id = customer_open_id(envelope)
    identities = _identities(envelope, open_id)
    content = envelope.content
    properties: dict[str, Any] = {
        "event": envelope.event, "client_key": envelope.client_key or None,
        "from_user_id": envelope.from_user_id or None, "to_user_id": envelope.to_user_id or None, "raw": content,
    }
    traits = _profile(envelope.user_infos(), open_id)
    for key in ("conversation_short_id", "conversation_type", "message_type", "server_message_id", "scene_type"):
        if content.get(key) not in (None, ""):
            properties[key] = content[key]
    campaign = None
    if kind in ("message.received", "message.sent"):
        properties["text"] = message_text(content)
        properties["direction"] = "inbound" if kind == "message.received" else "outbound"
        if properties.get("message_type") == "text" and properties["text"] is None:
            log.warning("douyin %s text message without a text field; content keys: %s", envelope.event,
                        sorted(content))
    elif kind == "conversation.opened":
        campaign = ad_campaign(envelope.ad_info())
        # Contract: field names are snake_case (`objectId`, the video the DM was entered from, stays as sent in `raw`).
        for key, name in (("objectId", "object_id"), ("query", "query"), ("path", "path")):
            if content.get(key) not in (None, ""):
                properties[name] = content[key]
    elif kind == "lead.submitted":
        phone, name = _lead_fields(content)
        if phone:
            identities.append(Identity(type="phone", value=phone))
        if name:
            traits["name"] = name
        log.info("douyin lead event %s (content UNCONFIRMED) with content keys %s", envelope.event, sorted(content))
    return EventDraft(type=kind, source_event_id=event_id, occurred_at=occurred_at(envelope, received_at),
                      identities=identities, campaign=campaign, properties=properties, traits=traits)
