"""Text no database can store, in an admin request, is a 422 naming the field, not a 500 (contract §3).

JSON spells NUL as `\\u0000` (PostgreSQL refuses it in text and jsonb) and a lone surrogate as `\\ud83d` (a client
cutting a string inside an emoji; no database can encode it as UTF-8).
"""

from __future__ import annotations

import json

import pytest

from hub import push
from hub.runtime import Hub
from hub.schemas import unstorable_text
from tests.helpers import ADMIN, add_source, client_for, wait_processed

SECRET = "0123456789abcdef0123"
JSON = {**ADMIN, "content-type": "application/json"}
NUL, SURROGATE = "\\u0000", "\\ud83d"  # as a JSON body spells them


def _error(resp_body: dict) -> tuple[str, str]:  # type: ignore[type-arg]
    (detail,) = resp_body["error"]["details"]
    return detail["field"], detail["message"]


@pytest.mark.parametrize("bad", [NUL, SURROGATE])
def test_sources_and_endpoints_refuse_unstorable_text_naming_the_field(any_hub: Hub, bad: str) -> None:
    client = client_for(any_hub)
    cases = [
        ("/v1/sources", f'{{"connector": "pos", "name": "till{bad}", "config": {{"secret": "{SECRET}"}}}}', "name"),
        ("/v1/sources", f'{{"connector": "pos", "name": "till", "config": {{"secret": "{SECRET}{bad}"}}}}',
         "config"),
        ("/v1/endpoints", f'{{"url": "https://crm.example.com/{bad}"}}', "url"),
        ("/v1/endpoints", f'{{"url": "https://crm.example.com/", "event_types": ["*", "lead{bad}"]}}',
         "event_types"),
        ("/v1/endpoints", f'{{"url": "https://crm.example.com/", "description": "crm {bad}"}}', "description"),
    ]
    for path, body, field in cases:
        resp = client.post(path, headers=JSON, content=body.encode())
        assert resp.status_code == 422, (body, resp.text)
        assert _error(resp.json())[0] == field and "cannot be stored" in _error(resp.json())[1]
    sid = add_source(client, "pos", "till", {"secret": SECRET})
    patched = client.patch(f"/v1/sources/{sid}", headers=JSON, content=f'{{"name": "t{bad}"}}'.encode())
    assert patched.status_code == 422 and _error(patched.json())[0] == "name"
    assert [s["name"] for s in client.get("/v1/sources", headers=ADMIN).json()["items"]] == ["till"]


def test_split_reason_and_feed_types_refuse_nul(any_hub: Hub) -> None:
    client = client_for(any_hub)
    sid = add_source(client, "pos", "till", {"secret": SECRET})
    body = json.dumps({"event_id": "e1", "type": "purchase", "member_card_no": "M1", "phone": "13800138000",
                       "order_no": "O1", "amount": 1, "paid_at": "2026-03-05T12:00:00+08:00"}).encode()
    signed = {"content-type": "application/json", push.SIGNATURE_HEADER: push.sign(body, SECRET)}
    assert client.post(f"/hooks/{sid}", content=body, headers=signed).status_code == 200
    wait_processed(any_hub)
    (event,) = client.get("/v1/events", headers=ADMIN).json()["items"]
    split = ('{"identities": [{"type": "pos_member_id", "value": "M1"}], "reason": "two people' + NUL + '"}').encode()
    resp = client.post(f"/v1/customers/{event['customer_id']}/split", headers=JSON, content=split)
    assert resp.status_code == 422 and _error(resp.json())[0] == "reason"
    feed = client.get("/v1/events", headers=ADMIN, params={"types": "purchase.completed\x00"})
    assert feed.status_code == 422 and _error(feed.json())[0] == "types"


def test_unstorable_text_names_where_it_is() -> None:
    assert unstorable_text({"label_map": {"姓名": "name"}, "n": 1, "ok": ["😀"]}) is None
    assert unstorable_text({"a": {"b": ["x", "y\ud800"]}}) == (
        "a.b[1]: U+D800 (an unpaired surrogate) cannot be stored; send plain text")
    assert unstorable_text({"k\x00": 1}) == "k\\u0000: U+0000 (NUL) cannot be stored; send plain text"


def test_a_validators_message_comes_without_pydantics_prefix(hub: Hub) -> None:
    sid = add_source(client_for(hub), "pos", "till", {"secret": SECRET})
    resp = client_for(hub).patch(f"/v1/sources/{sid}", headers=ADMIN, json={"enabled": None})
    assert _error(resp.json()) == ("enabled", "enabled cannot be null; leave it out to keep the current value")
