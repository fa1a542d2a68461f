"""Pure decrypted WeCom event → EventDraft mapping (客户联系 callbacks, platforms.md §6.2).

Why `State` becomes the campaign: it is the only attribution WeCom gives — the `state` an advertiser put
on a 「联系我」 QR code or a 获客链接 customer_channel, i.e. which channel brought this contact.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hub.schemas import Campaign, EventDraft, Identity

from .payloads import corp_of, created_of, event_name

CONTACT_TYPES = {
    "add_external_contact": "contact.added",
    "add_half_external_contact": "contact.added",
    "edit_external_contact": "contact.updated",
    "del_external_contact": "contact.removed",
    "del_follow_user": "contact.removed",
}
REMOVED_BY = {"del_external_contact": "employee", "del_follow_user": "customer"}
TYPE_MAX = 64  # events.type is VARCHAR(64): a longer type failed every insert on PostgreSQL (retried, never stored)
PROPERTY_FIELDS = {
    "UserID": "user_id", "State": "state", "Source": "removal_source", "FailReason": "fail_reason",
    "Id": "id", "TagType": "tag_type", "StrategyId": "strategy_id", "SuiteId": "suite_id", "AgentID": "agent_id",
}


def occurred_at(event: dict[str, str], received_at: datetime) -> datetime:
    """`CreateTime` / `TimeStamp` are epoch seconds."""
    try:
        seconds = int(created_of(event))
        return datetime.fromtimestamp(seconds, tz=UTC) if seconds > 0 else received_at
    except (TypeError, ValueError, OverflowError, OSError):
        return received_at


def state_campaign(state: str | None) -> Campaign | None:
    if not state:
        return None
    return Campaign(source="wecom", medium="contact_way", name=state)


def event_type(event: dict[str, str]) -> str:
    name, change = event_name(event), event.get("ChangeType", "")
    if name == "change_external_contact":
        return CONTACT_TYPES.get(change) or f"wecom.{change or 'change_external_contact'}"[:TYPE_MAX]
    if name == "change_external_tag":
        return "wecom.tag_changed"
    return f"wecom.{name}"[:TYPE_MAX]


def event_to_draft(event: dict[str, str], event_id: str, received_at: datetime) -> EventDraft:
    kind = event_type(event)
    change = event.get("ChangeType", "")
    properties: dict[str, Any] = {"event": event_name(event), "change_type": change or None,
                                  "corp_id": corp_of(event) or None}
    for xml_name, prop in PROPERTY_FIELDS.items():
        if event.get(xml_name):
            properties[prop] = event[xml_name]
    if change in REMOVED_BY:
        properties["removed_by"] = REMOVED_BY[change]
    if event.get("WelcomeCode"):
        properties["welcome_code_present"] = True  # the code itself is a 20-second credential: not stored
    external = event.get("ExternalUserID", "")
    identities = [Identity(type="wecom_external_userid", value=external)] if external else []
    campaign = state_campaign(event.get("State")) if kind == "contact.added" else None
    return EventDraft(type=kind, source_event_id=event_id, occurred_at=occurred_at(event, received_at),
                      identities=identities, campaign=campaign, properties=properties,
                      about_a_person=kind != "wecom.tag_changed")  # a tag-library change concerns no customer
