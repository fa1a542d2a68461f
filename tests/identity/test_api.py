"""The customers, accounts and event-feed API (contract §3) through the real app."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DataError, OperationalError

from hub.errors import InvalidRequest
from hub.pipeline import store_drafts
from hub.runtime import Hub
from identity.split import SPLIT_RETRIES
from tests.conftest import PG_ADMIN_URL
from tests.helpers import ADMIN, client_for
from tests.identity.conftest import draft, ingest

USCC = "91350100M000100Y43"


@pytest.fixture
def client(quiet_hub: Hub) -> TestClient:
    return client_for(quiet_hub)


def test_requires_admin_token(client: TestClient) -> None:
    assert client.get("/v1/customers?identity=phone:13912345678").status_code == 401
    assert client.get("/v1/events").status_code == 401


def test_lookup_is_normalised_like_ingest(quiet_hub: Hub, client: TestClient) -> None:
    (row,) = ingest(quiet_hub, draft(("phone", "139 1234 5678"), ("email", "Li@Example.COM")))
    for query in ("phone:13912345678", "phone:+86-139-1234-5678", "email:li@example.com"):
        body = client.get("/v1/customers", params={"identity": query}, headers=ADMIN).json()
        assert [c["id"] for c in body["items"]] == [str(row.customer_id)], query
    assert client.get("/v1/customers?identity=phone:13912345670", headers=ADMIN).json() == {"items": []}
    bad = client.get("/v1/customers?identity=phone:abc", headers=ADMIN)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_identity"
    assert client.get("/v1/customers?identity=nonsense", headers=ADMIN).status_code == 422


def test_profile_merged_id_history_and_journey(quiet_hub: Hub, client: TestClient) -> None:
    (a,) = ingest(quiet_hub, draft(("douyin_open_id", "d1"), traits={"name": "王五"}), source="douyin")
    (b,) = ingest(quiet_hub, draft(("xhs_user_id", "x1"), ("uscc", USCC), traits={"company": "某某科技"}),
                  source="xiaohongshu")
    (c,) = ingest(quiet_hub, draft(("douyin_open_id", "d1"), ("xhs_user_id", "x1")), source="douyin")
    survivor = str(a.customer_id)
    got = client.get(f"/v1/customers/{b.customer_id}", headers=ADMIN).json()
    assert got["id"] == survivor and got["merged_from"] == [str(b.customer_id)]
    assert got["traits"] == {"name": "王五", "company": "某某科技"}
    assert got["trait_sources"]["company"]["source"] == "xiaohongshu"
    assert {(i["type"], i["value"]) for i in got["identities"]} == {("douyin_open_id", "d1"), ("xhs_user_id", "x1")}
    assert got["accounts"][0]["uscc"] == USCC and got["last_activity_at"] is not None
    hist = client.get(f"/v1/customers/{b.customer_id}/history", headers=ADMIN).json()["items"]
    assert hist[0]["action"] == "merge" and hist[0]["event_id"] == str(c.id)
    assert hist[0]["identity"] == {"type": "xhs_user_id", "value": "x1"}
    assert set(hist[0]["customer_ids"]) == {survivor, str(b.customer_id)}
    # Journey: oldest first, every source, paginated with an opaque cursor.
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/v1/customers/{survivor}/events", params=params, headers=ADMIN).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    times = [e["occurred_at"] for e in seen if e["source"] != "identity"]
    assert times == sorted(times) and len(times) == 3
    assert {e["type"] for e in seen} == {"message.received", "customer.merged"}
    assert client.get(f"/v1/customers/{survivor}/events?cursor=%%%", headers=ADMIN).status_code == 422
    assert client.get("/v1/customers/00000000-0000-0000-0000-000000000000", headers=ADMIN).status_code == 404


def test_events_name_the_surviving_customer_after_a_merge(quiet_hub: Hub, client: TestClient) -> None:
    """Merging leaves event rows alone; every read of them names the survivor, not the merged-away id."""
    (a,) = ingest(quiet_hub, draft(("douyin_open_id", "m1")), source="douyin")
    (b,) = ingest(quiet_hub, draft(("xhs_user_id", "m2")), source="xiaohongshu")
    ingest(quiet_hub, draft(("douyin_open_id", "m1"), ("xhs_user_id", "m2")), source="douyin")
    survivor, gone = str(a.customer_id), str(b.customer_id)
    assert survivor != gone
    feed = client.get("/v1/events", headers=ADMIN).json()["items"]
    assert len(feed) == 4 and {e["customer_id"] for e in feed} == {survivor}  # 3 messages + customer.merged
    assert client.get(f"/v1/events/{b.id}", headers=ADMIN).json()["customer_id"] == survivor
    journey = client.get(f"/v1/customers/{gone}/events", headers=ADMIN).json()["items"]
    assert [e["id"] for e in journey] == [e["id"] for e in feed] and {e["customer_id"] for e in journey} == {survivor}
    merged = next(e for e in feed if e["type"] == "customer.merged")
    assert merged["properties"]["merged_customer_ids"] == [gone]  # the mapping a CRM core follows stays intact


def test_split_moves_identities_and_events_and_sticks(quiet_hub: Hub, client: TestClient) -> None:
    (a,) = ingest(quiet_hub, draft(("pos_member_id", "m1"), traits={"name": "甲"}))
    (b,) = ingest(quiet_hub, draft(("email", "b@example.com"), traits={"name": "乙"}))
    (joint,) = ingest(quiet_hub, draft(("pos_member_id", "m1"), ("email", "b@example.com")))
    (b2,) = ingest(quiet_hub, draft(("email", "b@example.com"), traits={"city": "泉州"}))
    cid = str(a.customer_id)
    resp = client.post(f"/v1/customers/{cid}/split", headers=ADMIN,
                       json={"identities": [{"type": "email", "value": "B@example.com"}], "reason": "two people"})
    assert resp.status_code == 201, resp.text
    new = resp.json()
    assert new["id"] != cid and [i["value"] for i in new["identities"]] == ["b@example.com"]
    assert new["traits"] == {"name": "乙", "city": "泉州"}  # learnt from the events that moved
    moved = client.get(f"/v1/customers/{new['id']}/events", headers=ADMIN).json()["items"]
    assert {e["id"] for e in moved} == {str(b.id), str(b2.id)}  # the joint event stays: it carries m1 too
    assert all(e["customer_id"] == new["id"] for e in moved)
    kept = client.get(f"/v1/customers/{cid}/events", headers=ADMIN).json()["items"]
    assert str(joint.id) in {e["id"] for e in kept}
    (split_event,) = [e for e in kept if e["type"] == "customer.split"]
    for who in (cid, new["id"]):
        hist = client.get(f"/v1/customers/{who}/history", headers=ADMIN).json()["items"]
        assert hist[0]["action"] == "split" and hist[0]["reason"] == "two people"
        assert hist[0]["event_id"] == split_event["id"]  # the evidence: the stored customer.split event
    # The same evidence again does not re-merge what an operator split.
    (again,) = ingest(quiet_hub, draft(("pos_member_id", "m1"), ("email", "b@example.com")))
    assert str(again.customer_id) == cid
    hist = client.get(f"/v1/customers/{cid}/history", headers=ADMIN).json()["items"]
    assert hist[0]["action"] == "merge_refused" and hist[0]["reason"] == "split_previously"
    lookup = client.get("/v1/customers?identity=email:b@example.com", headers=ADMIN).json()["items"]
    assert lookup[0]["id"] == new["id"]



def test_split_moves_events_that_also_carry_a_weak_line(quiet_hub: Hub, client: TestClient) -> None:
    """Weak lines never link customers, so a switchboard (or household landline) the original keeps is no
    evidence: the events that came through the split-off identity move, their traits with them."""
    (a,) = ingest(quiet_hub, draft(("email", "info@acme.cn"), ("phone", "13912345678"), ("phone", "010-62345678转801")))
    (b,) = ingest(quiet_hub, draft(("email", "info@acme.cn"), ("phone", "13987654321"), ("phone", "010-62345678转802")))
    (b2,) = ingest(quiet_hub, draft(("phone", "13987654321"), ("phone", "010-62345678转802"), traits={"name": "乙"}))
    cid = str(a.customer_id)
    assert {str(b.customer_id), str(b2.customer_id)} == {cid}
    resp = client.post(f"/v1/customers/{cid}/split", headers=ADMIN,
                       json={"identities": [{"type": "phone", "value": "13987654321"}], "reason": "two colleagues"})
    assert resp.status_code == 201, resp.text
    new = resp.json()
    moved = client.get(f"/v1/customers/{new['id']}/events", headers=ADMIN).json()["items"]
    assert [e["id"] for e in moved] == [str(b2.id)]  # b carries info@acme.cn, which the original keeps: it stays
    assert new["traits"] == {"name": "乙"}
    kept = client.get(f"/v1/customers/{cid}/events", headers=ADMIN).json()["items"]
    assert {str(a.id), str(b.id)} <= {e["id"] for e in kept} and str(b2.id) not in {e["id"] for e in kept}


def test_merges_chained_in_one_batch_name_the_survivor_everywhere(quiet_hub: Hub, client: TestClient) -> None:
    """b into a, then a into z, in one batch: the feed, the journey and the profile follow b to z."""
    (z,) = ingest(quiet_hub, draft(("douyin_open_id", "z1")))
    (a,) = ingest(quiet_hub, draft(("xhs_user_id", "a1")))
    (b,) = ingest(quiet_hub, draft(("pos_member_id", "b1")))
    with quiet_hub.transaction() as session:
        store_drafts(quiet_hub, session, [draft(("xhs_user_id", "a1"), ("pos_member_id", "b1")),
                                          draft(("douyin_open_id", "z1"), ("xhs_user_id", "a1"))],
                     source="pos", source_id=None)
    survivor = str(z.customer_id)
    feed = client.get("/v1/events", headers=ADMIN).json()["items"]
    assert len(feed) == 7 and {e["customer_id"] for e in feed} == {survivor}  # 5 messages, 2 customer.merged
    assert client.get(f"/v1/events/{b.id}", headers=ADMIN).json()["customer_id"] == survivor
    journey = client.get(f"/v1/customers/{survivor}/events", headers=ADMIN).json()["items"]
    assert {e["id"] for e in journey} == {e["id"] for e in feed}
    got = client.get(f"/v1/customers/{b.customer_id}", headers=ADMIN).json()
    assert got["id"] == survivor and set(got["merged_from"]) == {str(a.customer_id), str(b.customer_id)}
    hist = client.get(f"/v1/customers/{survivor}/history", headers=ADMIN).json()["items"]
    assert [h["action"] for h in hist] == ["merge", "merge"]


def test_a_split_sticks_to_whoever_the_split_off_customer_merges_into(quiet_hub: Hub, client: TestClient) -> None:
    """A survivor inherits the loser's splits (identity.merge._inherit_splits)."""
    (older,) = ingest(quiet_hub, draft(("phone", "13900000031")))
    (a,) = ingest(quiet_hub, draft(("pos_member_id", "m1")))
    ingest(quiet_hub, draft(("email", "b@example.com")), draft(("pos_member_id", "m1"), ("email", "b@example.com")))
    resp = client.post(f"/v1/customers/{a.customer_id}/split", headers=ADMIN,
                       json={"identities": [{"type": "email", "value": "b@example.com"}], "reason": "two people"})
    assert resp.status_code == 201, resp.text
    # The split-off customer merges into the older one: the split from `a` must now hold for it.
    (joined,) = ingest(quiet_hub, draft(("email", "b@example.com"), ("phone", "13900000031")))
    assert joined.customer_id == older.customer_id
    (again,) = ingest(quiet_hub, draft(("pos_member_id", "m1"), ("phone", "13900000031")))
    hist = client.get(f"/v1/customers/{again.customer_id}/history", headers=ADMIN).json()["items"]
    assert hist[0]["action"] == "merge_refused" and hist[0]["reason"] == "split_previously"
    for identity, owner in (("pos_member_id:m1", a.customer_id), ("phone:13900000031", older.customer_id)):
        found = client.get(f"/v1/customers?identity={identity}", headers=ADMIN).json()["items"]
        assert [c["id"] for c in found] == [str(owner)]

