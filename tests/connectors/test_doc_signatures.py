"""Inbound requests signed by hand as platforms.md (and contract §9) describe, never with a connector's own code.

Why: the connector tests sign with the connector's helpers (`signature`, `encrypt`, `msg_signature`), so a signer
and a verifier wrong in the same way would pass there. Here each platform's rule is spelled out again from the doc,
sent over HTTP, and the near misses a careless implementation lets through are sent too: another key, one byte of
the body changed, the signature of the re-serialised JSON instead of the raw bytes, a look-alike algorithm or
encoding, a timestamp outside the window. A right request is stored before its 2xx; a wrong one is a 401 naming
the problem, and stores nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from fastapi.testclient import TestClient

from hub.runtime import Hub
from tests.helpers import add_source, client_for, raw_rows

HERE = Path(__file__).parent


@dataclass(frozen=True)
class Sent:
    """One request as the platform would send it."""

    body: bytes
    headers: dict[str, str]
    query: dict[str, str] = field(default_factory=dict)


Signer = Callable[[bytes, str], Sent]


def _reserialised(body: bytes) -> bytes:
    compact = json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":")).encode()
    assert compact != body, "the fixture must not be compact JSON already, or this near miss tests nothing"
    return compact


def _one_byte_changed(body: bytes) -> bytes:
    index = body.index(b'"') + 1
    return body[:index] + bytes([body[index] ^ 1]) + body[index + 1:]


# ---------------------------------------------------------------- Douyin §1.1: hex(sha1(client_secret + raw body))

def douyin(body: bytes, secret: str) -> Sent:
    return Sent(body, {"X-Douyin-Signature": hashlib.sha1(secret.encode() + body).hexdigest()})


def douyin_hmac(body: bytes, secret: str) -> Sent:
    return Sent(body, {"X-Douyin-Signature": hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()})


# ---------------------------------------------------------------- Xiaohongshu §3.1: sha1=hex(HMAC-SHA1(token, raw))

def xiaohongshu(body: bytes, token: str) -> Sent:
    return Sent(body, {"X-Red-Signature": "sha1=" + hmac.new(token.encode(), body, hashlib.sha1).hexdigest()})


def xiaohongshu_unprefixed(body: bytes, token: str) -> Sent:
    return Sent(body, {"X-Red-Signature": hmac.new(token.encode(), body, hashlib.sha1).hexdigest()})


# ---------------------------------------------------------------- POS / ERP, contract §9: sha256=hex(HMAC-SHA256)

def hub_push(body: bytes, secret: str) -> Sent:
    digest = hmac.new(secret.encode(), body, hashlib.sha256)
    return Sent(body, {"X-Hub-Signature-256": "sha256=" + digest.hexdigest(), "Content-Type": "application/json"})


def hub_push_base64(body: bytes, secret: str) -> Sent:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return Sent(body, {"X-Hub-Signature-256": "sha256=" + base64.b64encode(digest).decode()})


# ---------------------------------------------------------------- WeCom §6.1: AES-256-CBC + sorted-sha1 msg_signature

WECOM_CORP = "wwdoccorp0000001"
WECOM_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"


def _wecom_encrypt(message: bytes) -> str:
    key = base64.b64decode(WECOM_KEY + "=")
    plain = os.urandom(16) + struct.pack(">I", len(message)) + message + WECOM_CORP.encode()
    pad = 32 - len(plain) % 32
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain + bytes([pad]) * pad) + encryptor.finalize()).decode()


def _wecom(message: bytes, token: str, timestamp: int) -> Sent:
    encrypted, nonce = _wecom_encrypt(message), "1372623149"
    signature = hashlib.sha1("".join(sorted([token, str(timestamp), nonce, encrypted])).encode()).hexdigest()
    body = f"<xml><ToUserName><![CDATA[{WECOM_CORP}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    return Sent(body.encode(), {"Content-Type": "text/xml"},
                {"msg_signature": signature, "timestamp": str(timestamp), "nonce": nonce})


def wecom(message: bytes, token: str) -> Sent:
    return _wecom(message, token, int(time.time()))


def wecom_an_hour_old(message: bytes, token: str) -> Sent:
    return _wecom(message, token, int(time.time()) - 3600)


# ---------------------------------------------------------------- the cases

@dataclass(frozen=True)
class Case:
    connector: str
    config: dict[str, object]
    secret: str
    fixture: Path
    sign: Signer
    near_misses: dict[str, Callable[[bytes, str], Sent]]


def _wrong_key(sign: Signer) -> Callable[[bytes, str], Sent]:
    return lambda body, secret: sign(body, secret + "x")


def _body_changed(sign: Signer) -> Callable[[bytes, str], Sent]:
    return lambda body, secret: Sent(_one_byte_changed(body), sign(body, secret).headers, sign(body, secret).query)


def _signed_reserialised(sign: Signer) -> Callable[[bytes, str], Sent]:
    return lambda body, secret: Sent(body, sign(_reserialised(body), secret).headers)


def _json_near_misses(sign: Signer) -> dict[str, Callable[[bytes, str], Sent]]:
    return {"wrong key": _wrong_key(sign), "one byte changed": _body_changed(sign),
            "signature of re-serialised JSON": _signed_reserialised(sign)}


POS_SECRET, ERP_SECRET = "pos-doc-secret-000001", "erp-doc-secret-000001"
CASES = [
    Case("douyin", {"client_key": "awdoc000000001", "client_secret": "dy-doc-secret"}, "dy-doc-secret",
         HERE / "douyin/fixtures/im_receive_msg.json", douyin,
         {**_json_near_misses(douyin), "HMAC-SHA1 instead of plain SHA-1": douyin_hmac}),
    Case("xiaohongshu", {"token": "xhs-doc-token"}, "xhs-doc-token",
         HERE / "xiaohongshu/fixtures/lead_push.json", xiaohongshu,
         {**_json_near_misses(xiaohongshu), "digest without sha1=": xiaohongshu_unprefixed}),
    Case("pos", {"secret": POS_SECRET}, POS_SECRET, HERE / "pos/fixtures/purchase.json", hub_push,
         {**_json_near_misses(hub_push), "base64 digest": hub_push_base64}),
    Case("erp", {"secret": ERP_SECRET}, ERP_SECRET, HERE / "erp/fixtures/order_created.json", hub_push,
         {**_json_near_misses(hub_push), "base64 digest": hub_push_base64}),
    Case("wecom", {"corp_id": WECOM_CORP, "token": "doctoken", "encoding_aes_key": WECOM_KEY}, "doctoken",
         HERE / "wecom/fixtures/add_external_contact.xml", wecom,
         {"wrong token": _wrong_key(wecom), "timestamp an hour old": wecom_an_hour_old}),
]


def _post(client: TestClient, source_id: str, sent: Sent) -> tuple[int, object]:
    resp = client.post(f"/hooks/{source_id}", content=sent.body, headers=sent.headers, params=sent.query)
    return resp.status_code, (resp.json() if resp.content else None)


@pytest.mark.parametrize("case", CASES, ids=[c.connector for c in CASES])
def test_requests_signed_from_the_doc_are_stored_and_near_misses_refused(case: Case, hub: Hub) -> None:
    client = client_for(hub)
    source_id = add_source(client, case.connector, f"doc-{case.connector}", case.config)
    body = case.fixture.read_bytes()
    for label, near_miss in case.near_misses.items():
        status, answer = _post(client, source_id, near_miss(body, case.secret))
        assert status == 401, f"{label}: {status} {answer}"
        assert isinstance(answer, dict) and answer["error"]["code"] and answer["error"]["message"], label
        assert raw_rows(hub) == [], f"{label}: a refused request was stored"
    status, _ = _post(client, source_id, case.sign(body, case.secret))
    assert 200 <= status < 300
    assert len(raw_rows(hub)) == 1  # durable before the answer, not after
