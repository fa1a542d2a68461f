"""The inbound edge: stored once before 2xx, deduplicated, and every refusal names its problem."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import select

from hub.crypto import SecretBox
from hub.ingest import pending_raw_ids
from hub.models import EventRow, QuarantineRow, SourceRow
from hub.pipeline import process_raw
from hub.push import sign
from hub.runtime import Hub
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


def test_credentials_are_not_kept_in_the_raw_store(web) -> None:  # type: ignore[no-untyped-def]
    """The write key (or a TCCC password) was stored in clear in raw_events.request; now only its scheme."""
    hub, client, sid = web
    assert client.post(f"/hooks/{sid}/v1/track", content=_track(), headers=basic(KEY)).status_code == 200
    wait_processed(hub)
    (raw,) = raw_rows(hub)
    assert raw.request["headers"]["authorization"] == "Basic [redacted]"
    assert count_events(hub) == 1


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
    # `web` does not name its events' ids before parse (no Connector.event_keys): the reply counts the request.
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


def test_a_body_nested_too_deeply_to_parse_is_400_naming_the_problem(web) -> None:  # type: ignore[no-untyped-def]
    """200 KB of `[`: well under the size limit, but json.loads raised RecursionError, a 500 with no body."""
    hub, client, sid = web
    deep = b'{"batch":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    resp = client.post(f"/hooks/{sid}/v1/batch", content=deep, headers=basic(KEY))
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "body_too_deep"
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



def test_a_broker_outage_does_not_slow_acknowledgements_and_loses_nothing(web, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    """helper-25: each failed publish took ~0.6 s inside the writer thread, so every request waited seconds. After
    one failure the writer leaves new rows to the recovery sweep for a few seconds instead of trying each."""
    hub, client, sid = web
    tried: list[int] = []

    def broker_down(name: str, raw_id: int) -> None:
        tried.append(raw_id)
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6399. Connection refused.")

    monkeypatch.setattr("hub.ingest.enqueue", broker_down)
    for n in range(3):
        assert client.post(f"/hooks/{sid}/v1/track", content=_track(f"m-bk{n}"), headers=basic(KEY)).json() == {
            "accepted": 1, "duplicates": 0}
    assert len(tried) == 1  # the first failure pauses enqueueing; the next requests do not wait on the broker
    assert "could not enqueue 1 raw event(s)" in caplog.text and "Traceback" not in caplog.text
    monkeypatch.undo()
    assert len(pending_raw_ids(hub)) == 3  # stored
    # The broker is back: after the pause, the next request publishes the held rows first (helper-32: they
    # used to wait up to two minutes for the sweep).
    published: list[int] = []
    monkeypatch.setattr("hub.ingest.enqueue", lambda name, raw_id: published.append(raw_id))
    monkeypatch.setattr(hub.writer, "_broker_retry_at", 0.0)
    client.post(f"/hooks/{sid}/v1/track", content=_track("m-bk3"), headers=basic(KEY))
    assert sorted(published) == sorted(pending_raw_ids(hub))
    monkeypatch.undo()
    for raw_id in pending_raw_ids(hub):
        process_raw(raw_id)  # what the published tasks do
    assert count_events(hub) == 4


def test_a_request_after_shutdown_is_answered_503_at_once_and_a_restart_takes_requests_again(web) -> None:  # type: ignore[no-untyped-def]
    """After `Hub.stop()` a late request started a writer thread nobody stopped and queued its row on a runner
    that had stopped; one handed to the stopped writer was never answered. Now: 503 in the contract's error
    shape, nothing stored, and the platform's retry is taken once the hub runs again."""
    hub, client, sid = web
    hub.stop()
    resp = client.post(f"/hooks/{sid}/v1/track", content=_track("m-late"), headers=basic(KEY))
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "shutting_down" and "retry later" in resp.json()["error"]["message"]
    assert raw_rows(hub) == []
    hub.start()
    resp = client.post(f"/hooks/{sid}/v1/track", content=_track("m-late"), headers=basic(KEY))
    assert resp.json() == {"accepted": 1, "duplicates": 0}
    wait_processed(hub)
    assert count_events(hub) == 1


