"""What `externalcontact/get` adds to a contact event (pure: the answer in, the draft changed).

Identity: `wechat_unionid` (a WeChat user's id across the company's WeChat apps, when the corp has bound its WeChat
open platform account) and, unless the source turns it off, the phones the event's employee noted on the contact
(`remark_mobiles`): what links the WeCom contact to the caller on the 400 line and the member at the till. Traits:
the name (a WeChat user's nickname as `wechat_nickname`), gender, company, title. Properties: the contact's type,
the employee's remark, description and tags.
"""

from __future__ import annotations

from typing import Any

from hub.schemas import EventDraft, Identity

GENDER = {1: "male", 2: "female"}
CONTACT_TYPE = {1: "wechat", 2: "wecom"}
MAX_TAGS = 100  # a contact's tags on one employee: WeCom allows far fewer; the bound keeps a bad answer small


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    """A JSON array, else nothing: a string (some WeCom wrappers send `"[]"`) must not become its characters."""
    return value if isinstance(value, list) else []


def _code(table: dict[int, str], value: Any) -> str | None:
    return table.get(value) if isinstance(value, int) and not isinstance(value, bool) else None


def employee_entry(detail: dict[str, Any], employee: str | None) -> dict[str, Any]:
    """The event's employee's `follow_user` entry, or {} (the app may not see that employee)."""
    for entry in _list(detail.get("follow_user")):
        if isinstance(entry, dict) and employee and entry.get("userid") == employee:
            return entry
    return {}


def apply_details(draft: EventDraft, detail: dict[str, Any], employee: str | None, *,
                  link_remark_mobiles: bool) -> None:
    contact = _object(detail.get("external_contact"))
    entry = employee_entry(detail, employee)
    identities = [*draft.identities]
    unionid = _text(contact.get("unionid"))
    if unionid:
        identities.append(Identity(type="wechat_unionid", value=unionid))
    if link_remark_mobiles:
        for mobile in _list(entry.get("remark_mobiles")):
            if _text(mobile):
                identities.append(Identity(type="phone", value=mobile.strip()))
    draft.identities = identities

    # A WeChat user's (type 1) `name` is the nickname they chose, not a name: as `name` it replaced the real name
    # another source had given (traits keep the newest value). A WeCom user's (type 2) is the real-name account's.
    named = "name" if contact.get("type") == 2 else "wechat_nickname"
    traits = {named: _text(contact.get("name")), "gender": _code(GENDER, contact.get("gender")),
              "company": _text(contact.get("corp_full_name")) or _text(contact.get("corp_name")),
              "title": _text(contact.get("position"))}
    draft.traits.update({k: v for k, v in traits.items() if v})

    tags = [{"group": _text(t.get("group_name")), "name": _text(t.get("tag_name")), "id": _text(t.get("tag_id"))}
            for t in _list(entry.get("tags"))[:MAX_TAGS] if isinstance(t, dict)]
    properties = {"contact_type": _code(CONTACT_TYPE, contact.get("type")),
                  "remark": _text(entry.get("remark")), "description": _text(entry.get("description")),
                  "remark_corp_name": _text(entry.get("remark_corp_name")),
                  "tags": [t for t in tags if t["name"]] or None}
    draft.properties.update({k: v for k, v in properties.items() if v})
    draft.properties["details_fetched"] = True
