"""Contract §4 and §9 end to end: what a subscribed endpoint receives and what the event feed returns.

Requests go in through the real inbound endpoints (web, POS, ERP); events come out twice — signed to a
loopback receiver, checked with the Standard Webhooks reference library, and read from `GET /v1/events` —
and both copies are held to the contract's shapes, not the internal model's.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert
from standardwebhooks import Webhook

from hub import push
from hub.inprocess import InProcessRunner
from hub.models import EventRow
from hub.runtime import Hub, set_hub
from hub.schemas import ACCOUNT_IDENTITY_TYPES
from identity.silence import scan_silent
from tests.conftest import make_hub, make_settings
from tests.helpers import ADMIN, add_source, basic, client_for, wait_processed

EVENT_KEYS = {"id", "type", "source", "source_id", "source_event_id", "occurred_at", "received_at", "customer_id",
              "account_id", "identities", "campaign", "properties", "quality"}
CAMPAIGN_KEYS = {"source", "medium", "name", "term", "content", "click_id", "click_id_param", "network",
                 "landing_url"}
# RFC 3339 date-time: full date, `T`, time, optional fraction, then `Z` or an offset of hours and minutes.
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$")
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
WRITE_KEY = "wk-contract-0001"
PUSH_SECRET = "push-secret-00000001"


@dataclass
class Inbox:
    """What a loopback endpoint was sent: (headers, raw body) per request."""

    url: str = ""
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    box = Inbox()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            box.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    box.url = f"http://127.0.0.1:{server.server_address[1]}/crm"
    yield box
    server.shutdown()
    server.server_close()


@pytest.fixture
def chub(tmp_path: Path) -> Iterator[Hub]:
    """Every built-in plugin, loopback endpoints allowed, first delivery at once."""
    hub = make_hub(make_settings(tmp_path, allow_private_endpoints=True, retry_schedule="0,30"),
                   runner=InProcessRunner(workers=2))
    hub.start()
    yield hub
    hub.stop()
    hub.engine.dispose()
    set_hub(None)


def _signed_post(client: TestClient, source_id: str, payload: Any) -> None:
    body = json.dumps(payload, ensure_ascii=False).encode()
    resp = client.post(f"/hooks/{source_id}", content=body, headers={
        "content-type": "application/json", push.SIGNATURE_HEADER: push.sign(body, PUSH_SECRET)})
    assert resp.status_code == 200, resp.text


def _send_story(client: TestClient) -> None:
    web = add_source(client, "web", "site", {"write_key": WRITE_KEY})
    pos = add_source(client, "pos", "till", {"secret": PUSH_SECRET})
    erp = add_source(client, "erp", "erp", {"secret": PUSH_SECRET})
    batch = {"batch": [
        {"type": "page", "anonymousId": "anon-1", "messageId": "w-1", "timestamp": "2026-03-02T20:15:00+08:00",
         "context": {"page": {"url": "https://edu.example.cn/py?utm_source=douyin&utm_medium=live"
                                     "&utm_campaign=spring2026&clickid=EQA1b2"}}},
        # An offset with seconds: RFC 3339 cannot write it, and it once made the feed a 500.
        {"type": "track", "event": "Trial Booked", "anonymousId": "anon-1", "messageId": "w-2",
         "timestamp": "2026-03-02T20:16:00+08:00:30"},
        {"type": "identify", "userId": "u-1", "anonymousId": "anon-1", "messageId": "w-3",
         "timestamp": "2026-03-02 20:17:00", "traits": {"phone": "138 0013 8000", "email": "Zhang.Wei@Example.CN"}},
    ]}
    resp = client.post(f"/hooks/{web}/v1/batch", json=batch, headers=basic(WRITE_KEY))
    assert resp.status_code == 200, resp.text
    _signed_post(client, pos, [{"event_id": "pos-1", "type": "purchase", "store_id": "SZ-01",
                                "member_card_no": "M-1", "phone": "13800138000", "order_no": "P-1",
                                "amount": "1,280.00", "items": [{"sku": "PY", "name": "Python", "qty": 1,
                                                                 "price": 1280}],
                                "paid_at": "2026-03-05 12:03:41"}])
    _signed_post(client, erp, {"event_id": "erp-1", "type": "order.created", "order_no": "SO-1",
                               "order_type": "formal", "customer_code": "C-88", "uscc": "9144030071526726XG",
                               "amount": 256000, "currency": "CNY", "contract_date": "2026-03-20",
                               "updated_at": "2026-03-09T10:12:00+08:00"})


def _feed(client: TestClient) -> list[dict[str, Any]]:
    resp = client.get("/v1/events", params={"limit": 500}, headers=ADMIN)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["items"])


def _delivered(hub: Hub, inbox: Inbox, secret: str) -> list[dict[str, Any]]:
    """Every payload the endpoint got, each verified with the Standard Webhooks reference library."""
    assert hub.runner.join(20), "deliveries did not finish"
    return [Webhook(secret).verify(body, headers) for headers, body in inbox.requests]


def _check_event(event: dict[str, Any]) -> None:
    assert EVENT_KEYS <= set(event), EVENT_KEYS - set(event)
    uuid.UUID(event["id"])
    for name in ("occurred_at", "received_at"):
        assert RFC3339.match(event[name]), (name, event[name])
    for ident in event["identities"]:
        assert set(ident) == {"type", "value"}
        if ident["type"] == "phone":
            assert E164.match(ident["value"]), ident
        if ident["type"] == "email":
            assert ident["value"] == ident["value"].lower()
    assert event["campaign"] is None or CAMPAIGN_KEYS <= set(event["campaign"])
    assert all({"field", "code", "detail"} <= set(i) for i in event["quality"]["issues"])
    if event["customer_id"] is None:  # contract §4: only an event carrying account identifiers alone
        assert event["identities"] and {i["type"] for i in event["identities"]} <= ACCOUNT_IDENTITY_TYPES


def test_delivered_and_fed_events_have_the_contract_shape(chub: Hub, inbox: Inbox) -> None:
    client = client_for(chub)
    endpoint = client.post("/v1/endpoints", json={"url": inbox.url, "event_types": ["*"]}, headers=ADMIN).json()
    _send_story(client)
    wait_processed(chub)
    delivered = _delivered(chub, inbox, endpoint["secret"])
    feed = _feed(client)
    assert {e["source_event_id"] for e in feed} >= {"w-1", "w-2", "w-3", "pos-1", "erp-1"}
    by_id = {e["id"]: e for e in feed}
    assert sorted(p["data"]["id"] for p in delivered) == sorted(by_id)  # each event once, to the endpoint too
    for payload in delivered:
        assert set(payload) == {"type", "timestamp", "data"}
        event = payload["data"]
        assert payload["type"] == event["type"] and payload["timestamp"] == event["occurred_at"]
        assert event == by_id[event["id"]], "the endpoint and the feed disagree"
        _check_event(event)
    events = {e["source_event_id"]: e for e in feed}
    page = events["w-1"]["campaign"]
    assert (page["source"], page["medium"], page["name"]) == ("douyin", "live", "spring2026")
    assert (page["click_id"], page["click_id_param"], page["network"]) == ("EQA1b2", "clickid", "oceanengine")
    assert page["landing_url"].endswith("clickid=EQA1b2")
    assert events["w-2"]["campaign"] is None
    assert events["w-2"]["occurred_at"] == "2026-03-02T12:15:30+00:00"  # the same instant, in UTC
    assert events["w-3"]["occurred_at"] == "2026-03-02T20:17:00+08:00"  # local time without a zone: Shanghai
    assert {"type": "phone", "value": "+8613800138000"} in events["w-3"]["identities"]
    assert {"type": "email", "value": "zhang.wei@example.cn"} in events["w-3"]["identities"]
    purchase = events["pos-1"]
    assert purchase["type"] == "purchase.completed" and purchase["occurred_at"] == "2026-03-05T12:03:41+08:00"
    assert {(i["type"], i["value"]) for i in purchase["identities"]} == {("pos_member_id", "M-1"),
                                                                         ("phone", "+8613800138000")}
    assert purchase["properties"]["paid_at"] == "2026-03-05T12:03:41+08:00"
    order = events["erp-1"]
    assert order["customer_id"] is None and order["account_id"] is not None  # a company's order, no contact
    assert order["properties"]["order_type"] == "formal" and order["properties"]["contract_date"] == "2026-03-20"
    assert len({e["customer_id"] for e in (events["w-1"], events["w-3"], purchase)}) == 1


def test_a_time_stored_with_a_seconds_offset_still_reads_back(chub: Hub) -> None:
    """A row stored before times were written RFC 3339 (`+08:00:30`) no longer fails its feed page."""
    event_id = uuid.uuid4()
    data = {"id": str(event_id), "type": "track", "source": "web", "source_id": None, "source_event_id": "old-1",
            "occurred_at": "2026-03-02T20:16:00+08:00:30", "received_at": "2026-03-02T12:16:01+00:00",
            "customer_id": None, "account_id": None, "identities": [], "campaign": None, "properties": {},
            "quality": {"issues": []}}
    at = datetime.fromisoformat(data["occurred_at"])
    with chub.transaction() as session:
        session.execute(insert(EventRow).values(id=event_id, type="track", source="web", source_event_id="old-1",
                                                occurred_at=at, received_at=at, data=data))
    client = client_for(chub)
    [item] = _feed(client)
    assert item["occurred_at"] == "2026-03-02T12:15:30+00:00"
    assert client.get(f"/v1/events/{event_id}", headers=ADMIN).json()["occurred_at"] == item["occurred_at"]



def test_customer_silent_reaches_the_endpoint_and_the_feed_with_contract_7_properties(chub: Hub, inbox: Inbox) -> None:
    client = client_for(chub)
    endpoint = client.post("/v1/endpoints", json={"url": inbox.url, "event_types": ["customer.silent"]},
                           headers=ADMIN).json()
    _send_story(client)
    wait_processed(chub)
    # The story's last activity is the purchase of 2026-03-05 12:03:41 in Shanghai; 40 days on, it is silent.
    assert scan_silent(chub, datetime(2026, 4, 14, 6, tzinfo=UTC)) == 1
    [payload] = _delivered(chub, inbox, endpoint["secret"])
    event = payload["data"]
    [fed] = [e for e in _feed(client) if e["type"] == "customer.silent"]
    assert event == fed and payload["type"] == "customer.silent"
    _check_event(event)
    props = event["properties"]
    assert set(props) >= {"last_activity_at", "last_source", "days_silent"}
    assert RFC3339.match(props["last_activity_at"])
    assert datetime.fromisoformat(props["last_activity_at"]) == datetime(2026, 3, 5, 4, 3, 41, tzinfo=UTC)
    assert (props["last_source"], props["days_silent"]) == ("pos", 40)
    purchase = next(e for e in _feed(client) if e["source_event_id"] == "pos-1")
    assert event["customer_id"] == purchase["customer_id"]
    assert scan_silent(chub, datetime(2026, 4, 20, tzinfo=UTC)) == 0  # once per silence period
