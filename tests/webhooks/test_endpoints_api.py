"""Endpoints API (contract §3) and the SSRF guard."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from hub.cursors import encode_cursor
from hub.runtime import Hub
from hub.schemas import utcnow
from tests.helpers import ADMIN, client_for
from tests.webhooks.conftest import Receiver, add_endpoint
from webhooks.models import MSG_FAILED, MessageRow
from webhooks.ssrf import UnsafeURL, check_url


def test_crud_never_echoes_the_secret_after_create(shub: Hub, receiver: Receiver) -> None:
    client = client_for(shub)
    created = add_endpoint(shub, receiver.url, event_types=["lead.submitted"], description="CRM core")
    assert created["secret"].startswith("whsec_") and created["enabled"] is True
    assert created["url"] == receiver.url and created["event_types"] == ["lead.submitted"]
    eid = created["id"]
    listed = client.get("/v1/endpoints", headers=ADMIN).json()["items"]
    assert [e["id"] for e in listed] == [eid] and "secret" not in listed[0]
    patched = client.patch(f"/v1/endpoints/{eid}", json={"event_types": ["*"], "enabled": False,
                                                         "url": receiver.url + "/v2"}, headers=ADMIN).json()
    assert patched["event_types"] == ["*"] and patched["enabled"] is False and patched["url"].endswith("/v2")
    assert "secret" not in client.get(f"/v1/endpoints/{eid}", headers=ADMIN).json()
    assert client.delete(f"/v1/endpoints/{eid}", headers=ADMIN).status_code == 204
    missing = client.get(f"/v1/endpoints/{eid}", headers=ADMIN)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "endpoint_not_found"


def test_a_subscription_to_an_unknown_type_is_kept_with_a_warning(shub: Hub, receiver: Receiver) -> None:
    """Contract §4 says more types may come, so a typo cannot be refused; it must not pass silently either."""
    created = add_endpoint(shub, receiver.url, event_types=["lead.submited", "lead.submitted", "douyin.gift", "*"])
    assert created["event_types"] == ["lead.submited", "lead.submitted", "douyin.gift", "*"]
    assert created["warnings"] == [{"field": "event_types", "message": "no 'lead.submited' event has been stored "
                                    "and the hub documents no such type; did you mean 'lead.submitted'?"}]
    patched = client_for(shub).patch(f"/v1/endpoints/{created['id']}", json={"event_types": ["order.created"]},
                                     headers=ADMIN).json()
    assert patched["warnings"] == []
    refunds = client_for(shub).patch(f"/v1/endpoints/{created['id']}", json={"event_types": ["purchase.refunded"]},
                                     headers=ADMIN).json()
    assert refunds["warnings"] == []  # POS emits it: was warned about as undocumented (helper-24)


@pytest.mark.parametrize("change", [{"event_types": None}, {"url": None}, {"description": None}, {"enabled": None},
                                    {"event_types": [""]}, {"event_types": ["order.created", "  "]}])
def test_a_patch_that_would_unsubscribe_everything_or_break_the_row_is_422(
    shub: Hub, receiver: Receiver, change: dict[str, object]
) -> None:
    """`event_types: null` used to store [] (the endpoint silently got nothing); `url: null` was a 500."""
    created = add_endpoint(shub, receiver.url, event_types=["order.created"])
    client = client_for(shub)
    got = client.patch(f"/v1/endpoints/{created['id']}", json=change, headers=ADMIN)
    assert got.status_code == 422, got.text
    assert got.json()["error"]["details"][0]["field"].startswith(next(iter(change)))
    kept = client.get(f"/v1/endpoints/{created['id']}", headers=ADMIN).json()
    assert kept["event_types"] == ["order.created"] and kept["url"] == receiver.url
    cleared = client.patch(f"/v1/endpoints/{created['id']}", json={"rate_limit": None}, headers=ADMIN)
    assert cleared.status_code == 200 and cleared.json()["rate_limit"] is None  # the one field null clears
    empty = client.post("/v1/endpoints", json={"url": receiver.url, "event_types": [""]}, headers=ADMIN)
    assert empty.status_code == 422


def test_a_misspelt_field_is_422_but_what_a_get_returned_may_be_sent_back(shub: Hub, receiver: Receiver) -> None:
    """Before, `{"event_type": [...]}` was dropped: a create subscribed to "*", a PATCH changed nothing."""
    client = client_for(shub)
    typo = client.post("/v1/endpoints", json={"url": receiver.url, "event_type": ["order.created"]}, headers=ADMIN)
    assert typo.status_code == 422 and typo.json()["error"]["details"][0]["field"] == "event_type"
    assert client.get("/v1/endpoints", headers=ADMIN).json()["items"] == []
    created = add_endpoint(shub, receiver.url, event_types=["order.created"])
    got = client.patch(f"/v1/endpoints/{created['id']}", json={"enable": False}, headers=ADMIN)
    assert got.status_code == 422 and got.json()["error"]["details"][0]["field"] == "enable"
    read = client.get(f"/v1/endpoints/{created['id']}", headers=ADMIN).json()
    assert read["enabled"] is True
    round_trip = client.patch(f"/v1/endpoints/{created['id']}", json={**read, "description": "CRM core"},
                              headers=ADMIN)
    assert round_trip.status_code == 200, round_trip.text
    assert round_trip.json()["description"] == "CRM core" and round_trip.json()["id"] == created["id"]


def test_secret_is_stored_encrypted(shub: Hub, receiver: Receiver) -> None:
    from sqlalchemy import select

    from webhooks.models import EndpointRow

    created = add_endpoint(shub, receiver.url)
    with shub.sessions() as s:
        row = s.scalars(select(EndpointRow)).one()
    assert created["secret"] not in row.secret_sealed
    assert shub.box.open_str(row.secret_sealed) == created["secret"]


def test_admin_token_required(shub: Hub) -> None:
    resp = client_for(shub).get("/v1/endpoints")
    assert resp.status_code == 401


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:9/x", "loopback"),
        ("http://localhost/x", "loopback"),
        ("http://10.1.2.3/x", "private"),
        ("http://192.168.1.10/x", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[::1]/x", "loopback"),
        ("http://[::ffff:10.0.0.1]/x", "private"),
        ("http://2130706433/x", "loopback"),  # 127.0.0.1 as one decimal number
        ("http://[2002:7f00:1::]/x", "6to4 of a loopback"),  # 6to4 tunnels to its embedded 127.0.0.1
        ("http://[2002:a00:1::1]/x", "6to4 of a private"),
        ("http://[fec0::1]/x", "site-local"),
        ("http://224.0.0.1/x", "multicast"),
        ("http://240.0.0.1/x", "reserved"),
        ("ftp://203.0.113.9/x", "http:// or https://, not 'ftp'"),
        ("file:///etc/passwd", "http:// or https://, not 'file'"),
        ("notaurl", "'notaurl' has none"),
    ],
)
def test_ssrf_guard_refuses_with_422_naming_the_problem(hub_factory, url: str, problem: str) -> None:  # type: ignore[no-untyped-def]
    hub = hub_factory(allow_private_endpoints=False)
    resp = client_for(hub).post("/v1/endpoints", json={"url": url}, headers=ADMIN)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "unsafe_url" and problem in error["message"]
    assert error["details"][0]["field"] == "url"


def test_ssrf_guard_on_patch(hub_factory) -> None:  # type: ignore[no-untyped-def]
    hub = hub_factory(allow_private_endpoints=False)
    client = client_for(hub)
    created = client.post("/v1/endpoints", json={"url": "https://93.184.215.14/hook"}, headers=ADMIN)
    assert created.status_code == 201  # a public literal address resolves without DNS
    resp = client.patch(f"/v1/endpoints/{created.json()['id']}", json={"url": "http://127.0.0.1/"}, headers=ADMIN)
    assert resp.status_code == 422 and "loopback" in resp.json()["error"]["message"]


def test_unresolvable_host_is_refused() -> None:
    with pytest.raises(UnsafeURL, match="does not resolve"):
        check_url("http://no-such-host.invalid/x", allow_private=False)


def test_a_6to4_address_of_a_public_ipv4_is_allowed() -> None:
    assert check_url("https://[2002:5db8:d70e::1]/x", allow_private=False) == ["2002:5db8:d70e::1"]


def test_allow_private_lets_loopback_through() -> None:
    assert check_url("http://127.0.0.1:8080/x", allow_private=True) == ["127.0.0.1"]


def test_replay_validation(shub: Hub, receiver: Receiver) -> None:
    eid = add_endpoint(shub, receiver.url)["id"]
    client = client_for(shub)
    assert client.post(f"/v1/endpoints/{eid}/replay", json={}, headers=ADMIN).status_code == 422
    resp = client.post(f"/v1/endpoints/{eid}/replay", json={"since": "2026-01-25T14:22:00+08:00"}, headers=ADMIN)
    assert resp.status_code == 202 and resp.json() == {"queued": 0}
    bad = client.get(f"/v1/endpoints/{eid}/messages?status=weird", headers=ADMIN)
    assert bad.status_code == 422
    for edge in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"):  # the extremes that exist in UTC work
        assert client.post(f"/v1/endpoints/{eid}/replay", json={"since": edge}, headers=ADMIN).status_code == 202


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_a_time_that_does_not_exist_in_utc_is_422_not_a_500(shub: Hub, receiver: Receiver, since: str) -> None:
    eid = add_endpoint(shub, receiver.url)["id"]
    client = client_for(shub)
    resp = client.post(f"/v1/endpoints/{eid}/replay", json={"since": since}, headers=ADMIN)
    assert resp.status_code == 422 and resp.json()["error"]["details"][0]["field"] == "since", resp.text
    resp = client.get("/v1/quality", params={"since": since}, headers=ADMIN)
    assert resp.status_code == 422 and "out of range" in resp.text, resp.text


@pytest.mark.parametrize("url", ["http://[zz]/x", "http://[::1/x"])
def test_a_url_that_cannot_be_parsed_is_422_not_a_500(shub: Hub, url: str) -> None:
    got = client_for(shub).post("/v1/endpoints", json={"url": url}, headers=ADMIN)
    assert got.status_code == 422 and got.json()["error"]["details"][0]["field"] == "url"


def test_an_unexpected_error_still_answers_in_the_error_shape(shub: Hub) -> None:
    from fastapi.testclient import TestClient

    from hub.app import create_app

    app = create_app(shub, manage_lifecycle=False)

    def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/v1/boom", boom)
    got = TestClient(app, raise_server_exceptions=False).get("/v1/boom")
    assert got.status_code == 500 and got.json()["error"]["code"] == "internal_error"
    assert "a bug" not in got.text  # the traceback and message stay in the log


def test_messages_come_in_pages_with_a_cursor_and_a_tie_is_never_split(whub: Hub, receiver: Receiver) -> None:
    """The list took only `limit`: an endpoint with more failed messages than one page could not show the rest.

    Messages written in one transaction can share `created_at`: the cursor carries the id too, so a page that
    ends inside such a tie neither repeats nor skips one.
    """
    eid = uuid.UUID(add_endpoint(whub, receiver.url)["id"])
    at = utcnow().replace(microsecond=0)
    with whub.transaction() as session:
        rows = [MessageRow(endpoint_id=eid, event_id=uuid.uuid4(), event_type="lead.submitted", occurred_at=at,
                           status=MSG_FAILED, created_at=at - timedelta(seconds=n // 2)) for n in range(7)]
        session.add_all(rows)
    newest_first = [str(r.id) for r in sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)]
    client = client_for(whub)
    url = f"/v1/endpoints/{eid}/messages"
    seen: list[str] = []
    pages, cursor = 0, None
    while pages < 10:
        page = client.get(url, params={"status": "failed", "limit": 2, **({"cursor": cursor} if cursor else {})},
                          headers=ADMIN).json()
        seen += [m["id"] for m in page["items"]]
        pages, cursor = pages + 1, page["next_cursor"]
        if cursor is None:
            break
    assert pages == 4 and seen == newest_first
    whole = client.get(url, headers=ADMIN).json()  # one page, as before: the same items, no next page
    assert [m["id"] for m in whole["items"]] == newest_first and whole["next_cursor"] is None
    assert client.get(url, params={"status": "delivered"}, headers=ADMIN).json() == {"items": [], "next_cursor": None}
    journey = encode_cursor({"t": at.isoformat(), "s": 1})  # a customer-journey cursor is not a position here
    for bad in ("not-a-cursor", journey, encode_cursor({"t": at.isoformat(), "m": "x"})):
        resp = client.get(url, params={"cursor": bad}, headers=ADMIN)
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"]["code"] == "invalid_cursor"
        assert resp.json()["error"]["details"] == [{"field": "cursor", "message": "pass back a next_cursor unchanged"}]
