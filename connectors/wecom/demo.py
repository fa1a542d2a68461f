"""Demo traffic: a sales adviser adds 张伟 on WeCom from the spring「联系我」QR code, tags him, he leaves.

WeCom refuses stale timestamps, so the requests are encrypted and signed when the demo builds them.
"""

from __future__ import annotations

import secrets
import time

from hub.demo import DemoRequest, DemoSource

from .crypto import aes_key, encrypt, msg_signature

CORP_ID = "wwdemo0000000001"
TOKEN = "demoWeComToken01"
ENCODING_AES_KEY = "ZGVtby13ZWNvbS1lbmNvZGluZy1hZXMta2V5LTAwMDE"  # 43 chars → 32 bytes
EXTERNAL = "wmDemoZhangWei0000000000000000001"
T0 = 1772505000  # 2026-03-03 10:30:00 +08:00


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


def demo_sources() -> list[DemoSource]:
    return [DemoSource("wecom", "demo-wecom",
                       {"corp_id": CORP_ID, "token": TOKEN, "encoding_aes_key": ENCODING_AES_KEY}, _requests)]
