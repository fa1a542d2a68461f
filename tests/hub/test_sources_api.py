"""`POST/PATCH /v1/sources` (contract §3): an unknown connector or a bad config is a 422 naming the field."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from hub import push
from hub.connector import SECRET_MASK
from hub.models import SourceRow
from hub.runtime import Hub
from tests.helpers import ADMIN, add_source, client_for

KEY = "write-key-0123456789"
ERP = {"base_url": "http://127.0.0.1:9/", "app_key": "k", "app_secret": "s"}


def _fields(resp_json: dict) -> list[str]:  # type: ignore[type-arg]
    return [d["field"] for d in resp_json["error"]["details"]]


def test_unknown_connector_is_422_naming_connector(hub: Hub) -> None:
    resp = client_for(hub).post("/v1/sources", headers=ADMIN, json={"connector": "nosuch", "name": "x", "config": {}})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "unknown_connector"
    assert _fields(resp.json()) == ["connector"] and "web" in resp.json()["error"]["details"][0]["message"]


def test_a_misspelt_config_key_is_refused_not_ignored(hub: Hub) -> None:
    client = client_for(hub)
    resp = client.post("/v1/sources", headers=ADMIN,
                       json={"connector": "web", "name": "site", "config": {"write_key": KEY, "write_kye": "x"}})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_config"
    assert _fields(resp.json()) == ["write_kye"]
    sid = add_source(client, "web", "site", {"write_key": KEY})
    patched = client.patch(f"/v1/sources/{sid}", headers=ADMIN, json={"config": {"writekey": KEY}})
    assert patched.status_code == 422 and _fields(patched.json()) == ["writekey"]


def test_a_short_secret_is_measured_in_characters(hub: Hub) -> None:
    resp = client_for(hub).post("/v1/sources", headers=ADMIN,
                                json={"connector": "pos", "name": "till", "config": {"secret": "short"}})
    assert resp.status_code == 422
    assert resp.json()["error"]["details"] == [{"field": "secret", "message": "at least 16 characters, not 5"}]


def test_a_stored_key_a_later_version_dropped_does_not_break_the_source(hub: Hub) -> None:
    client = client_for(hub)
    sid = add_source(client, "web", "site", {"write_key": KEY})
    with hub.transaction() as session:
        row = session.get(SourceRow, uuid.UUID(sid))
        assert row is not None
        row.config_sealed = hub.box.seal({**hub.box.open(row.config_sealed), "retired_setting": 1})
    hub.forget_source(row.id)
    assert client.post(f"/hooks/{sid}/v1/track", auth=(KEY, ""),
                       json={"userId": "u1", "event": "Viewed"}).status_code == 200
    renamed = client.patch(f"/v1/sources/{sid}", headers=ADMIN, json={"config": {"write_key": KEY + "x"}})
    assert renamed.status_code == 200, renamed.text


def test_patching_back_what_get_showed_keeps_the_secret(hub: Hub) -> None:
    """GET masks secrets; a client that PATCHes the config it was shown must not replace them with the mask."""
    client = client_for(hub)
    secret = "pos-secret-0123456789"
    sid = add_source(client, "pos", "till", {"secret": secret})
    shown = client.get(f"/v1/sources/{sid}", headers=ADMIN).json()["config"]
    assert shown == {"secret": SECRET_MASK}
    assert client.patch(f"/v1/sources/{sid}", headers=ADMIN, json={"config": shown}).status_code == 200
    body = json.dumps({"event_id": "sale-1", "type": "purchase.completed", "member_card": "M1",
                       "phone": "13800138000", "amount": 10, "currency": "CNY",
                       "occurred_at": "2026-12-01T10:00:00+08:00"}).encode()
    signed = {"content-type": "application/json", push.SIGNATURE_HEADER: push.sign(body, secret)}
    assert client.post(f"/hooks/{sid}", content=body, headers=signed).status_code == 200
    with hub.sessions() as session:
        row = session.get(SourceRow, uuid.UUID(sid))
        assert row is not None and hub.box.open(row.config_sealed)["secret"] == secret


def test_a_new_destination_needs_the_secrets_sent_again(hub: Hub) -> None:
    """helper-31: PATCHing only an ERP's token_url had the next pull send the stored client_secret to that URL,
    a way to read back secrets the API never shows. The secrets must come with the new destination."""
    client = client_for(hub)
    config = {"secret": "erp-push-secret-0001", "base_url": "https://erp.example.com/api", "client_id": "hub",
              "client_secret": "TOP-SECRET-erp-oauth", "token_url": "https://erp.example.com/oauth/token"}
    sid = add_source(client, "erp", "erp", config)
    url = f"/v1/sources/{sid}"
    moved = {"token_url": "https://attacker.example.net/steal"}
    for change in (moved, {**moved, "client_secret": SECRET_MASK, "secret": SECRET_MASK}):
        resp = client.patch(url, headers=ADMIN, json={"config": change})
        assert resp.status_code == 422 and resp.json()["error"]["code"] == "secrets_required", resp.text
        assert {d["field"] for d in resp.json()["error"]["details"]} == {"client_secret", "secret"}
    shown = client.get(url, headers=ADMIN).json()["config"]
    assert shown["token_url"] == config["token_url"]  # nothing changed
    assert client.patch(url, headers=ADMIN, json={"config": shown}).status_code == 200  # same destination: fine
    again = {**moved, "client_secret": "TOP-SECRET-erp-oauth", "secret": "erp-push-secret-0001"}
    assert client.patch(url, headers=ADMIN, json={"config": again}).status_code == 200


def test_an_unset_secret_shows_as_null_and_the_mask_is_no_new_secret(hub: Hub) -> None:
    client = client_for(hub)
    sid = add_source(client, "douyin", "dy", {"client_key": "ck", "client_secret": "cs-0123456789"})
    shown = client.get(f"/v1/sources/{sid}", headers=ADMIN).json()["config"]
    assert shown["client_secret"] == SECRET_MASK and shown["webhook_secret"] is None
    assert client.patch(f"/v1/sources/{sid}", headers=ADMIN, json={"config": shown}).status_code == 200
    masked = client.post("/v1/sources", headers=ADMIN,
                         json={"connector": "pos", "name": "copy", "config": {"secret": SECRET_MASK * 3}})
    assert masked.status_code == 201  # only the exact mask is refused: a secret may contain asterisks
    copied = client.post("/v1/sources", headers=ADMIN,
                         json={"connector": "callcenter", "name": "tccc", "config": {"password": SECRET_MASK}})
    assert copied.status_code == 422 and _fields(copied.json()) == ["password"]


def test_a_malformed_id_is_a_404_and_a_non_json_body_is_named(hub: Hub) -> None:
    client = client_for(hub)
    for path, code in (("/v1/sources/abc", "source_not_found"), ("/v1/endpoints/abc", "endpoint_not_found"),
                       ("/v1/customers/abc", "customer_not_found"), ("/v1/events/abc", "event_not_found")):
        resp = client.get(path, headers=ADMIN)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == code, (path, resp.text)
    resp = client.post("/v1/sources", headers={**ADMIN, "content-type": "application/json"}, content=b"{nope")
    assert resp.status_code == 422
    (detail,) = resp.json()["error"]["details"]
    assert detail["field"] == "body" and detail["message"].startswith("body is not valid JSON")


def _is_name_conflict(resp: Any) -> bool:
    """Contract §3's error body with a fitting status: 409, the name in `details` (a 422 says "fix the body")."""
    error = resp.json()["error"]
    return (resp.status_code == 409 and error["code"] == "duplicate_name" and "'site'" in error["message"]
            and error["details"] == [{"field": "name", "message": "already used"}])


