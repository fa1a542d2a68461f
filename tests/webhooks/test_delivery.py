"""Outbound delivery: Standard Webhooks on the wire, retries, 410, abort, disable-after-days, throttle, sweep."""

from __future__ import annotations

import gzip
import time
import uuid
from datetime import timedelta

from sqlalchemy import select, update
from standardwebhooks import Webhook

from hub.runtime import Hub
from hub.schemas import utcnow
from tests.helpers import ADMIN, client_for, count_events
from tests.webhooks.conftest import Receiver, add_endpoint, draft, make_due, settle, store
from webhooks.delivery import sweep_due
from webhooks.models import AttemptRow, EndpointRow, MessageRow


def _messages(hub: Hub) -> list[MessageRow]:
    with hub.sessions() as s:
        return list(s.scalars(select(MessageRow).order_by(MessageRow.created_at)))


def _attempts(hub: Hub) -> list[AttemptRow]:
    with hub.sessions() as s:
        return list(s.scalars(select(AttemptRow).order_by(AttemptRow.id)))


def test_delivered_signed_per_standard_webhooks(whub: Hub, receiver: Receiver) -> None:
    endpoint = add_endpoint(whub, receiver.url)
    store(whub, draft("e-1"))
    settle(whub)
    assert len(receiver.received) == 1
    req = receiver.received[0]
    payload = Webhook(endpoint["secret"]).verify(req.body, req.headers)  # the reference library verifies it
    assert payload["type"] == "lead.submitted"
    assert payload["data"]["source_event_id"] == "e-1"
    assert payload["timestamp"] == payload["data"]["occurred_at"]
    [message] = _messages(whub)
    assert req.headers["webhook-id"] == str(message.id)
    assert req.headers["webhook-signature"].startswith("v1,")
    assert message.status == "delivered" and message.attempt_count == 1
    [attempt] = _attempts(whub)
    assert attempt.success and attempt.status_code == 200 and attempt.latency_ms is not None
    assert attempt.response_excerpt == '{"ok":true}'


def test_a_compressed_answer_is_recorded_and_the_message_delivered_once(whub: Hub, receiver: Receiver) -> None:
    """The excerpt is the body's raw bytes, and a gzip header holds NULs, which PostgreSQL refuses in text: the batch's
    outcomes were never recorded, so the lease ran out and the receiver got the message again, for ever."""
    body = gzip.compress(b'{"ok":true}', mtime=0)
    assert b"\x00" in body
    receiver.script = lambda _r: (200, {"content-encoding": "gzip", "content-type": "application/json"}, body)
    add_endpoint(whub, receiver.url)
    store(whub, draft("e-1"))
    settle(whub)
    [message] = _messages(whub)
    assert message.status == "delivered" and message.attempt_count == 1
    [attempt] = _attempts(whub)
    assert attempt.success and attempt.response_excerpt is not None and "\x00" not in attempt.response_excerpt
    assert len(receiver.received) == 1


def test_event_type_filter_and_a_disabled_endpoint_holds_what_arrives_until_re_enabled(
    shub: Hub, receiver: Receiver
) -> None:
    add_endpoint(shub, receiver.url, event_types=["order.created"])
    other = add_endpoint(shub, receiver.url + "/2")
    client = client_for(shub)
    client.patch(f"/v1/endpoints/{other['id']}", json={"enabled": False}, headers=ADMIN)
    store(shub, draft("e-1", type="lead.submitted"), draft("e-2", type="order.created"))
    settle(shub)
    assert [(r.path, r.source_event_id) for r in receiver.received] == [("/crm/hook", "e-2")]
    held = [m for m in _messages(shub) if str(m.endpoint_id) == other["id"]]
    assert [m.status for m in held] == ["pending", "pending"]  # nothing lost while it was off
    client.patch(f"/v1/endpoints/{other['id']}", json={"enabled": True}, headers=ADMIN)
    settle(shub)
    assert [r.source_event_id for r in receiver.received if r.path == "/crm/hook/2"] == ["e-1", "e-2"]


