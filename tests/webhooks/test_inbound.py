"""The inbound edge: stored once before 2xx, deduplicated, and every refusal names its problem."""

from __future__ import annotations

import uuid

import pytest

from hub.models import QuarantineRow
from tests.helpers import add_source, basic, client_for, count_events, jbody, raw_rows, wait_processed

KEY = "write-key-123456"


def _track(message_id: str = "m-1", **extra: object) -> bytes:
    return jbody({"type": "track", "event": "Signed Up", "userId": "u-1", "messageId": message_id,
                  "timestamp": "2026-01-25T14:22:00+08:00", **extra})


@pytest.fixture
def web(any_hub):  # type: ignore[no-untyped-def]
    client = client_for(any_hub)
    source_id = add_source(client, "web", "site", {"write_key": KEY})
    return any_hub, client, source_id


def test_valid_request_is_stored_once_and_processed(web) -> None:  # type: ignore[no-untyped-def]
    hub, client, sid = web
    resp = client.post(f"/hooks/{sid}/v1/track", content=_track(), headers=basic(KEY))
    assert resp.status_code == 200
    assert resp.json() == {"accepted": 1, "duplicates": 0}
    wait_processed(hub)
    rows = raw_rows(hub)
    assert len(rows) == 1 and rows[0].status == "handled"
    assert rows[0].body == _track()  # the exact bytes are kept
    assert count_events(hub, type="track") == 1


def test_redelivery_gets_same_status_and_creates_no_second_event(web) -> None:  # type: ignore[no-untyped-def]
    hub, client, sid = web
    first = client.post(f"/hooks/{sid}/v1/track", content=_track(), headers=basic(KEY))
    second = client.post(f"/hooks/{sid}/v1/track", content=_track(), headers=basic(KEY))
    assert first.status_code == second.status_code == 200
    assert second.json() == {"accepted": 0, "duplicates": 1}
    wait_processed(hub)
    assert len(raw_rows(hub)) == 1
    assert count_events(hub) == 1


def test_same_message_inside_a_new_batch_is_not_stored_twice(web) -> None:  # type: ignore[no-untyped-def]
    hub, client, sid = web
    client.post(f"/hooks/{sid}/v1/track", content=_track("m-9"), headers=basic(KEY))
    batch = jbody({"batch": [{"type": "track", "event": "A", "userId": "u-1", "messageId": "m-9"},
                             {"type": "track", "event": "B", "userId": "u-1", "messageId": "m-10"}]})
    resp = client.post(f"/hooks/{sid}/v1/batch", content=batch, headers=basic(KEY))
    assert resp.json() == {"accepted": 2, "duplicates": 0}
    wait_processed(hub)
    assert count_events(hub) == 2
    assert raw_rows(hub)[-1].events_duplicate == 1


@pytest.mark.parametrize("headers", [{}, basic("wrong-key-000"), {"authorization": "Basic !!notbase64"}])
def test_bad_auth_is_401_and_nothing_is_accepted(web, headers) -> None:  # type: ignore[no-untyped-def]
    hub, client, sid = web
    resp = client.post(f"/hooks/{sid}/v1/track", content=_track(), headers=headers)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] in {"missing_credentials", "bad_credentials"}
    assert raw_rows(hub) == []


def test_body_over_the_limit_is_413(web) -> None:  # type: ignore[no-untyped-def]
    hub, client, sid = web
    big = b"{" + b" " * (hub.settings.max_body_bytes + 10) + b"}"
    resp = client.post(f"/hooks/{sid}/v1/track", content=big, headers=basic(KEY))
    assert resp.status_code == 413
    assert "limit" in resp.json()["error"]["message"]
    assert raw_rows(hub) == []


def test_unknown_or_disabled_source_is_404(web, admin_headers) -> None:  # type: ignore[no-untyped-def]
    hub, client, sid = web
    assert client.post(f"/hooks/{uuid.uuid4()}", content=_track(), headers=basic(KEY)).status_code == 404
    assert client.post("/hooks/not-a-uuid", content=_track(), headers=basic(KEY)).status_code == 404
    client.patch(f"/v1/sources/{sid}", json={"enabled": False}, headers=admin_headers)
    resp = client.post(f"/hooks/{sid}/v1/track", content=_track(), headers=basic(KEY))
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "source_not_found"


def test_unparseable_body_is_400_naming_the_problem(web) -> None:  # type: ignore[no-untyped-def]
    hub, client, sid = web
    resp = client.post(f"/hooks/{sid}/v1/track", content=b"{not json", headers=basic(KEY))
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid_json"
    assert raw_rows(hub) == []


def test_verified_but_unnormalisable_message_is_quarantined_and_acknowledged(web) -> None:  # type: ignore[no-untyped-def]
    hub, client, sid = web
    resp = client.post(f"/hooks/{sid}/v1/track", content=jbody({"type": "track", "event": "x", "messageId": "q1"}),
                       headers=basic(KEY))
    assert resp.status_code == 200
    wait_processed(hub)
    with hub.sessions() as s:
        rows = s.query(QuarantineRow).all()
        assert [r.reason for r in rows] == ["missing_identity"]
    assert count_events(hub) == 0


def test_storage_failure_is_a_503_naming_the_problem_and_nothing_is_acknowledged(web, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    hub, client, sid = web

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr("hub.ingest.store_raw_batch", broken)
    resp = client.post(f"/hooks/{sid}/v1/track", content=_track("m-503"), headers=basic(KEY))
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "storage_unavailable"
    monkeypatch.undo()
    assert client.post(f"/hooks/{sid}/v1/track", content=_track("m-503"), headers=basic(KEY)).json() == {
        "accepted": 1, "duplicates": 0}
