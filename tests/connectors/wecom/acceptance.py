"""Acceptance case for `wecom`: fixtures are the decrypted event XML; `sign` encrypts them as WeCom does."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from connectors.wecom import WeComConnector, aes_key, encrypt, msg_signature
from hub.connector import InboundRequest
from tests.connectors.acceptance import AcceptanceCase, Handshake

FIXTURES = Path(__file__).parent / "fixtures"
CORP_ID = "wwtestcorp000001"
# Handshakes are built at import, so the acceptance config turns the clock-skew check off (tested separately).
CONFIG = {"corp_id": CORP_ID, "token": "QDG6eK", "encoding_aes_key": "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
          "suite_id": "wwsuite000000001", "max_clock_skew_s": 0}


def envelope(encrypted: str) -> bytes:
    return (f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt>"
            "<AgentID><![CDATA[218]]></AgentID></xml>").encode()


def _query(config: dict[str, Any], encrypted: str, **extra: str) -> dict[str, str]:
    timestamp, nonce = str(int(time.time())), "1372623149"
    return {"msg_signature": msg_signature(config["token"], timestamp, nonce, encrypted), "timestamp": timestamp,
            "nonce": nonce, **extra}


def sign(body: bytes, config: dict[str, Any], receive_id: str = CORP_ID) -> InboundRequest:
    encrypted = encrypt(aes_key(config["encoding_aes_key"]), body, receive_id)
    return InboundRequest("POST", envelope(encrypted), {"content-type": "text/xml"}, _query(config, encrypted))


def sign_echo(plain: str, config: dict[str, Any]) -> InboundRequest:
    encrypted = encrypt(aes_key(config["encoding_aes_key"]), plain.encode(), config["corp_id"])
    return InboundRequest("GET", b"", {}, _query(config, encrypted, echostr=encrypted))


def tamper(request: InboundRequest) -> InboundRequest:
    """Flip one base64 character of <Encrypt>: the signature covers the ciphertext, not the XML around it."""
    body = request.body.decode()
    start = body.index("<Encrypt><![CDATA[") + len("<Encrypt><![CDATA[")
    flipped = "B" if body[start + 5] != "B" else "C"
    return replace(request, body=(body[:start + 5] + flipped + body[start + 6:]).encode())


ECHO = "5927782489442352469"

CASE = AcceptanceCase(
    connector=WeComConnector,
    good_config=CONFIG,
    bad_config={"corp_id": CORP_ID, "token": "QDG6eK", "encoding_aes_key": "too-short"},
    wrong_config={**CONFIG, "token": "wrongToken"},
    sign=sign,
    raw_fixtures={p.name: p.read_bytes() for p in sorted(FIXTURES.glob("*.xml"))},
    handshakes=[Handshake(sign_echo(ECHO, CONFIG), 200, ECHO)],
    tamper=tamper,
)