def test_a_taken_name_is_a_409_on_create_and_on_rename(hub: Hub) -> None:
    client = client_for(hub)
    first = add_source(client, "web", "site", {"write_key": KEY})
    second = add_source(client, "web", "blog", {"write_key": KEY})
    resp = client.post("/v1/sources", headers=ADMIN, json={"connector": "pos", "name": "site",
                                                            "config": {"secret": "pos-secret-0123456789"}})
    assert _is_name_conflict(resp), resp.text
    resp = client.patch(f"/v1/sources/{second}", headers=ADMIN, json={"name": "site"})
    assert _is_name_conflict(resp), resp.text
    assert client.patch(f"/v1/sources/{first}", headers=ADMIN, json={"name": "site"}).status_code == 200
    assert [s["name"] for s in client.get("/v1/sources", headers=ADMIN).json()["items"]] == ["site", "blog"]


def test_two_requests_racing_for_one_name_get_a_409_not_a_500(any_hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both pass the name check when they run at once (helper-26 saw a 500 on PostgreSQL); the index decides."""
    client = client_for(any_hub)
    add_source(client, "web", "site", {"write_key": KEY})
    other = add_source(client, "web", "blog", {"write_key": KEY})
    monkeypatch.setattr("hub.api._require_free_name", lambda session, name: None)  # as if the check ran first
    resp = client.post("/v1/sources", headers=ADMIN, json={"connector": "web", "name": "site",
                                                            "config": {"write_key": KEY}})
    assert _is_name_conflict(resp), resp.text
    resp = client.patch(f"/v1/sources/{other}", headers=ADMIN, json={"name": "site"})
    assert _is_name_conflict(resp), resp.text


def test_a_misspelt_null_or_empty_field_is_a_422_and_a_get_body_can_be_sent_back(hub: Hub) -> None:
    """{"enable": false} used to answer 200 and leave the source enabled (helper-21)."""
    client = client_for(hub)
    sid = add_source(client, "web", "site", {"write_key": KEY})
    for change, field in (({"enable": False}, "enable"), ({"enabled": None}, "enabled"), ({"name": " "}, "name"),
                          ({"connector": "erp"}, "connector")):
        got = client.patch(f"/v1/sources/{sid}", headers=ADMIN, json=change)
        assert got.status_code == 422 and _fields(got.json()) == [field], (change, got.text)
    assert client.get(f"/v1/sources/{sid}", headers=ADMIN).json()["enabled"] is True
    shown = client.get(f"/v1/sources/{sid}", headers=ADMIN).json()
    back = client.patch(f"/v1/sources/{sid}", headers=ADMIN, json={**shown, "enabled": False})
    assert back.status_code == 200 and back.json()["enabled"] is False
    empty = client.post("/v1/sources", headers=ADMIN,
                        json={"connector": "web", "name": "", "config": {"write_key": KEY}})
    assert empty.status_code == 422 and _fields(empty.json()) == ["name"]
    typo = client.post("/v1/sources", headers=ADMIN, json={"connector": "web", "name": "b", "confg": {}})
    assert typo.status_code == 422 and _fields(typo.json()) == ["confg"]


def test_a_source_sealed_with_a_lost_key_can_be_re_keyed_with_a_whole_config(hub: Hub) -> None:
    """Before, any config change merged with the unreadable stored config and failed: delete and re-add was the
    only way out, which changes the source's webhook URL on every platform. Replacing must be asked for, so a
    hub pointed at the wrong key by mistake does not silently re-seal a source with it."""
    from hub.crypto import SecretBox

    client = client_for(hub)
    sid = add_source(client, "pos", "till", {"secret": "pos-secret-0123456789"})
    with hub.transaction() as session:
        row = session.get(SourceRow, uuid.UUID(sid))
        assert row is not None
        row.config_sealed = SecretBox("another-key").seal({"secret": "pos-secret-0123456789"})
    hub.forget_source(uuid.UUID(sid))
    new = {"secret": "new-secret-0123456789"}
    merged = client.patch(f"/v1/sources/{sid}", headers=ADMIN, json={"config": new})
    assert merged.status_code == 500 and "replace_config: true" in merged.json()["error"]["message"]
    masked = client.patch(f"/v1/sources/{sid}", headers=ADMIN,
                          json={"config": {"secret": SECRET_MASK}, "replace_config": True})
    assert masked.status_code == 422 and _fields(masked.json()) == ["secret"]
    fixed = client.patch(f"/v1/sources/{sid}", headers=ADMIN, json={"config": new, "replace_config": True})
    assert fixed.status_code == 200, fixed.text
    body = json.dumps({"event_id": "s-1", "type": "purchase", "amount": 1}).encode()
    signed = {"content-type": "application/json", push.SIGNATURE_HEADER: push.sign(body, "new-secret-0123456789")}
    assert client.post(f"/hooks/{sid}", content=body, headers=signed).status_code == 200