def test_retry_keeps_webhook_id_and_records_every_attempt(shub: Hub, receiver: Receiver) -> None:
    answers = iter([(500, {}, b"boom"), (200, {}, b"ok")])
    receiver.script = lambda _r: next(answers)
    add_endpoint(shub, receiver.url)
    store(shub, draft("e-1"))
    settle(shub)
    [message] = _messages(shub)
    assert message.status == "pending" and message.attempt_count == 1
    assert message.next_attempt_at > utcnow() + timedelta(seconds=20)  # 30 s ± 20 % jitter
    make_due(shub)
    assert [r.headers["webhook-id"] for r in receiver.received] == [str(message.id)] * 2
    assert receiver.received[0].headers["webhook-signature"] != "" and len(receiver.ok()) == 1
    attempts = _attempts(shub)
    assert [(a.success, a.status_code) for a in attempts] == [(False, 500), (True, 200)]
    assert attempts[0].error == "HTTP 500" and attempts[0].response_excerpt == "boom"
    assert _messages(shub)[0].status == "delivered"


def test_retry_after_is_honoured(shub: Hub, receiver: Receiver) -> None:
    receiver.script = lambda _r: (503, {"retry-after": "600"}, b"")
    add_endpoint(shub, receiver.url)
    store(shub, draft("e-1"))
    settle(shub)
    [message] = _messages(shub)
    assert message.next_attempt_at >= utcnow() + timedelta(seconds=590)


def test_retry_after_is_a_minimum_even_with_the_claims_slack(shub: Hub, receiver: Receiver) -> None:
    """helper-25 saw `retry-after: 20` retried after 19.8 s: the claim takes messages up to DUE_SLACK_S early."""
    from webhooks.claim import DUE_SLACK_S

    receiver.script = lambda _r: (503, {"retry-after": "600"}, b"")
    add_endpoint(shub, receiver.url)
    before_the_answer = utcnow()
    store(shub, draft("e-1"))
    settle(shub)
    [message] = _messages(shub)
    earliest_claim = message.next_attempt_at - timedelta(seconds=DUE_SLACK_S)
    assert earliest_claim >= before_the_answer + timedelta(seconds=600)


