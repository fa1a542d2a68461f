"""Douyin mapping, signature, dedup and one end-to-end run over HTTP."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from connectors.douyin import DouyinConnector, signature
from connectors.douyin.mapping import envelope_to_draft
from connectors.douyin.payloads import read_envelope
from hub.connector import InboundRequest, ParseContext
from hub.errors import PayloadError, VerificationError
from hub.runtime import Hub
from hub.schemas import EventDraft, utcnow
from tests.connectors.douyin.acceptance import CONFIG, FIXTURES, sign
from tests.helpers import client_for, count_events, wait_processed

CUSTOMER = "_000QadFMhmWSGhO8Ei3dBz4ZxAqtDAsFtYm"
BRAND = "_000Lx7Nj9oBcJ3mhGqF2eK1wJxM8yZ2Rtest"
connector = DouyinConnector()
config = connector.validate_config(CONFIG)


class _State:
    def get(self, key: str) -> None:
        return None

    def set(self, key: str, value: object) -> None:
        pass


def parse(name: str, headers: dict[str, str] | None = None) -> EventDraft:
    request = sign((FIXTURES / name).read_bytes(), CONFIG)
    request = replace(request, headers={**request.headers, **(headers or {})})
    [draft] = connector.parse(request, config, ParseContext(uuid.uuid4(), "dy", utcnow(), _State()))
    return draft


def idents(draft: EventDraft) -> list[tuple[str, str]]:
    return [(i.type, i.value) for i in draft.identities]


def test_received_message_keeps_text_type_and_conversation() -> None:
    draft = parse("im_receive_msg.json")
    assert draft.type == "message.received"
    assert draft.properties["text"] == "你好，Python 就业班多少钱？"
    assert draft.properties["message_type"] == "text"
    assert draft.properties["conversation_short_id"] == "7306432791234567890"
    assert idents(draft) == [("douyin_open_id", CUSTOMER)]
    assert draft.traits["nickname"] == "张伟"
    assert draft.occurred_at == datetime(2026, 3, 2, 11, 41, tzinfo=UTC)
    assert draft.campaign is None and draft.properties["raw"]["server_message_id"] == "7306432799999990001"


def test_sent_message_is_about_the_receiver() -> None:
    draft = parse("im_send_msg.json")
    assert draft.type == "message.sent" and draft.properties["direction"] == "outbound"
    assert idents(draft) == [("douyin_open_id", CUSTOMER)]
    assert draft.properties["text"] == "您好！就业班 12800 元"


def test_content_as_json_string_is_read() -> None:
    draft = parse("im_receive_msg_image_content_string.json")
    assert draft.type == "message.received" and draft.properties["message_type"] == "image"
    assert draft.properties["text"] is None and draft.source_event_id == "smid:im_receive_msg:7306432799999990003"


def test_entering_a_dm_from_an_ad_carries_the_campaign() -> None:
    draft = parse("im_enter_direct_msg.json")
    assert draft.type == "conversation.opened"
    assert draft.campaign is not None
    assert draft.campaign.source == "douyin" and draft.campaign.name == "spring2026-python-im"
    assert draft.campaign.ad_ids == {"adv_id": "1760000000000001", "ad_id": "1790000000000123",
                                     "creative_id": "1790000000000456", "promotion_id": "7300000000000789",
                                     "material_video_id": "7305000000000000001"}
    assert draft.properties["object_id"] == "7305000000000000001"  # contract: snake_case field names


@pytest.mark.parametrize(("name", "kind"), [
    ("authorize.json", "douyin.authorize"), ("unauthorize.json", "douyin.unauthorize"),
    ("new_follow_action.json", "douyin.follow"), ("new_video_digg.json", "douyin.like"),
    ("create_video.json", "douyin.create_video"),
])
def test_other_events_are_kept(name: str, kind: str) -> None:
    draft = parse(name)
    assert draft.type == kind and idents(draft) == [("douyin_open_id", CUSTOMER)]
    assert draft.properties["raw"] == json.loads((FIXTURES / name).read_bytes())["content"]


def test_unknown_event_names_are_never_dropped() -> None:
    envelope = read_envelope(json.dumps({"event": "brand_new_event", "from_user_id": "ou1", "content": "{}"}).encode())
    draft = envelope_to_draft(envelope, "x", utcnow())
    assert draft.type == "douyin.brand_new_event"


def test_union_id_becomes_an_identity() -> None:
    envelope = read_envelope(json.dumps({"event": "authorize", "from_user_id": "ou1",
                                         "content": {"union_id": "un-1"}}).encode())
    draft = envelope_to_draft(envelope, "x", utcnow())
    assert idents(draft) == [("douyin_open_id", "ou1"), ("douyin_union_id", "un-1")]


def test_lead_events_keep_raw_content_and_pick_up_a_phone(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="connectors.douyin.mapping"):
        draft = parse("dial_phone.json")
    assert draft.type == "lead.submitted" and draft.properties["raw"] == {}
    assert "content UNCONFIRMED" in caplog.text
    card = read_envelope(json.dumps({"event": "im_receive_msg", "from_user_id": "ou1", "content": {
        "message_type": "retain_consult_card", "phone": "13800138000", "name": "张伟"}}).encode())
    draft = envelope_to_draft(card, "x", utcnow())
    assert draft.type == "lead.submitted" and ("phone", "13800138000") in idents(draft)
    assert draft.traits["name"] == "张伟"


def test_text_key_variants_are_accepted() -> None:
    for content in ({"message_type": "text", "text": {"text": "hi"}}, {"message_type": "text", "content": "hi"}):
        doc = {"event": "im_receive_msg", "from_user_id": "a", "content": content}
        envelope = read_envelope(json.dumps(doc).encode())
        assert envelope_to_draft(envelope, "x", utcnow()).properties["text"] == "hi"


def test_signature_is_sha1_of_secret_then_body() -> None:
    body = b'{"event":"authorize"}'
    assert signature(b"sec", body) == hashlib.sha1(b"sec" + body).hexdigest()
    request = sign(body, CONFIG)
    connector.verify(replace(request, headers={"x-douyin-signature": request.headers["x-douyin-signature"].upper()}),
                     config)
    with pytest.raises(VerificationError) as err:
        connector.verify(replace(request, headers={}), config)
    assert err.value.code == "missing_signature"


def test_webhook_secret_overrides_client_secret_for_signatures() -> None:
    mini = connector.validate_config({**CONFIG, "webhook_secret": "mini-app-webhook-key"})
    body = b'{"event":"authorize"}'
    connector.verify(sign(body, {**CONFIG, "webhook_secret": "mini-app-webhook-key"}), mini)
    with pytest.raises(VerificationError):
        connector.verify(sign(body, CONFIG), mini)


def test_dedup_prefers_msg_id_then_server_message_id_then_log_id() -> None:
    body = (FIXTURES / "im_receive_msg.json").read_bytes()
    request = sign(body, CONFIG)
    assert connector.dedup_key(request, config) == "smid:im_receive_msg:7306432799999990001"
    assert connector.dedup_key(replace(request, headers={"msg-id": "m-1"}), config) == "msg:m-1"
    follow = sign((FIXTURES / "new_follow_action.json").read_bytes(), CONFIG)
    assert connector.dedup_key(follow, config) == "log:202603021946000102030406"
    with pytest.raises(PayloadError):
        connector.dedup_key(InboundRequest("POST", b"[1]"), config)


def test_two_events_naming_one_message_without_msg_id_are_both_kept(hub: Hub) -> None:
    """Without Msg-Id the request was keyed on server_message_id alone, so the second event was a 'duplicate'."""
    from tests.helpers import add_source

    client = client_for(hub)
    source_id = add_source(client, "douyin", "brand-douyin", CONFIG)
    content = {"server_message_id": "7306432799999990042", "create_time": 1772422860000}
    for doc in ({"event": "im_enter_direct_msg", "from_user_id": CUSTOMER, "content": json.dumps(content)},
                {"event": "im_receive_msg", "from_user_id": CUSTOMER,
                 "content": {**content, "message_type": "retain_consult_card", "phone": "13800138000"}}):
        body = json.dumps(doc).encode()
        resp = client.post(f"/hooks/{source_id}", content=body, headers=dict(sign(body, CONFIG).headers))
        assert resp.status_code == 200 and resp.json() == {"accepted": 1, "duplicates": 0}
    wait_processed(hub)
    assert count_events(hub, type="conversation.opened") == 1 and count_events(hub, type="lead.submitted") == 1


def test_a_long_event_name_fits_the_stored_columns() -> None:
    """events.type is VARCHAR(64) and source_event_id VARCHAR(300): longer values failed every PostgreSQL insert."""
    doc = {"event": "e" * 500, "from_user_id": CUSTOMER, "content": {"server_message_id": "9" * 500}}
    request = sign(json.dumps(doc).encode(), CONFIG)
    [draft] = connector.parse(request, config, ParseContext(uuid.uuid4(), "dy", utcnow(), _State()))
    assert draft.type.startswith("douyin.e") and len(draft.type) <= 64
    assert len(draft.source_event_id) <= 300 and len(connector.dedup_key(request, config)) <= 300


@pytest.mark.parametrize(("body", "named"), [
    (b'{"from_user_id": "ou1"}', "event: Field required"),
    (b'{"event": "authorize", "\\ud800": 1}', "a field name: Input should be a valid string"),
])
def test_a_body_that_is_no_envelope_is_quarantined_naming_what_is_wrong(body: bytes, named: str) -> None:
    """The reason said "'event' is missing" whatever was wrong (here a field name pydantic cannot read)."""
    with pytest.raises(PayloadError) as err:
        read_envelope(body)
    assert err.value.code == "invalid_envelope" and named in err.value.message


def test_end_to_end_over_http(hub: Hub) -> None:
    client = client_for(hub)
    from tests.helpers import add_source

    source_id = add_source(client, "douyin", "brand-douyin", CONFIG)
    verify = (FIXTURES / "verify_webhook.json").read_bytes()
    resp = client.post(f"/hooks/{source_id}", content=verify, headers=dict(sign(verify, CONFIG).headers))
    assert resp.status_code == 200 and resp.content == b'{"challenge":12345}'

    body = (FIXTURES / "im_receive_msg.json").read_bytes()
    headers = {**sign(body, CONFIG).headers, "msg-id": "e2e-msg-1"}
    resp = client.post(f"/hooks/{source_id}", content=body, headers=headers)
    assert resp.status_code == 200 and resp.json() == {"accepted": 1, "duplicates": 0}
    again = client.post(f"/hooks/{source_id}", content=body, headers=headers)
    assert again.status_code == 200 and again.json() == {"accepted": 0, "duplicates": 1}

    bad = client.post(f"/hooks/{source_id}", content=body, headers={**headers, "x-douyin-signature": "0" * 40})
    assert bad.status_code == 401
    # Msg-Id is not signed: a captured request resent under new ones is no new event (helper-31)
    for forged in ("forged-0", "forged-1"):
        resent = client.post(f"/hooks/{source_id}", content=body, headers={**headers, "msg-id": forged})
        assert resent.status_code == 200
    wait_processed(hub)
    assert count_events(hub, source="douyin") == 1
    assert count_events(hub, type="message.received") == 1


@pytest.mark.parametrize("msg_id", [None, "old-msg-1"])
def test_an_event_stored_under_its_pre_upgrade_key_is_not_stored_again(any_hub: Hub, msg_id: str | None) -> None:
    """crmhub before 2026-12-06 keyed a push on `msg:<Msg-Id>`, else `smid:<server_message_id>`. Upgraded from it,
    a push without Msg-Id that Douyin redelivered got new keys (measured: 2 events and 2 deliveries of one
    message), and a replay of a request stored then made a second event (5 of the demo's 5 Douyin requests)."""
    from sqlalchemy import update

    from hub.models import EventRow, RawEvent
    from hub.pipeline import replay_raw
    from tests.helpers import add_source

    hub = any_hub
    client = client_for(hub)
    source_id = add_source(client, "douyin", "brand-douyin", CONFIG)
    body = (FIXTURES / "im_receive_msg.json").read_bytes()
    headers = {**sign(body, CONFIG).headers, **({"msg-id": msg_id} if msg_id else {})}
    assert client.post(f"/hooks/{source_id}", content=body, headers=headers).json()["accepted"] == 1
    wait_processed(hub)
    old_key = f"msg:{msg_id}" if msg_id else "smid:7306432799999990001"
    with hub.transaction() as session:  # the keys the older crmhub stored the request and its event under
        session.execute(update(EventRow).values(source_event_id=old_key))
        session.execute(update(RawEvent).values(dedup_key=old_key))
    if msg_id is None:  # Douyin redelivers: a new request key now, so the request is stored again
        assert client.post(f"/hooks/{source_id}", content=body, headers=headers).json()["accepted"] == 1
    else:  # the operator replays the stored request
        with hub.transaction() as session:
            session.execute(update(RawEvent).values(status="failed"))
        assert len(replay_raw(hub)) == 1
    wait_processed(hub)
    assert count_events(hub, source="douyin") == 1
