"""Demo traffic: 张伟 opens a DM from a Douyin ad, asks about the Python course, follows, leaves his phone."""

from __future__ import annotations

import json
from typing import Any

from hub.demo import DemoRequest, DemoSource

from .connector import signature

CLIENT_KEY = "awdemo0000000001"
CLIENT_SECRET = "demo-douyin-client-secret-0001"
ZHANG_WEI = "_000QadFMhmWSGhO8Ei3dBz4ZxAqtDAsFtYm"
BRAND = "_000Lx7Nj9oBcJ3mhGqF2eK1wJxM8yZ2Rdemo"
CONVERSATION = "7306432791234567890"
T0 = 1772451600000  # 2026-03-02 19:40:00 +08:00, in ms as Douyin sends it


def _user(open_id: str, nick: str) -> dict[str, str]:
    return {"open_id": open_id, "nick_name": nick, "avatar": "https://p3.douyinpic.com/aweme/100x100/demo.jpeg"}


def _im(event: str, sender: str, receiver: str, minute: int, extra: dict[str, Any]) -> dict[str, Any]:
    content = {"conversation_short_id": CONVERSATION, "server_message_id": f"73064{minute:05d}", "conversation_type": 1,
               "create_time": T0 + minute * 60_000, "source": "",
               "user_infos": [_user(ZHANG_WEI, "张伟"), _user(BRAND, "码上学 Python")], **extra}
    return {"event": event, "from_user_id": sender, "to_user_id": receiver, "client_key": CLIENT_KEY,
            "log_id": f"20260302194{minute:03d}0102030405", "content": content}


def _request(doc: dict[str, Any], msg_id: str, order: float, content_as_string: bool = False) -> DemoRequest:
    if content_as_string:
        doc = {**doc, "content": json.dumps(doc["content"], ensure_ascii=False)}
    body = json.dumps(doc, ensure_ascii=False).encode()
    headers = {"content-type": "application/json", "msg-id": msg_id,
               "x-douyin-signature": signature(CLIENT_SECRET.encode(), body)}
    return DemoRequest(body, headers, order=order)


def _requests() -> list[DemoRequest]:
    ad_info = {"adv_id": "1760000000000001", "adv_name": "码上学教育", "ad_id": "1790000000000123",
               "ad_name": "spring2026-python-im", "creative_id": "1790000000000456", "promotion_id": "7300000000000789"}
    enter = _im("im_enter_direct_msg", ZHANG_WEI, BRAND, 0,
                {"scene_type": 2, "objectId": "7305000000000000001", "ad_info": json.dumps(ad_info)})
    ask = _im("im_receive_msg", ZHANG_WEI, BRAND, 1, {"message_type": "text", "text": "你好，Python 就业班多少钱？"})
    answer = _im("im_send_msg", BRAND, ZHANG_WEI, 2,
                 {"message_type": "text", "text": "您好！就业班 12800 元，留个电话我们的顾问联系您～"})
    card = _im("im_receive_msg", ZHANG_WEI, BRAND, 4,
               {"message_type": "retain_consult_card", "name": "张伟", "phone": "13800138000"})
    follow = {"event": "new_follow_action", "from_user_id": ZHANG_WEI, "to_user_id": BRAND, "client_key": CLIENT_KEY,
              "log_id": "202603021946000102030406", "content": {"create_time": T0 + 6 * 60_000}}
    return [
        _request(enter, "demo-dy-msg-1", 1, content_as_string=True),
        _request(ask, "demo-dy-msg-2", 2),
        _request(answer, "demo-dy-msg-3", 3),
        _request(card, "demo-dy-msg-4", 4),
        _request(follow, "demo-dy-msg-5", 5),
    ]


def demo_sources() -> list[DemoSource]:
    return [DemoSource("douyin", "demo-douyin", {"client_key": CLIENT_KEY, "client_secret": CLIENT_SECRET}, _requests)]
