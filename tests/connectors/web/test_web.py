"""The web connector end to end: the real Segment client library, and arbitrary input over HTTP."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import select

from connectors.web.mapping import message_to_draft
from hub.app import create_app
from hub.models import EventRow, RawEvent
from hub.runtime import Hub
from tests.helpers import add_source, basic, client_for, wait_processed
from tests.server import serve

KEY = "wk-segment-client-1"


def test_real_segment_client_sends_to_a_running_hub(hub: Hub) -> None:
    from segment.analytics.client import Client

    source_id = add_source(client_for(hub), "web", "site", {"write_key": KEY})
    errors: list[Any] = []
    with serve(create_app(hub, manage_lifecycle=False)) as base:
        client = Client(KEY, host=f"{base}/hooks/{source_id}", sync_mode=True, on_error=lambda e, b: errors.append(e))
        client.identify("u-77", {"email": "Wang.Fang@Example.cn", "phone": "13912345678", "name": "王芳"},
                        context={"campaign": {"name": "autumn", "source": "xiaohongshu", "medium": "note"}})
        client.track("u-77", "Trial Booked", {"course": "雅思"},
                     context={"page": {"url": "https://edu.example.cn/ielts?utm_source=baidu&bd_vid=xyz"}})
        client.page("u-77", name="Pricing")
        client.flush()  # sync_mode: each call was already sent; flush is a no-op kept for clarity
    assert errors == []
    wait_processed(hub)
    with hub.sessions() as s:
        events = {e.type: e.data for e in s.scalars(select(EventRow))}
    assert set(events) == {"identify", "track", "page"}
    identify = events["identify"]
    assert {"type": "email", "value": "wang.fang@example.cn"} in identify["identities"]
    assert {"type": "phone", "value": "+8613912345678"} in identify["identities"]
    assert identify["campaign"]["name"] == "autumn" and identify["campaign"]["source"] == "xiaohongshu"
    track = events["track"]
    assert track["campaign"]["click_id"] == "xyz" and track["campaign"]["network"] == "baidu"
    assert track["properties"]["event"] == "Trial Booked"
    assert len({e["customer_id"] for e in events.values()}) == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)
messages = st.fixed_dictionaries(
    {}, optional={"type": st.sampled_from(["track", "identify", "page", "alias", "nope", 3]),
                  "userId": st.one_of(st.text(max_size=10), st.integers(), st.none()),
                  "anonymousId": st.one_of(st.text(max_size=10), st.none()), "messageId": st.text(max_size=10),
                  "timestamp": st.one_of(st.text(max_size=30), st.just("2026-01-25T14:22:00+08:00")),
                  "traits": json_values, "context": json_values, "properties": json_values}
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.lists(messages, max_size=4).map(lambda b: json.dumps({"batch": b}).encode()),
    # A batch-wide context merged into each message's own, which may be anything (a string was a 500).
    st.tuples(st.lists(messages, max_size=4), st.dictionaries(st.text(max_size=8), json_values, min_size=1,
                                                              max_size=3)).map(
        lambda bc: json.dumps({"batch": bc[0], "context": bc[1]}).encode()),
    messages.map(lambda m: json.dumps(m).encode()),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, path=st.sampled_from(["v1/track", "v1/batch", "v1/identify", "v1/page", "v1/nope", ""]))
def test_arbitrary_input_is_a_4xx_or_accepted_and_never_breaks_processing(hub: Hub, body: bytes, path: str) -> None:
    client = client_for(hub)
    sources = client.get("/v1/sources", headers={"authorization": "Bearer test-admin-token"}).json()["items"]
    source_id = sources[0]["id"] if sources else add_source(client, "web", "fuzz", {"write_key": KEY})
    resp = client.post(f"/hooks/{source_id}/{path}", content=body, headers=basic(KEY))
    assert resp.status_code in (200, 400), resp.text
    assert "error" in resp.json() if resp.status_code == 400 else "accepted" in resp.json()
    wait_processed(hub)
    with hub.sessions() as s:
        statuses = set(s.scalars(select(RawEvent.status)))
    assert statuses <= {"handled", "quarantined"}


def test_a_message_context_that_is_not_an_object_does_not_break_a_batch_with_a_shared_context(hub: Hub) -> None:
    """`{**context, **"x"}` raised a TypeError: a 500 with an empty body. Now the batch is accepted and the
    message with the odd context is stored or quarantined, like any other malformed message."""
    client = client_for(hub)
    source_id = add_source(client, "web", "ctx", {"write_key": KEY})
    body = {"context": {"page": {"url": "https://example.com/?utm_source=x"}},
            "batch": [{"type": "track", "event": "A", "anonymousId": "a1", "messageId": "m1", "context": "oops"},
                      {"type": "track", "event": "B", "anonymousId": "a1", "messageId": "m2", "context": ["x"]},
                      {"type": "track", "event": "C", "anonymousId": "a1", "messageId": "m3"}]}
    resp = client.post(f"/hooks/{source_id}/v1/batch", json=body, headers=basic(KEY))
    assert resp.status_code == 200, resp.text
    wait_processed(hub)
    with hub.sessions() as s:
        assert set(s.scalars(select(RawEvent.status))) <= {"handled", "quarantined"}
        assert "m3" in set(s.scalars(select(EventRow.source_event_id)))


def test_browser_sdk_requests_with_the_write_key_in_the_body_are_accepted(hub: Hub) -> None:
    """analytics.js posts text/plain to /v1/<first letter> (batches to /v1/b) with `writeKey` in the body and no
    Authorization header; the hub answered 401 (helper-19)."""
    client = client_for(hub)
    source_id = add_source(client, "web", "browser", {"write_key": KEY})
    base = f"/hooks/{source_id}/v1"
    page = {"type": "page", "anonymousId": "a1", "messageId": "ajs-1", "writeKey": KEY,
            "context": {"page": {"url": "https://example.cn/?utm_source=baidu&bd_vid=9"}}}
    resp = client.post(f"{base}/p", content=json.dumps(page), headers={"content-type": "text/plain"})
    assert resp.status_code == 200 and resp.json() == {"accepted": 1, "duplicates": 0}
    assert resp.headers["access-control-allow-origin"] == "*"  # the visitor's browser may read the answer
    batch = {"writeKey": KEY, "sentAt": "2026-03-01T00:00:00Z",
             "batch": [{"type": "track", "event": "Viewed", "anonymousId": "a1", "messageId": "ajs-2"},
                       {"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "ajs-3"}]}
    assert client.post(f"{base}/b", content=json.dumps(batch), headers={"content-type": "text/plain"}).json() \
        == {"accepted": 2, "duplicates": 0}
    wrong = client.post(f"{base}/t", content=json.dumps({**page, "writeKey": "not-the-key", "messageId": "x"}))
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "bad_credentials"
    missing = client.post(f"{base}/t", content=json.dumps({"type": "track", "event": "E", "anonymousId": "a"}))
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_credentials"
    wait_processed(hub)
    with hub.sessions() as s:
        stored = {row.source_event_id: row.data for row in s.scalars(select(EventRow))}
    assert set(stored) == {"ajs-1", "ajs-2", "ajs-3"}
    assert stored["ajs-1"]["campaign"]["source"] == "baidu"
    assert all(KEY not in json.dumps(data) for data in stored.values())  # the key is not in the events
    # Newer analytics.js versions also send Authorization and X-Retry-Count: the browser asks first.
    preflight = client.options(f"{base}/b", headers={"origin": "https://example.cn",
                                                     "access-control-request-method": "POST",
                                                     "access-control-request-headers": "authorization,x-retry-count"})
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == "*"
    assert "x-retry-count" in preflight.headers["access-control-allow-headers"]


def test_a_get_with_credentials_is_told_to_use_post_not_that_its_body_is_bad_json(hub: Hub) -> None:
    client = client_for(hub)
    sid = add_source(client, "web", "site", {"write_key": KEY})
    resp = client.get(f"/hooks/{sid}/v1/track", headers=basic(KEY))
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "method_not_allowed"


def test_segment_times_zone_less_local_and_unreadable() -> None:
    """Contract: local time without a zone is Asia/Shanghai; an unreadable one is noted, not silently dropped."""
    received = datetime(2026, 3, 2, 12, 30, tzinfo=UTC)
    local = message_to_draft({"type": "track", "userId": "u", "messageId": "m-1",
                              "timestamp": "2026-03-02 20:15:00"}, received)
    assert local.occurred_at.isoformat() == "2026-03-02T20:15:00+08:00" and local.quality.issues == []
    odd = message_to_draft({"type": "track", "userId": "u", "messageId": "m-2", "timestamp": "yesterday",
                            "sentAt": "2026-03-02T12:20:00Z"}, received)
    assert odd.occurred_at == datetime(2026, 3, 2, 12, 20, tzinfo=UTC)  # the next time Segment gives
    assert [(i.field, i.code) for i in odd.quality.issues] == [("timestamp", "invalid_time")]
    none = message_to_draft({"type": "track", "userId": "u", "messageId": "m-3", "timestamp": "0000"}, received)
    assert none.occurred_at == received and [i.code for i in none.quality.issues] == ["invalid_time"]
