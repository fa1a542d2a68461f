"""Demo traffic: a sales adviser adds 张伟 on WeCom from the spring「联系我」QR code, tags him, he leaves.

WeCom refuses stale timestamps, so the requests are encrypted and signed when the demo builds them. The contact's
details (his unionid, the phone the adviser noted) come from a local stand-in for WeCom's server API
(`stand_in.py`): that phone is what joins his WeCom contact to the rest of his profile.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hub.demo import DemoRequest, DemoSource

from .crypto import aes_key, encrypt, msg_signature
from .stand_in import WeComStandIn, serve

CORP_ID = "wwdemo0000000001"
TOKEN = "demoWeComToken01"
ENCODING_AES_KEY = "ZGVtby13ZWNvbS1lbmNvZGluZy1hZXMta2V5LTAwMDE"  # 43 chars → 32 bytes
EXTERNAL = "wmDemoZhangWei0000000000000000001"
T0 = 1772505000  # 2026-03-03 10:30:00 +08:00
CONTACT_SECRET = "demo-wecom-contact-secret-0001"
DETAILS = {
    "external_contact": {"external_userid": EXTERNAL, "name": "张伟", "type": 1, "gender": 1,
                         "unionid": "oDemoZhangWeiUnionId000000001"},
    "follow_user": [{"userid": "liuyang", "remark": "张伟 Python 课", "createtime": T0,
                     "state": "spring2026-qr-shanghai", "remark_mobiles": ["13800138000"],
                     "tags": [{"group_name": "意向课程", "tag_name": "Python", "tag_id": "etDemoTagPython",
                               "type": 1}]}],
}


def event_xml(change: str, created: int, extra: str = "", event: str = "change_external_contact") -> bytes:
    return (f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
            f"<CreateTime>{created}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[{event}]]></Event><ChangeType><![CDATA[{change}]]></ChangeType>{extra}</xml>").encode()


def signed(plain: bytes, order: float) -> DemoRequest:
    encrypted = encrypt(aes_key(ENCODING_AES_KEY), plain, CORP_ID)
    timestamp, nonce = str(int(time.time())), secrets.token_hex(5)
    body = (f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt>"
            "<AgentID><![CDATA[]]></AgentID></xml>").encode()
    query = {"msg_signature": msg_signature(TOKEN, timestamp, nonce, encrypted), "timestamp": timestamp,
             "nonce": nonce}
    return DemoRequest(body, {"content-type": "text/xml"}, query=query, order=order)


def _requests() -> list[DemoRequest]:
    who = f"<UserID><![CDATA[liuyang]]></UserID><ExternalUserID><![CDATA[{EXTERNAL}]]></ExternalUserID>"
    added = event_xml("add_external_contact", T0, who + "<State><![CDATA[spring2026-qr-shanghai]]></State>"
                      "<WelcomeCode><![CDATA[WELCOMECODE]]></WelcomeCode>")
    edited = event_xml("edit_external_contact", T0 + 300, who)
    tag = event_xml("create", T0 + 200, "<Id><![CDATA[etDemoTagPython]]></Id><TagType><![CDATA[tag]]></TagType>",
                    event="change_external_tag")
    return [signed(added, 30), signed(tag, 31), signed(edited, 32)]


@contextmanager
def wecom_api_stand_in() -> Iterator[dict[str, Any]]:
    """WeCom's server API on a free loopback port; yields the config that points the source at it."""
    with serve(WeComStandIn(CORP_ID, CONTACT_SECRET, contacts={EXTERNAL: DETAILS})) as running:
        yield {"api_base_url": running.base_url}


def demo_sources() -> list[DemoSource]:
    return [DemoSource("wecom", "demo-wecom",
                       {"corp_id": CORP_ID, "token": TOKEN, "encoding_aes_key": ENCODING_AES_KEY,
                        "contact_secret": CONTACT_SECRET}, _requests, stand_in=wecom_api_stand_in)]