def test_split_errors(quiet_hub: Hub, client: TestClient) -> None:
    (a,) = ingest(quiet_hub, draft(("pos_member_id", "m1"), ("email", "a@example.com")))
    url = f"/v1/customers/{a.customer_id}/split"
    resp = client.post(url, headers=ADMIN, json={"identities": [{"type": "email", "value": "x@example.com"}]})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "identity_not_on_customer"
    everything = [{"type": "email", "value": "a@example.com"}, {"type": "pos_member_id", "value": "m1"}]
    resp = client.post(url, headers=ADMIN, json={"identities": everything})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "split_takes_all"
    assert client.post(url, headers=ADMIN, json={"identities": []}).status_code == 422


def test_an_invalid_identity_in_a_split_names_its_path_in_the_body(quiet_hub: Hub, client: TestClient) -> None:
    """The 422 named `identity`, a field the body does not have (that is the lookup's query parameter)."""
    (a,) = ingest(quiet_hub, draft(("pos_member_id", "m1"), ("email", "a@example.com")))
    url = f"/v1/customers/{a.customer_id}/split"
    body = {"identities": [{"type": "email", "value": "a@example.com"}, {"type": "phone", "value": "abc"},
                           {"type": "fax", "value": "1"}]}
    resp = client.post(url, headers=ADMIN, json=body)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "invalid_identity" and "identities.1.value, identities.2.type" in error["message"]
    assert [d["field"] for d in error["details"]] == ["identities.1.value", "identities.2.type"]
    assert error["details"][1]["message"] == "unknown type"
    lookup = client.get("/v1/customers?identity=phone:abc", headers=ADMIN).json()["error"]  # the query keeps its name
    assert [d["field"] for d in lookup["details"]] == ["identity"]
    history = client.get(f"/v1/customers/{a.customer_id}/history", headers=ADMIN).json()["items"]
    assert "split" not in {h["action"] for h in history}  # the valid item was not split off alone