def test_a_database_outage_is_a_503_in_json_and_any_other_failure_a_json_500(web, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    """helper-25: once the source cache expired, a database outage answered a plain-text 500 and a traceback.
    The outage is logged once, not once per refused request."""
    import logging

    from sqlalchemy.exc import OperationalError

    from hub.outage_log import OutageLog
    from webhooks import inbound

    hub, client, sid = web

    def db_down(source_id: uuid.UUID) -> None:
        raise OperationalError("SELECT sources", {}, Exception("connection refused"))

    real = hub.active_source
    monkeypatch.setattr(hub, "active_source", db_down)
    # a fresh log: one shared by the process stays quiet for a minute after an outage an earlier test logged
    monkeypatch.setattr(inbound, "_SOURCES_OUTAGE", OutageLog(inbound.log, "reading sources for inbound requests"))
    caplog.set_level(logging.WARNING, logger="webhooks.inbound")
    for n in range(3):
        resp = client.post(f"/hooks/{sid}/v1/track", content=_track(f"m-db{n}"), headers=basic(KEY))
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "storage_unavailable"
    assert [r.getMessage() for r in caplog.records] == [
        "reading sources for inbound requests failed: Exception: connection refused"]
    monkeypatch.setattr(hub, "active_source", real)
    assert client.post(f"/hooks/{sid}/v1/track", content=_track("m-db"), headers=basic(KEY)).status_code == 200
    assert "reading sources for inbound requests works again after 0 s; 3 failed meanwhile" in caplog.text

    def bug(source_id: uuid.UUID) -> None:
        raise KeyError("unexpected")

    monkeypatch.setattr(hub, "active_source", bug)
    resp = client.post(f"/hooks/{sid}/v1/track", content=_track("m-db"), headers=basic(KEY))
    assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error"


def test_a_source_whose_config_cannot_be_read_is_a_503_in_json(web) -> None:  # type: ignore[no-untyped-def]
    """Sealed with another key (a wrong CRMHUB_SECRET_KEY): JSON naming the problem, and the platform retries."""
    hub, client, sid = web
    with hub.transaction() as session:
        row = session.get(SourceRow, uuid.UUID(sid))
        assert row is not None
        row.config_sealed = SecretBox("another key").seal({"write_key": KEY})
    hub.forget_source(uuid.UUID(sid))
    resp = client.post(f"/hooks/{sid}/v1/track", content=_track("m-key"), headers=basic(KEY))
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "source_unavailable"
    assert raw_rows(hub) == []


# ---------------------------------------------------------------- per-event duplicates (POS push, contract §3/§9)

POS_SECRET = "pos-secret-0123456789"


def _pos_event(event_id: str | int) -> dict[str, object]:
    return {"event_id": event_id, "type": "purchase", "member_card_no": "M1", "order_no": f"O-{event_id}",
            "amount": 10, "paid_at": "2026-03-05 12:00:00"}


@pytest.fixture
def pos(any_hub):  # type: ignore[no-untyped-def]
    client = client_for(any_hub)
    source_id = add_source(client, "pos", "store", {"secret": POS_SECRET})

    def post(payload: object) -> dict[str, int]:
        body = jbody(payload)
        resp = client.post(f"/hooks/{source_id}", content=body,
                           headers={"content-type": "application/json", "x-hub-signature-256": sign(body, POS_SECRET)})
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    return any_hub, post


def _stored_ids(hub: Hub) -> list[str]:
    with hub.sessions() as s:
        return sorted(s.scalars(select(EventRow.source_event_id)))


def test_a_batch_counts_an_event_stored_earlier_as_a_duplicate(pos) -> None:  # type: ignore[no-untyped-def]
    hub, post = pos
    assert post(_pos_event("A")) == {"accepted": 1, "duplicates": 0}
    wait_processed(hub)
    assert post([_pos_event("A"), _pos_event("B")]) == {"accepted": 1, "duplicates": 1}
    wait_processed(hub)
    assert _stored_ids(hub) == ["A", "B"]
    assert [r.body for r in raw_rows(hub)][-1] == jbody([_pos_event("A"), _pos_event("B")])  # kept whole


def test_a_batch_counts_an_event_still_pending_alone_as_a_duplicate(pos, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    hub, post = pos
    monkeypatch.setattr("hub.ingest.enqueue", lambda *_a, **_k: None)  # nothing is processed: rows stay pending
    assert post(_pos_event("A")) == {"accepted": 1, "duplicates": 0}
    assert post([_pos_event("A"), _pos_event("B")]) == {"accepted": 1, "duplicates": 1}
    assert _stored_ids(hub) == [] and [r.status for r in raw_rows(hub)] == ["pending", "pending"]
    monkeypatch.undo()
    for raw_id in pending_raw_ids(hub):
        process_raw(raw_id)
    assert _stored_ids(hub) == ["A", "B"]


def test_a_redelivered_batch_is_all_duplicates(pos) -> None:  # type: ignore[no-untyped-def]
    hub, post = pos
    batch = [_pos_event("A"), _pos_event("B")]
    assert post(batch) == {"accepted": 2, "duplicates": 0}
    assert post(batch) == {"accepted": 0, "duplicates": 2}
    wait_processed(hub)
    assert _stored_ids(hub) == ["A", "B"] and len(raw_rows(hub)) == 1


def test_an_id_repeated_inside_one_batch_counts_once(pos) -> None:  # type: ignore[no-untyped-def]
    hub, post = pos
    assert post([_pos_event("A"), _pos_event("A"), _pos_event(7)]) == {"accepted": 2, "duplicates": 1}
    wait_processed(hub)
    assert _stored_ids(hub) == ["7", "A"]
    assert raw_rows(hub)[0].events_duplicate == 1  # the pipeline agrees with the reply


def test_a_lone_event_sent_earlier_inside_a_batch_is_a_duplicate(pos) -> None:  # type: ignore[no-untyped-def]
    hub, post = pos
    assert post([_pos_event("A"), _pos_event("B")]) == {"accepted": 2, "duplicates": 0}
    wait_processed(hub)
    assert post(_pos_event("B")) == {"accepted": 0, "duplicates": 1}  # a new request key, an old event
    assert post(_pos_event("B")) == {"accepted": 0, "duplicates": 1}  # a redelivery
    assert post(_pos_event("C")) == {"accepted": 1, "duplicates": 0}
    wait_processed(hub)
    assert _stored_ids(hub) == ["A", "B", "C"]


def test_a_lone_event_sent_twice_is_one_duplicate(pos) -> None:  # type: ignore[no-untyped-def]
    hub, post = pos
    assert post(_pos_event("A")) == {"accepted": 1, "duplicates": 0}
    assert post(_pos_event("A")) == {"accepted": 0, "duplicates": 1}
    wait_processed(hub)
    assert _stored_ids(hub) == ["A"]


def test_a_redelivery_needs_no_lookup_and_a_failed_lookup_still_answers(pos, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    hub, post = pos
    calls: list[int] = []

    def broken(_hub: Hub, _sid: uuid.UUID, raw_id: int, _keys: object) -> tuple[int, int]:
        calls.append(raw_id)
        raise RuntimeError("database went away")

    monkeypatch.setattr("webhooks.inbound.seen_counts", broken)
    assert post([_pos_event("A"), _pos_event("B")]) == {"accepted": 2, "duplicates": 0}  # stored: still 200
    assert post([_pos_event("A"), _pos_event("B")]) == {"accepted": 0, "duplicates": 2}
    assert len(calls) == 1  # only the new request looked


def test_events_the_request_itself_already_stored_are_not_its_duplicates(pos, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    hub, post = pos
    from webhooks import inbound

    original = inbound.seen_counts

    def processed_first(hub_: Hub, sid: uuid.UUID, raw_id: int, keys: list[tuple[str, str]]) -> tuple[int, int]:
        process_raw(raw_id)  # the pipeline wins the race against the lookup
        return original(hub_, sid, raw_id, keys)

    monkeypatch.setattr("webhooks.inbound.seen_counts", processed_first)
    assert post([_pos_event("A"), _pos_event("B")]) == {"accepted": 2, "duplicates": 0}
    assert post(_pos_event("C")) == {"accepted": 1, "duplicates": 0}
    assert _stored_ids(hub) == ["A", "B", "C"]


# ---------------------------------------------------------------- what the raw store can hold (helper-46)


@pytest.mark.parametrize("message_id", ["a\\u0000b", "a\\ud83db"])
def test_a_message_id_no_database_can_store_is_accepted_once_not_a_503(web, message_id: str) -> None:  # type: ignore[no-untyped-def]
    """A NUL (PostgreSQL) or a lone surrogate (both) in the message id made the dedup key unstorable: the insert failed
    and the platform got 503 storage_unavailable on every retry, for ever. Stored now, and its event, whose id still
    cannot be stored, is quarantined with the reason instead of failing the request."""
    hub, client, sid = web
    body = b'{"type": "track", "event": "E", "userId": "u-9", "messageId": "' + message_id.encode() + b'"}'
    first = client.post(f"/hooks/{sid}/v1/track", content=body, headers=basic(KEY))
    assert first.status_code == 200, first.text
    assert first.json() == {"accepted": 1, "duplicates": 0}
    assert client.post(f"/hooks/{sid}/v1/track", content=body, headers=basic(KEY)).json() == {
        "accepted": 0, "duplicates": 1}
    (raw,) = raw_rows(hub)
    assert raw.dedup_key.startswith("key-sha256:") and raw.body == body
    wait_processed(hub)
    assert [r.status for r in raw_rows(hub)] == ["handled"]
    with hub.sessions() as s:
        (item,) = s.scalars(select(QuarantineRow)).all()
        assert item.reason == "unstorable_id" and "cannot be stored" in item.detail
    assert count_events(hub) == 0


def test_long_event_ids_sharing_their_first_300_characters_are_two_requests(pos) -> None:  # type: ignore[no-untyped-def]
    """The dedup key was cut to 300 characters: the second id was answered as a duplicate and never stored (here both
    are too long for a POS event, so both are kept in quarantine with the reason)."""
    hub, post = pos
    prefix = "E" * 297
    assert post(_pos_event(prefix + "1")) == {"accepted": 1, "duplicates": 0}
    assert post(_pos_event(prefix + "2")) == {"accepted": 1, "duplicates": 0}
    assert post(_pos_event(prefix + "2")) == {"accepted": 0, "duplicates": 1}
    wait_processed(hub)
    assert [(r.status, r.error) for r in raw_rows(hub)] == [("quarantined", "invalid_pos_event")] * 2


def test_a_row_the_database_refuses_fails_only_its_own_request_in_a_group_commit(web) -> None:  # type: ignore[no-untyped-def]
    """A source deleted by another process is still cached here for a few seconds; its row breaks the foreign key.
    That failed the whole batch: every request committed with it, of any source, was answered 503."""
    from concurrent.futures import Future

    from hub.ingest import RawSubmission, Rejection

    hub, _client, sid = web
    good = RawSubmission(uuid.UUID(sid), "msg:good", {"method": "POST"}, b"{}")
    gone = RawSubmission(uuid.uuid4(), "msg:gone", {"method": "POST"}, b"{}")
    for sub in (good, gone):
        sub.future = Future()
    hub.writer._write([good, gone, Rejection(uuid.UUID(sid), 401, "bad_signature")])
    raw_id, is_new = good.future.result(timeout=5)  # type: ignore[union-attr]
    assert is_new and raw_id is not None
    assert gone.future.exception(timeout=5) is not None  # type: ignore[union-attr]
    assert [r.dedup_key for r in raw_rows(hub)] == ["msg:good"]
    wait_processed(hub)


@pytest.mark.postgres
def test_replicas_storing_the_same_keys_in_opposite_orders_do_not_deadlock(tmp_path, pg_url) -> None:  # type: ignore[no-untyped-def]
    """Two API replicas' writers inserting overlapping keys in opposite orders: PostgreSQL found a deadlock and one
    batch failed, a 503 to all of its requests. Rows now go in in key order."""
    import threading

    from hub.ingest import RawSubmission, store_raw_batch
    from tests.conftest import make_hub, make_settings

    hub = make_hub(make_settings(tmp_path, pg_url))
    try:
        sid = uuid.UUID(add_source(client_for(hub), "web", "site", {"write_key": KEY}))
        failures: list[BaseException] = []
        for rnd in range(12):
            keys = [f"msg:{rnd}-{n:03d}" for n in range(300)]
            barrier = threading.Barrier(2)

            def store(order: list[str], barrier: threading.Barrier) -> None:
                subs = [RawSubmission(sid, key, {"method": "POST"}, b"{}") for key in order]
                barrier.wait()
                try:
                    store_raw_batch(hub, subs)
                except Exception as exc:
                    failures.append(exc)

            threads = [threading.Thread(target=store, args=(order, barrier)) for order in (keys, keys[::-1])]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
        assert failures == []
        assert len(raw_rows(hub)) == 12 * 300
    finally:
        hub.engine.dispose()


@contextmanager
def _short_body_sent(hub: Hub, sid: str, message_id: str) -> Iterator[socket.socket]:
    """Real HTTP: a track request whose Content-Length announces 40 bytes more than the body sent, on a socket the
    test then closes or keeps open."""
    from hub.app import create_app
    from tests.server import serve

    body = _track(message_id)
    head = (f"POST /hooks/{sid}/v1/track HTTP/1.1\r\nHost: 127.0.0.1\r\n{_basic_line()}"
            f"Content-Length: {len(body) + 40}\r\n\r\n")
    with serve(create_app(hub, manage_lifecycle=False)) as base:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(head.encode() + body)
            yield sock


def test_a_body_cut_short_by_a_disconnect_is_not_stored(web) -> None:  # type: ignore[no-untyped-def]
    """A sender that closes the connection mid-body. The bytes received (here a complete JSON document, shorter
    than the Content-Length) were stored and processed as if they were its request."""
    import time

    hub, _client, sid = web
    with _short_body_sent(hub, sid, "m-cut") as sock:
        time.sleep(0.3)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(4096)
        time.sleep(0.5)
    assert raw_rows(hub) == []


def test_a_body_that_stops_arriving_is_answered_408_and_its_connection_closed(  # type: ignore[no-untyped-def]
    web, monkeypatch
) -> None:
    """A sender announcing more bytes than it sends, and keeping the connection open. uvicorn has no body
    timeout: the connection and the part received were held for ever (2,000 of them: +26 MB, none closed)."""
    from webhooks import inbound

    monkeypatch.setattr(inbound, "BODY_IDLE_TIMEOUT_S", 0.3)
    hub, _client, sid = web
    with _short_body_sent(hub, sid, "m-stalled") as sock:
        answer = b""
        while chunk := sock.recv(4096):  # until the server closes the connection (unbounded: the 5 s timeout)
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408") and b'"code":"body_timeout"' in answer
    assert b"no part of the body arrived for 0.3 s" in answer
    assert raw_rows(hub) == []


def _basic_line() -> str:
    return f"Authorization: {basic(KEY)['authorization']}\r\n"


def test_a_full_database_refuses_with_503s_logged_as_one_outage_and_loses_nothing_acknowledged(  # type: ignore[no-untyped-def]
    tmp_path, caplog
) -> None:
    """A real SQLITE_FULL (`max_page_count`, as a full disk answers): every request got its 503, and the writer
    and the route each logged it with a traceback (7,865 tracebacks for 3,932 requests on a 3 MB disk). Now the
    outage is logged when it starts, with its traceback, and when it ends; what got a 2xx is stored."""
    import logging

    from sqlalchemy import event, text

    from tests.conftest import make_hub, make_settings, running

    for hub in running(make_hub(make_settings(tmp_path))):
        client = client_for(hub)
        sid = add_source(client, "web", "site", {"write_key": KEY})
        with hub.engine.connect() as conn:
            pages = int(conn.execute(text("PRAGMA page_count")).scalar_one())
        limit = {"pages": pages + 40}

        def cap_pages(dbapi_conn, _record, limit=limit) -> None:  # type: ignore[no-untyped-def]
            dbapi_conn.execute(f"PRAGMA max_page_count = {limit['pages']}")

        event.listen(hub.engine, "connect", cap_pages)
        hub.engine.dispose()  # new connections, each capped
        caplog.set_level(logging.WARNING)
        acknowledged, refused = [], []
        for n in range(150):
            resp = client.post(f"/hooks/{sid}/v1/track", content=_track(f"m-full{n}", pad="x" * 4000),
                               headers=basic(KEY))
            if resp.status_code == 200:
                acknowledged.append(f"m-full{n}")
            else:
                assert resp.status_code == 503 and resp.json()["error"]["code"] == "storage_unavailable"
                refused.append(n)
        assert acknowledged and len(refused) > 50
        [logged] = [r for r in caplog.records if r.levelno >= logging.ERROR]  # one record, with the traceback
        assert logged.exc_info is not None
        assert logged.getMessage() == "storing inbound requests failed: OperationalError: database or disk is full"
        limit["pages"] = 1_000_000  # space again
        hub.engine.dispose()
        resp = client.post(f"/hooks/{sid}/v1/track", content=_track("m-after"), headers=basic(KEY))
        assert resp.json() == {"accepted": 1, "duplicates": 0}
        assert "works again after" in caplog.text and f"{len(refused)} failed meanwhile" in caplog.text
        wait_processed(hub)
        stored = {row.dedup_key for row in raw_rows(hub)}
        assert {f"msg:{m}" for m in acknowledged + ["m-after"]} <= stored