def test_schedule_exhausted_marks_failed_then_replay_keeps_id(hub_factory, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    hub = hub_factory(retry_schedule="0,0,0")
    receiver.script = lambda _r: (500, {}, b"down")
    endpoint = add_endpoint(hub, receiver.url)
    store(hub, draft("e-1"))
    settle(hub)
    [message] = _messages(hub)
    assert message.status == "failed" and message.attempt_count == 3 and len(receiver.received) == 3
    receiver.script = lambda _r: (200, {}, b"")
    client = client_for(hub)
    resp = client.post(f"/v1/endpoints/{endpoint['id']}/replay", json={"status": "failed"}, headers=ADMIN)
    assert resp.status_code == 202 and resp.json() == {"queued": 1}
    settle(hub)
    assert receiver.received[-1].headers["webhook-id"] == str(message.id)
    assert _messages(hub)[0].status == "delivered"
    failed = client.get(f"/v1/endpoints/{endpoint['id']}/messages?status=failed", headers=ADMIN).json()
    assert failed["items"] == []


def test_410_disables_endpoint_and_raises_operational_event(shub: Hub, receiver: Receiver) -> None:
    receiver.script = lambda _r: (410, {}, b"gone")
    endpoint = add_endpoint(shub, receiver.url)
    store(shub, draft("e-1"))
    settle(shub)
    got = client_for(shub).get(f"/v1/endpoints/{endpoint['id']}", headers=ADMIN).json()
    assert got["enabled"] is False and "410" in got["disabled_reason"]
    assert _messages(shub)[0].status == "failed" and len(receiver.received) == 1
    assert count_events(shub, type="endpoint.disabled", source="webhooks") == 1


def test_abort_message_header_stops_retries(shub: Hub, receiver: Receiver) -> None:
    receiver.script = lambda _r: (422, {"webhook-delivery": "abort-message"}, b"")
    add_endpoint(shub, receiver.url)
    store(shub, draft("e-1"))
    settle(shub)
    make_due(shub)
    assert len(receiver.received) == 1
    [message] = _messages(shub)
    assert message.status == "failed" and message.attempt_count == 1
    assert "abort-message" in (message.last_error or "")  # the listing says why one attempt ended it


def test_endpoint_failing_for_days_is_disabled_and_reported(shub: Hub, receiver: Receiver) -> None:
    receiver.script = lambda _r: (500, {}, b"")
    endpoint = add_endpoint(shub, receiver.url)
    with shub.transaction() as s:
        s.get(EndpointRow, uuid.UUID(endpoint["id"])).failing_since = utcnow() - timedelta(days=6)
    store(shub, draft("e-1"))
    settle(shub)
    got = client_for(shub).get(f"/v1/endpoints/{endpoint['id']}", headers=ADMIN).json()
    assert got["enabled"] is False and "5 days" in got["disabled_reason"]
    assert count_events(shub, type="endpoint.disabled") == 1
    make_due(shub)
    assert len(receiver.received) == 1  # disabled: no more attempts


def test_endpoint_disabled_event_reaches_other_subscribers(shub: Hub, receiver: Receiver) -> None:
    receiver.script = lambda r: (410, {}, b"") if r.json["type"] == "lead.submitted" else (200, {}, b"")
    add_endpoint(shub, receiver.url, event_types=["lead.submitted"])
    add_endpoint(shub, receiver.url, event_types=["endpoint.disabled"])
    store(shub, draft("e-1"))
    settle(shub)
    types = [r.json["type"] for r in receiver.ok()]
    assert types == ["endpoint.disabled"]
    assert receiver.ok()[0].json["data"]["properties"]["reason"].startswith("the receiver answered 410")
    assert receiver.ok()[0].json["data"]["customer_id"] is None  # an operational event is about no customer


def test_rotation_sends_both_signatures_during_overlap(shub: Hub, receiver: Receiver) -> None:
    endpoint = add_endpoint(shub, receiver.url)
    rotated = client_for(shub).post(f"/v1/endpoints/{endpoint['id']}/rotate-secret", headers=ADMIN).json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != endpoint["secret"]
    store(shub, draft("e-1"))
    settle(shub)
    req = receiver.received[0]
    assert len(req.headers["webhook-signature"].split(" ")) == 2
    Webhook(endpoint["secret"]).verify(req.body, req.headers)
    Webhook(rotated["secret"]).verify(req.body, req.headers)


def test_rotating_again_during_an_overlap_is_refused_unless_forced(shub: Hub, receiver: Receiver) -> None:
    """Only one old secret signs alongside the new: a second rotation would silently drop the first one."""
    endpoint = add_endpoint(shub, receiver.url)
    client = client_for(shub)
    url = f"/v1/endpoints/{endpoint['id']}/rotate-secret"
    first = client.post(url, headers=ADMIN).json()
    again = client.post(url, headers=ADMIN)
    assert again.status_code == 409 and again.json()["error"]["code"] == "rotation_in_progress"
    store(shub, draft("e-1"))
    settle(shub)
    req = receiver.received[0]
    Webhook(endpoint["secret"]).verify(req.body, req.headers)  # the refused rotation changed nothing
    Webhook(first["secret"]).verify(req.body, req.headers)
    forced = client.post(url, json={"force": True}, headers=ADMIN)
    assert forced.status_code == 200 and forced.json()["secret"] not in (first["secret"], endpoint["secret"])


def test_rotation_with_zero_overlap_sends_only_the_new_signature(shub: Hub, receiver: Receiver) -> None:
    endpoint = add_endpoint(shub, receiver.url)
    rotated = client_for(shub).post(f"/v1/endpoints/{endpoint['id']}/rotate-secret", json={"overlap_hours": 0},
                                    headers=ADMIN).json()
    store(shub, draft("e-1"))
    settle(shub)
    req = receiver.received[0]
    assert len(req.headers["webhook-signature"].split(" ")) == 1
    Webhook(rotated["secret"]).verify(req.body, req.headers)


def test_throttle_spaces_deliveries(shub: Hub, receiver: Receiver) -> None:
    add_endpoint(shub, receiver.url, rate_limit=5)
    store(shub, *[draft(f"e-{i}", phone=f"+861380013{i:04d}") for i in range(8)])
    deadline = time.monotonic() + 20
    while len(receiver.received) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(receiver.received) == 8
    span = receiver.received[-1].at - receiver.received[0].at
    assert span >= 7 / 5 * 0.9  # 8 sends at 5/s need ≥ 1.4 s


def test_sweep_recovers_a_lost_countdown(shub: Hub, receiver: Receiver) -> None:
    answers = iter([(500, {}, b""), (200, {}, b"")])
    receiver.script = lambda _r: next(answers)
    add_endpoint(shub, receiver.url)
    store(shub, draft("e-1"))
    settle(shub)
    assert sweep_due(shub) == 0  # not due yet
    with shub.transaction() as s:
        for m in s.scalars(select(MessageRow)):
            m.next_attempt_at = utcnow() - timedelta(minutes=5)
    assert sweep_due(shub) == 1  # the countdown timer is still 30 s away: the sweep delivers it
    settle(shub)
    assert _messages(shub)[0].status == "delivered"


def test_resend_single_message_keeps_id(shub: Hub, receiver: Receiver) -> None:
    endpoint = add_endpoint(shub, receiver.url)
    store(shub, draft("e-1"))
    settle(shub)
    [message] = _messages(shub)
    resp = client_for(shub).post(f"/v1/endpoints/{endpoint['id']}/messages/{message.id}/resend", headers=ADMIN)
    assert resp.status_code == 202 and resp.json() == {"queued": 1}
    settle(shub)
    assert [r.headers["webhook-id"] for r in receiver.received] == [str(message.id)] * 2


def test_refused_private_address_at_send_is_a_recorded_failure(hub_factory, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    hub = hub_factory(retry_schedule="0")
    add_endpoint(hub, receiver.url)
    hub.settings.allow_private_endpoints = False  # e.g. DNS now points the host at a private address
    store(hub, draft("e-1"))
    settle(hub)
    assert receiver.received == []
    [attempt] = _attempts(hub)
    assert attempt.status_code is None and "loopback" in (attempt.error or "")


def test_an_unreadable_endpoint_secret_is_a_recorded_failure_not_a_stuck_lease(shub: Hub, receiver: Receiver) -> None:
    """The hub runs with another CRMHUB_SECRET_KEY: each batch used to crash after its claim, so its messages
    stayed leased and pending forever, never attempted, and the endpoint's health said `healthy`."""
    from hub.crypto import SecretBox

    endpoint = add_endpoint(shub, receiver.url)
    sealed_elsewhere = SecretBox("another key").seal_str(endpoint["secret"])
    with shub.transaction() as s:
        s.execute(update(EndpointRow).where(EndpointRow.id == uuid.UUID(endpoint["id"]))
                  .values(secret_sealed=sealed_elsewhere))
    store(shub, draft("e-1"))
    settle(shub)
    assert receiver.received == []
    [message] = _messages(shub)
    assert message.attempt_count == 1 and message.lease_until is None
    [attempt] = _attempts(shub)
    assert attempt.status_code is None and "CRMHUB_SECRET_KEY" in (attempt.error or "")
    health = client_for(shub).get(f"/v1/endpoints/{endpoint['id']}/health", headers=ADMIN).json()
    assert health["status"] == "failing" and health["consecutive_failures"] == 1