def test_a_split_retries_only_a_conflict_and_gives_up_with_a_503(
    quiet_hub: Hub, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lasting deadlock is a 503 `retryable` after SPLIT_RETRIES more runs (the real deadlock, retried once and
    then done, is in test_concurrency.py); a bad request or content the database refuses runs once."""
    (a,) = ingest(quiet_hub, draft(("pos_member_id", "m1"), ("email", "a@example.com")))
    url = f"/v1/customers/{a.customer_id}/split"
    calls: list[Exception] = []

    def failing(*args: object) -> object:
        calls.append(failure)
        raise failure

    monkeypatch.setattr("identity.split.backoff_s", lambda attempt: 0.0)
    monkeypatch.setattr("identity.split.split_customer", failing)
    failure: Exception = OperationalError("UPDATE identities", {}, Exception("deadlock detected"))
    resp = client.post(url, headers=ADMIN, json={"identities": [{"type": "email", "value": "a@example.com"}]})
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "retryable", resp.text
    assert len(calls) == SPLIT_RETRIES + 1
    calls.clear()
    failure = DataError("UPDATE identities", {}, Exception("value too long"))
    with pytest.raises(DataError):  # answered 500; the test client re-raises it
        client.post(url, headers=ADMIN, json={"identities": [{"type": "email", "value": "a@example.com"}]})
    failure = InvalidRequest("a split must leave the customer at least one identity", code="split_takes_all")
    resp = client.post(url, headers=ADMIN, json={"identities": [{"type": "email", "value": "a@example.com"}]})
    assert resp.status_code == 422 and len(calls) == 2


def test_accounts(quiet_hub: Hub, client: TestClient) -> None:
    (alice,) = ingest(quiet_hub, draft(("phone", "13912345678"), ("uscc", USCC.lower())))
    (bob,) = ingest(quiet_hub, draft(("phone", "13987654321"), ("uscc", USCC)))
    (order,) = ingest(quiet_hub, draft(("erp_customer_code", "C-1"), ("uscc", USCC), type="order.created",
                                       properties={"customer_name": "福州某某科技有限公司"}), source="erp")
    ingest(quiet_hub, draft(("uscc", USCC), type="company.profile.updated",
                            properties={"uscc": USCC, "name": "福州某某科技有限公司", "risk_level": "low"}),
           source="credit_registry")
    found = client.get(f"/v1/accounts?identity=uscc:{USCC}", headers=ADMIN).json()["items"]
    assert len(found) == 1 and found[0]["id"] == str(order.account_id)
    account = client.get(f"/v1/accounts/{order.account_id}", headers=ADMIN).json()
    assert account["name"] == "福州某某科技有限公司" and account["profile"]["risk_level"] == "low"
    assert set(account["members"]) == {str(alice.customer_id), str(bob.customer_id)}
    assert {i["type"] for i in account["identities"]} == {"uscc", "erp_customer_code"}
    assert client.get("/v1/accounts?identity=erp_customer_code:C-1", headers=ADMIN).json()["items"][0]["id"] == \
        str(order.account_id)
    assert client.get("/v1/accounts?identity=phone:13912345678", headers=ADMIN).status_code == 422
    assert client.get(f"/v1/accounts/{alice.customer_id}", headers=ADMIN).status_code == 404


def test_event_feed_cursor_and_types(quiet_hub: Hub, client: TestClient) -> None:
    rows = ingest(quiet_hub, *[draft(("email", f"p{n}@example.com"), type="track" if n % 2 else "identify")
                               for n in range(5)])
    page = client.get("/v1/events?limit=2", headers=ADMIN).json()
    assert [e["id"] for e in page["items"]] == [str(r.id) for r in rows[:2]]
    rest = client.get("/v1/events", params={"after": page["next_cursor"]}, headers=ADMIN).json()
    assert [e["id"] for e in rest["items"]] == [str(r.id) for r in rows[2:]]
    tail = client.get("/v1/events", params={"after": rest["next_cursor"]}, headers=ADMIN).json()
    assert tail["items"] == [] and tail["next_cursor"] == rest["next_cursor"]
    tracks = client.get("/v1/events?types=track", headers=ADMIN).json()["items"]
    assert [e["id"] for e in tracks] == [str(rows[1].id), str(rows[3].id)]
    one = client.get(f"/v1/events/{rows[0].id}", headers=ADMIN).json()
    assert one["customer_id"] == str(rows[0].customer_id) and one["identities"][0]["value"] == "p0@example.com"
    assert client.get(f"/v1/events/{rows[0].customer_id}", headers=ADMIN).status_code == 404
    assert client.get("/v1/events?after=notacursor", headers=ADMIN).status_code == 422
    assert client.get("/v1/events/nope", headers=ADMIN).status_code == 404


def test_event_feed_filtered_by_types_pages_in_storage_order(quiet_hub: Hub, client: TestClient) -> None:
    """The type filter may make the database walk an index on type; the feed must still come in seq order."""
    kinds = ["identify", "track", "identify", "track", "page", "track"]
    rows = ingest(quiet_hub, *[draft(("email", f"t{n}@example.com"), type=kind) for n, kind in enumerate(kinds)])
    wanted = [str(r.id) for r, kind in zip(rows, kinds, strict=True) if kind in {"track", "identify"}]
    assert [e["id"] for e in client.get("/v1/events?types=track,identify", headers=ADMIN).json()["items"]] == wanted
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(len(kinds) + 2):
        params = {"types": "track,identify", "limit": 1} | ({"after": cursor} if cursor else {})
        page = client.get("/v1/events", params=params, headers=ADMIN).json()
        if not page["items"]:
            break
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
    assert seen == wanted  # one at a time: none repeated, none lost


def test_event_feed_cursor_never_skips_an_event_that_commits_late(quiet_hub: Hub, client: TestClient) -> None:
    """A slow transaction took an earlier seq than one that committed first: the stored cursor still finds it."""
    if quiet_hub.engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one writer at a time: a later seq cannot commit first")
    slow = quiet_hub.sessions()
    slow.begin()
    try:
        store_drafts(quiet_hub, slow, [draft(("phone", "13912340001"))], source="pos", source_id=None)
        slow.flush()
        with quiet_hub.transaction() as fast:
            store_drafts(quiet_hub, fast, [draft(("phone", "13912340002"))], source="pos", source_id=None)
        first = client.get("/v1/events", headers=ADMIN).json()
        slow.commit()
    finally:
        slow.close()
    second = client.get("/v1/events", params={"after": first["next_cursor"]}, headers=ADMIN).json()
    seen = [e["identities"][0]["value"] for e in first["items"] + second["items"]]
    assert sorted(seen) == ["+8613912340001", "+8613912340002"]  # each event exactly once
    everything = client.get("/v1/events", headers=ADMIN).json()
    assert [e["id"] for e in everything["items"]] == [e["id"] for e in first["items"] + second["items"]]
    again = client.get("/v1/events", params={"after": second["next_cursor"]}, headers=ADMIN).json()
    assert again["items"] == [] and again["next_cursor"] == second["next_cursor"]


def test_event_feed_is_not_held_back_by_a_transaction_in_another_database(quiet_hub: Hub, client: TestClient) -> None:
    """Transaction ids are cluster-wide: a long transaction elsewhere on the server must not hide our events."""
    if quiet_hub.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only")
    elsewhere = create_engine(PG_ADMIN_URL)
    try:
        with elsewhere.connect() as conn:
            conn.execute(text("SELECT txid_current()"))  # holds a transaction id, writes nothing
            rows = ingest(quiet_hub, draft(("phone", "13912340003")), draft(("phone", "13912340004")))
            page = client.get("/v1/events", headers=ADMIN).json()
            assert [e["id"] for e in page["items"]] == [str(r.id) for r in rows]
            conn.rollback()
    finally:
        elsewhere.dispose()


def test_a_feed_cursor_from_before_a_restore_is_409(quiet_hub: Hub, client: TestClient) -> None:
    """Restored onto another server, the database's transaction ids start lower than the cursors issued before:
    such a cursor would hide every new event until the ids pass it, so the feed says so instead."""
    if quiet_hub.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: SQLite cursors carry no transaction id")
    rows = ingest(quiet_hub, draft(("phone", "13912340021")), draft(("phone", "13912340022")))
    page = _first_page_showing(client, 2)
    assert client.get("/v1/events", params={"after": page["next_cursor"]}, headers=ADMIN).json()["items"][0]["id"] \
        == str(rows[1].id)
    with quiet_hub.sessions() as session:
        xmax = session.scalars(text("SELECT txid_snapshot_xmax(txid_current_snapshot())")).one()
    # Transaction ids are cluster-wide: other databases' work (tests running beside this one) moves them on, and a
    # margin of 1,000 was overtaken before the request was made. A million is still "just restored", not 2**62.
    for ahead in (xmax + 1_000_000, 2**62):
        got = client.get("/v1/events", params={"after": _tampered({"x": ahead, "s": 1})}, headers=ADMIN)
        assert got.status_code == 409 and got.json()["error"]["code"] == "cursor_ahead_of_database", got.text


def _first_page_showing(client: TestClient, events: int) -> dict[str, Any]:
    """The feed's first page of one, once it shows `events` events. The feed holds back events while a transaction
    it cannot tell apart from its own database's runs (another database's, starting as the feed reads): with other
    tests on the same cluster, a first read could come too early. A delay, never a skip (api_events._after_pg)."""
    deadline = time.monotonic() + 10
    while True:
        everything = client.get("/v1/events", headers=ADMIN).json()["items"]
        if len(everything) >= events or time.monotonic() > deadline:
            return dict(client.get("/v1/events", params={"limit": 1}, headers=ADMIN).json())
        time.sleep(0.05)


def _tampered(data: object) -> str:
    import base64
    import json

    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    {"t": "2026-01-25T14:22:00", "s": 1},  # no offset: cannot be compared with stored times
    {"t": "2026-01-25", "s": 1},
    {"t": "0001-01-01T00:00:00+08:00", "s": 1},  # no UTC equivalent
    {"t": "2026-01-25T14:22:00+08:00", "s": 2**63},
    {"t": "2026-01-25T14:22:00+08:00", "s": -1},
    {"t": "2026-01-25T14:22:00+08:00", "s": 1.5},
    {"t": "2026-01-25T14:22:00+08:00", "s": True},
    {"t": 20260125, "s": 1},
    {"s": 1},
])
def test_a_tampered_journey_cursor_is_422_not_500(quiet_hub: Hub, client: TestClient, cursor: object) -> None:
    (row,) = ingest(quiet_hub, draft(("email", "journey@example.com")))
    got = client.get(f"/v1/customers/{row.customer_id}/events", params={"cursor": _tampered(cursor)}, headers=ADMIN)
    assert got.status_code == 422 and got.json()["error"]["code"] == "invalid_cursor", got.text


@pytest.mark.parametrize("raw", ['{"s": 1e400}', '{"s": 1e18}', '{"s": 99999999999999999999}',
                                 '{"x": 99999999999999999999, "s": 1}', '{"x": "5", "s": 1}', '{"s": null}',
                                 '{"x": -3, "s": 1}', '{"x": 5}', '{}', '{"s": 1, "y": 2}',
                                 '{"t": "2026-01-25T14:22:00+08:00", "s": 1}'])
def test_a_tampered_feed_cursor_is_422_not_500(quiet_hub: Hub, client: TestClient, raw: str) -> None:
    import base64

    after = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
    got = client.get("/v1/events", params={"after": after}, headers=ADMIN)
    assert got.status_code == 422 and got.json()["error"]["code"] == "invalid_cursor", got.text


def test_the_feed_and_the_journey_each_refuse_the_others_cursor(quiet_hub: Hub, client: TestClient) -> None:
    """Both cursors carry `s`: the feed read a journey cursor as a position in storage order and skipped events."""
    (row,) = ingest(quiet_hub, draft(("email", "both@example.com")), draft(("email", "both@example.com")))[-1:]
    journey_url = f"/v1/customers/{row.customer_id}/events"
    journey = client.get(journey_url, params={"limit": 1}, headers=ADMIN).json()["next_cursor"]
    feed = client.get("/v1/events", params={"limit": 1}, headers=ADMIN).json()["next_cursor"]
    assert journey is not None
    for url, param, cursor in (("/v1/events", "after", journey), (journey_url, "cursor", feed)):
        got = client.get(url, params={param: cursor}, headers=ADMIN)
        assert got.status_code == 422 and got.json()["error"]["code"] == "invalid_cursor", (url, got.text)
        assert got.json()["error"]["details"] == [{"field": param, "message": "pass back a next_cursor unchanged"}]


def test_a_malformed_customer_id_on_the_journey_and_history_is_customer_not_found(client: TestClient) -> None:
    for path in ("/v1/customers/not-a-uuid/events", "/v1/customers/not-a-uuid/history"):
        got = client.get(path, headers=ADMIN)
        assert got.status_code == 404 and got.json()["error"]["code"] == "customer_not_found", (path, got.text)
