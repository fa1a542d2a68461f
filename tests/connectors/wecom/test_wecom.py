"""WeCom crypto (incl. the official sample vector), event mapping, and end-to-end over HTTP."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

import pytest
from sqlalchemy import func, select

from connectors.wecom import WeComConnector, aes_key, decrypt, encrypt
from hub.connector import InboundRequest, ParseContext
from hub.errors import InvalidRequest, PayloadError, UnreadableBody, VerificationError
from hub.runtime import Hub
from hub.schemas import EventDraft, utcnow
from identity.models import CustomerRow
from tests.connectors.wecom.acceptance import CONFIG, CORP_ID, FIXTURES, envelope, sign, sign_echo
from tests.helpers import add_source, client_for, count_events, wait_processed

connector = WeComConnector()
config = connector.validate_config(CONFIG)
EXTERNAL = "woAJ2GCAAAXtWyujaWJHDDGi0mACAAAA"

# The URL-verification example of WeCom's 加解密方案说明 (also the official WXBizMsgCrypt sample).
OFFICIAL = {"corp_id": "wx5823bf96d3bd56c7", "token": "QDG6eK",
            "encoding_aes_key": "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "max_clock_skew_s": 0}
OFFICIAL_QUERY = {"msg_signature": "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3", "timestamp": "1409659589",
                  "nonce": "263014780",
                  "echostr": "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="}


class _State:
    def get(self, key: str) -> None:
        return None

    def set(self, key: str, value: object) -> None:
        pass


def parse(name: str) -> EventDraft:
    request = sign((FIXTURES / name).read_bytes(), CONFIG)
    [draft] = connector.parse(request, config, ParseContext(uuid.uuid4(), "wecom", utcnow(), _State()))
    return draft


def test_official_url_verification_vector() -> None:
    official = connector.validate_config(OFFICIAL)
    request = InboundRequest("GET", b"", {}, OFFICIAL_QUERY)
    connector.verify(request, official)
    reply = connector.handshake(request, official)
    assert reply is not None and reply.status == 200 and reply.media_type == "text/plain"
    assert reply.content() == b"1616140317555161061"
    with pytest.raises(VerificationError):
        connector.verify(replace(request, query={**OFFICIAL_QUERY, "nonce": "1"}), official)


def test_crypto_round_trip_checks_receiveid_and_padding() -> None:
    key = aes_key(CONFIG["encoding_aes_key"])
    encrypted = encrypt(key, "<xml>你好</xml>".encode(), CORP_ID)
    assert decrypt(key, encrypted, {CORP_ID}) == "<xml>你好</xml>".encode()
    with pytest.raises(VerificationError) as err:
        decrypt(key, encrypted, {"another-corp"})
    assert err.value.code == "receiveid_mismatch"
    with pytest.raises(VerificationError):
        decrypt(aes_key("a" * 43), encrypted, {CORP_ID})
    with pytest.raises(VerificationError):
        decrypt(key, "not base64!", {CORP_ID})


def test_config_rejects_a_bad_aes_key() -> None:
    with pytest.raises(InvalidRequest) as err:
        connector.validate_config({**CONFIG, "encoding_aes_key": "!" * 43})
    assert "encoding_aes_key" in err.value.message


def test_stale_timestamps_are_refused() -> None:
    strict = connector.validate_config({**CONFIG, "max_clock_skew_s": 300})
    request = sign((FIXTURES / "add_external_contact.xml").read_bytes(), CONFIG)
    connector.verify(request, strict)
    old = str(int(time.time()) - 3600)
    with pytest.raises(VerificationError) as err:
        connector.verify(replace(request, query={**request.query, "timestamp": old}), strict)
    assert err.value.code == "stale_timestamp"
    with pytest.raises(VerificationError) as err:
        connector.verify(replace(request, query={}), strict)
    assert err.value.code == "missing_signature"


@pytest.mark.parametrize("timestamp", ["9" * 400, "-" + "9" * 400])
def test_a_timestamp_too_large_for_a_float_is_refused_not_a_500(timestamp: str) -> None:
    strict = connector.validate_config({**CONFIG, "max_clock_skew_s": 300})
    request = sign((FIXTURES / "add_external_contact.xml").read_bytes(), CONFIG)
    with pytest.raises(VerificationError) as err:
        connector.verify(replace(request, query={**request.query, "timestamp": timestamp}), strict)
    assert err.value.code == "stale_timestamp"


def test_add_external_contact_state_is_the_campaign() -> None:
    draft = parse("add_external_contact.xml")
    assert draft.type == "contact.added"
    assert [(i.type, i.value) for i in draft.identities] == [("wecom_external_userid", EXTERNAL)]
    assert draft.campaign is not None
    assert (draft.campaign.source, draft.campaign.medium, draft.campaign.name) == (
        "wecom", "contact_way", "spring2026-qr-shanghai")
    assert draft.properties["user_id"] == "zhangsan" and draft.properties["welcome_code_present"] is True
    assert "WELCOMECODE" not in str(draft.model_dump())
    assert draft.occurred_at.timestamp() == 1772505000


@pytest.mark.parametrize(("name", "kind", "extra"), [
    ("add_half_external_contact.xml", "contact.added", {"state": "hkl-customer-channel-01"}),
    ("edit_external_contact.xml", "contact.updated", {}),
    ("del_external_contact.xml", "contact.removed", {"removed_by": "employee", "removal_source": "DELETE_BY_TRANSFER"}),
    ("del_follow_user.xml", "contact.removed", {"removed_by": "customer"}),
    ("transfer_fail.xml", "wecom.transfer_fail", {"fail_reason": "customer_refused"}),
    ("msg_audit_approved.xml", "wecom.msg_audit_approved", {}),
])
def test_contact_changes(name: str, kind: str, extra: dict[str, str]) -> None:
    draft = parse(name)
    assert draft.type == kind
    assert [(i.type, i.value) for i in draft.identities] == [("wecom_external_userid", EXTERNAL)]
    assert extra.items() <= draft.properties.items()
    assert (draft.campaign is not None) == (kind == "contact.added")


@pytest.mark.parametrize(("name", "change", "tag_type"), [
    ("change_external_tag_create.xml", "create", "tag"), ("change_external_tag_shuffle.xml", "shuffle", None),
    ("change_external_tag_delete_group.xml", "delete", "tag_group"),
])
def test_tag_changes_are_recorded(name: str, change: str, tag_type: str | None) -> None:
    draft = parse(name)
    assert draft.type == "wecom.tag_changed" and draft.identities == []
    assert draft.properties["change_type"] == change and draft.properties.get("tag_type") == tag_type
    assert draft.properties["id"].startswith("et")


@pytest.mark.parametrize("xml", [
    "<xml><ToUserName>c</ToUserName><Event>change_external_contact</Event><ChangeType>{long}</ChangeType>"
    "<ExternalUserID>wm1</ExternalUserID><CreateTime>1772505000</CreateTime></xml>",
    "<xml><ToUserName>c</ToUserName><Event>{long}</Event><CreateTime>1772505000</CreateTime></xml>",
])
def test_an_unknown_long_event_or_change_type_fits_the_type_column(xml: str) -> None:
    """events.type is VARCHAR(64): a longer type failed every insert on PostgreSQL, so the event was never stored."""
    request = sign(xml.format(long="x" * 100).encode(), CONFIG)
    [draft] = connector.parse(request, config, ParseContext(uuid.uuid4(), "wecom", utcnow(), _State()))
    assert draft.type.startswith("wecom.x") and len(draft.type) == 64


def test_third_party_envelope() -> None:
    draft = parse("third_party_add_external_contact.xml")
    assert draft.type == "contact.added" and draft.properties["suite_id"] == "wwsuite000000001"
    assert draft.properties["corp_id"] == CORP_ID and draft.campaign and draft.campaign.name == "isv-contact-way-7"
    assert draft.occurred_at.timestamp() == 1772505400
    suite_signed = sign((FIXTURES / "third_party_add_external_contact.xml").read_bytes(), CONFIG, "wwsuite000000001")
    assert connector.dedup_key(suite_signed, config).startswith(f"{CORP_ID}|change_external_contact|")


def test_dedup_key_is_stable_and_event_specific() -> None:
    add = connector.dedup_key(sign((FIXTURES / "add_external_contact.xml").read_bytes(), CONFIG), config)
    again = connector.dedup_key(sign((FIXTURES / "add_external_contact.xml").read_bytes(), CONFIG), config)
    edit = connector.dedup_key(sign((FIXTURES / "edit_external_contact.xml").read_bytes(), CONFIG), config)
    assert add == again != edit
    assert add == f"{CORP_ID}|change_external_contact|add_external_contact|{EXTERNAL}|zhangsan|1772505000"


def _xml(fields: dict[str, str]) -> bytes:
    return ("<xml>" + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items()) + "</xml>").encode()


def test_events_that_differ_only_in_chat_sender_or_message_id_get_different_keys() -> None:
    """Before, two group chats changed in the same second shared one key and the second was dropped."""
    base = {"ToUserName": CORP_ID, "FromUserName": "sys", "CreateTime": "1772505000", "MsgType": "event"}
    chats = [{**base, "Event": "change_external_chat", "ChatId": chat, "ChangeType": "update"}
             for chat in ("wrOgQhDgAAMYQiS5ol9G7gK9JVAAAA", "wrOgQhDgAAMYQiS5ol9G7gK9JVBBBB")]
    texts = [{**base, "FromUserName": user, "MsgType": "text", "Content": "hi", "MsgId": msg}
             for user, msg in (("zhangsan", "7000000000000000001"), ("lisi", "7000000000000000002"))]
    for pair in (chats, texts):
        first, second = (connector.dedup_key(sign(_xml(fields), CONFIG), config) for fields in pair)
        assert first != second
        assert first == connector.dedup_key(sign(_xml(pair[0]), CONFIG), config)  # still stable


def test_events_that_differ_only_past_300_characters_get_different_keys() -> None:
    """The key was cut at 300 characters: behind a long ExternalUserID, two events a second apart had one key, and
    the second was answered 200 and dropped as a duplicate."""
    base = {"ToUserName": CORP_ID, "Event": "change_external_contact", "ChangeType": "edit_external_contact",
            "ExternalUserID": "wo" + "A" * 290}
    first, second = (connector.dedup_key(sign(_xml({**base, "CreateTime": t}), CONFIG), config)
                     for t in ("1772505000", "1772505001"))
    assert first != second and len(first) <= 300 and len(second) <= 300


def test_entity_declarations_are_refused() -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><xml><Encrypt>&a;</Encrypt></xml>'
    with pytest.raises(UnreadableBody):  # 400 before any signature check: the XML is never expanded
        connector.verify(InboundRequest("POST", bomb, {}, {"msg_signature": "x", "timestamp": "1", "nonce": "1"}),
                         config)
    with pytest.raises(PayloadError) as inner:  # inside a verified envelope: kept and quarantined, never expanded
        connector.dedup_key(sign(bomb, CONFIG), config)
    assert not isinstance(inner.value, UnreadableBody) and inner.value.code == "invalid_xml"


@pytest.mark.parametrize("raw", [
    '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY a "aaaa">]><xml><Encrypt>&a;</Encrypt></xml>'
    .encode("utf-16"),  # the byte check saw no "<!DOCTYPE" in UTF-16 (helper-31)
    '<?xml version="1.0" encoding="UTF-16LE"?><!DOCTYPE x><xml/>'.encode("utf-16-le"),
    b'<?xml version="1.0" encoding="latin-1"?><xml><Encrypt>x</Encrypt></xml>',
    b"<\x00!\x00D\x00O\x00C\x00T\x00Y\x00P\x00E\x00",
])
def test_xml_in_another_encoding_is_refused_before_it_is_parsed(raw: bytes) -> None:
    with pytest.raises(UnreadableBody):
        connector.verify(InboundRequest("POST", raw, {}, {"msg_signature": "x", "timestamp": "1", "nonce": "1"}),
                         config)


def test_end_to_end_over_http(hub: Hub) -> None:
    client = client_for(hub)
    live = {**CONFIG, "max_clock_skew_s": 300}
    source_id = add_source(client, "wecom", "brand-wecom", live)
    echo = sign_echo("8327310442398735621", live)
    resp = client.get(f"/hooks/{source_id}", params=dict(echo.query))
    assert resp.status_code == 200 and resp.content == b"8327310442398735621"
    assert resp.headers["content-type"].startswith("text/plain")

    request = sign((FIXTURES / "add_external_contact.xml").read_bytes(), live)
    resp = client.post(f"/hooks/{source_id}", content=request.body, params=dict(request.query),
                       headers={"content-type": "text/xml"})
    assert resp.status_code == 200 and resp.content == b""
    again = client.post(f"/hooks/{source_id}", content=request.body, params=dict(request.query),
                        headers={"content-type": "text/xml"})
    assert again.status_code == 200 and again.content == b""
    bad = client.post(f"/hooks/{source_id}", content=request.body,
                      params={**request.query, "msg_signature": "0" * 40}, headers={"content-type": "text/xml"})
    assert bad.status_code == 401
    forged = envelope(encrypt(aes_key(CONFIG["encoding_aes_key"]), b"<xml/>", CORP_ID))
    assert client.post(f"/hooks/{source_id}", content=forged, params=dict(request.query)).status_code == 401
    tag = sign((FIXTURES / "change_external_tag_create.xml").read_bytes(), live)
    assert client.post(f"/hooks/{source_id}", content=tag.body, params=dict(tag.query),
                       headers={"content-type": "text/xml"}).status_code == 200
    wait_processed(hub)
    assert count_events(hub, source="wecom", type="contact.added") == 1
    # A tag-library change concerns no customer: stored, with no customer made up for it.
    assert count_events(hub, type="wecom.tag_changed", customer_id=None) == 1
    with hub.sessions() as session:
        assert session.scalar(select(func.count()).select_from(CustomerRow)) == 1
