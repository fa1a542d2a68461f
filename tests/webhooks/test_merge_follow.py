"""Messages follow their customer through a merge or a split (webhooks/follow.py), with identity/ resolving."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from hub.runtime import Hub
from hub.schemas import EventDraft, Identity
from tests.helpers import ADMIN, client_for
from tests.webhooks.conftest import Receiver, add_endpoint, make_due, settle, store, t0

PHONE, EMAIL = "+8613800138000", "li.lei@example.com"


def _real_identity(hub_factory: Callable[..., Hub], url: str | None = None) -> Hub:
    hub = hub_factory(url)
    hub.pm.unregister(name="test-fixed-resolver")
    return hub


def _lead(sei: str, minute: int, *identities: tuple[str, str]) -> EventDraft:
    return EventDraft(type="lead.submitted", source_event_id=sei, occurred_at=t0(minute),
                      identities=[Identity(type=t, value=v) for t, v in identities])


def _set_enabled(api: TestClient, endpoint_id: str, enabled: bool) -> None:
    assert api.patch(f"/v1/endpoints/{endpoint_id}", json={"enabled": enabled}, headers=ADMIN).status_code == 200


def _customer_of(api: TestClient, identity: str) -> str:
    items = api.get("/v1/customers", params={"identity": identity}, headers=ADMIN).json()["items"]
    return str(items[0]["id"])


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_waiting_messages_of_a_merged_away_customer_go_out_under_the_survivor_in_order(
    hub_factory: Callable[..., Hub], receiver: Receiver, request: pytest.FixtureRequest, db: str
) -> None:
    hub = _real_identity(hub_factory, request.getfixturevalue("pg_url") if db == "postgres" else None)
    api = client_for(hub)
    endpoint = add_endpoint(hub, receiver.url)
    _set_enabled(api, endpoint["id"], False)  # messages wait, as behind a receiver that is down
    store(hub, _lead("by-phone", 1, ("phone", PHONE)))
    store(hub, _lead("by-email", 2, ("email", EMAIL)))
    by_phone, by_email = _customer_of(api, f"phone:{PHONE}"), _customer_of(api, f"email:{EMAIL}")
    assert by_phone != by_email
    store(hub, _lead("both", 3, ("phone", PHONE), ("email", EMAIL)))  # links the two: one is merged away
    survivor = _customer_of(api, f"phone:{PHONE}")
    loser = by_email if survivor == by_phone else by_phone
    _set_enabled(api, endpoint["id"], True)
    settle(hub)
    make_due(hub)

    bodies = [r.json for r in receiver.ok()]
    assert sorted(b["data"]["source_event_id"] for b in bodies) == sorted(
        ["by-phone", "by-email", "both", f"merged:{loser}"])
    assert {b["data"]["customer_id"] for b in bodies} == {survivor}  # nobody hears of the loser as a customer
    order = [b["data"]["source_event_id"] for b in bodies]
    assert order.index("by-email") < order.index(f"merged:{loser}")  # one queue now, in occurrence order
    assert order.index("by-phone") < order.index("both")
    listed = api.get(f"/v1/endpoints/{endpoint['id']}/messages", headers=ADMIN).json()["items"]
    assert {m["customer_id"] for m in listed} == {survivor}


def test_a_replay_after_the_merge_names_the_survivor(hub_factory: Callable[..., Hub], receiver: Receiver) -> None:
    hub = _real_identity(hub_factory)
    api = client_for(hub)
    endpoint = add_endpoint(hub, receiver.url)
    store(hub, _lead("by-phone", 1, ("phone", PHONE)))
    store(hub, _lead("by-email", 2, ("email", EMAIL)))
    settle(hub)  # both delivered before the merge (else their messages would already follow it)
    store(hub, _lead("both", 3, ("phone", PHONE), ("email", EMAIL)))
    settle(hub)
    first = {r.json["data"]["source_event_id"]: r.json["data"]["customer_id"] for r in receiver.ok()}
    survivor = _customer_of(api, f"phone:{PHONE}")
    assert set(first.values()) != {survivor}  # delivered before the merge: the loser's event named the loser
    receiver.received.clear()
    resp = api.post(f"/v1/endpoints/{endpoint['id']}/replay", json={"since": t0(-600).isoformat()}, headers=ADMIN)
    assert resp.status_code == 202
    settle(hub)
    replayed = {r.json["data"]["source_event_id"]: r.json["data"]["customer_id"] for r in receiver.ok()}
    assert {"by-phone", "by-email", "both"} <= set(replayed)
    assert set(replayed.values()) == {survivor}


def test_messages_of_split_off_events_join_the_new_customers_queue(
    hub_factory: Callable[..., Hub], receiver: Receiver
) -> None:
    hub = _real_identity(hub_factory)
    api = client_for(hub)
    endpoint = add_endpoint(hub, receiver.url)
    _set_enabled(api, endpoint["id"], False)
    store(hub, _lead("one", 1, ("phone", PHONE), ("email", EMAIL)))
    store(hub, _lead("mail-only", 2, ("email", EMAIL)))
    customer = _customer_of(api, f"phone:{PHONE}")
    resp = api.post(f"/v1/customers/{customer}/split",
                    json={"identities": [{"type": "email", "value": EMAIL}], "reason": "two people"}, headers=ADMIN)
    assert resp.status_code == 201, resp.text
    new_customer = resp.json()["id"]
    _set_enabled(api, endpoint["id"], True)
    settle(hub)
    by_event = {r.json["data"]["source_event_id"]: r.json["data"]["customer_id"] for r in receiver.ok()}
    assert by_event["mail-only"] == new_customer  # as GET /v1/events/{id} now says
    assert by_event["one"] == customer
    feed = {e["source_event_id"]: e["customer_id"] for e in api.get("/v1/events", headers=ADMIN).json()["items"]}
    assert (feed["one"], feed["mail-only"]) == (by_event["one"], by_event["mail-only"])
    listed = api.get(f"/v1/endpoints/{endpoint['id']}/messages", headers=ADMIN).json()["items"]
    queues = {m["customer_id"] for m in listed if m["event_type"] == "lead.submitted"}
    assert queues == {customer, new_customer}
