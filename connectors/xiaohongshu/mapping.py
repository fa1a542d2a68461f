"""Pure Xiaohongshu lead push → `lead.submitted` mapping.

Why a label map: the form's answers come as the advertiser's own Chinese captions (姓名, 手机号 …), so
fields are found by caption through a default table that each source's `label_map` extends or overrides.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from hub.campaign import campaign_from_url, merge_campaign
from hub.errors import QuarantineError
from hub.schemas import Campaign, EventDraft, Identity
from hub.values import plausible_time

from .payloads import LeadPush

SHANGHAI = ZoneInfo("Asia/Shanghai")
DEFAULT_LABEL_MAP: Mapping[str, str] = {
    "姓名": "name", "名字": "name", "称呼": "name", "您的姓名": "name", "联系人": "name",
    "电话": "phone", "手机": "phone", "手机号": "phone", "手机号码": "phone", "联系电话": "phone",
    "电话号码": "phone", "联系方式": "phone",
    "邮箱": "email", "电子邮箱": "email", "邮件": "email", "email": "email", "e-mail": "email",
    "微信": "wechat", "微信号": "wechat",
    "公司": "company", "公司名称": "company", "企业名称": "company", "单位": "company",
    "城市": "city", "所在城市": "city", "所在地区": "city",
    "性别": "gender", "地址": "address", "年龄": "age", "职位": "title", "职务": "title",
    "留言": "message", "备注": "message",
}
IDENTITY_FIELDS = {"phone": "phone", "email": "email"}
TRAIT_FIELDS = ("name", "company", "city", "wechat", "gender", "title", "address")
_DECORATION = re.compile(r"[\s*＊:：]+")


def label_key(label: str) -> str:
    """Captions compare without spaces, asterisks or trailing colons, case-insensitively."""
    return _DECORATION.sub("", label).lower()


def label_table(overrides: Mapping[str, str] | None) -> dict[str, str]:
    table = {label_key(k): v for k, v in DEFAULT_LABEL_MAP.items()}
    table.update({label_key(k): v for k, v in (overrides or {}).items()})
    return table


def submitted_at(push: LeadPush, received_at: datetime) -> datetime:
    """`submitted_time` is Asia/Shanghai wall time ("yyyy-MM-dd HH:mm:ss"); else `timestamp` (ms or s)."""
    raw = push.data.submitted_time
    if raw:
        for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M:%S"):
            try:
                local = datetime.strptime(raw, fmt).replace(tzinfo=SHANGHAI)
            except ValueError:
                continue
            # Stored as UTC: the same instant, and safe on databases that keep no zone (SQLite). A year-1
            # placeholder cannot convert; it goes on as sent and the pipeline flags it (invalid_time).
            return local.astimezone(UTC) if plausible_time(local) else local
    if push.timestamp and push.timestamp > 0:
        seconds = push.timestamp / 1000 if push.timestamp > 1e11 else push.timestamp
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            pass
    return received_at


def explicit_campaign(push: LeadPush) -> Campaign | None:
    data = push.data
    ad_ids = {k: v for k, v in (("account_id", data.account_id), ("campaign_id", data.campaign_id),
                                ("unit_id", data.unit_id), ("creative_id", data.creative_id),
                                ("landing_page_id", data.landing_page_id)) if v}
    if not ad_ids and not (data.campaign_name or data.keyword or data.source_channel):
        return None
    return Campaign(source="xiaohongshu", medium=data.source_channel, name=data.campaign_name or data.campaign_id,
                    term=data.keyword, content=data.unit_name, ad_ids=ad_ids)


def form_fields(push: LeadPush, table: Mapping[str, str]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """(field → first answer, the raw label/value pairs)."""
    fields: dict[str, str] = {}
    answers: list[dict[str, Any]] = []
    for answer in push.data.data:
        answers.append({"label": answer.label, "value": answer.value})
        field = table.get(label_key(answer.label or ""))
        if field and answer.value and field not in fields:
            fields[field] = answer.value
    return fields, answers


def push_to_draft(push: LeadPush, event_id: str, received_at: datetime,
                  label_map: Mapping[str, str] | None = None) -> EventDraft:
    fields, answers = form_fields(push, label_table(label_map))
    identities = [Identity(type=kind, value=fields[f]) for f, kind in IDENTITY_FIELDS.items() if fields.get(f)]
    if not identities:
        raise QuarantineError("missing_identity", "the form has no phone or email answer (check label_map); "
                              f"labels seen: {[a['label'] for a in answers][:20]}")
    data = push.data
    properties: dict[str, Any] = {
        "form": {k: v for k, v in fields.items() if k not in IDENTITY_FIELDS},
        "answers": answers,
        "leads_id": data.leads_id, "landing_page_id": data.landing_page_id, "landing_url": data.url,
        "account_name": data.account_name, "campaign_name": data.campaign_name, "unit_name": data.unit_name,
        "source_channel": data.source_channel, "push_source": push.source,
    }
    traits = {k: fields[k] for k in TRAIT_FIELDS if fields.get(k)}
    campaign = merge_campaign(explicit_campaign(push), campaign_from_url(data.url))
    return EventDraft(type="lead.submitted", source_event_id=event_id, occurred_at=submitted_at(push, received_at),
                      identities=identities, campaign=campaign, properties=properties, traits=traits)
