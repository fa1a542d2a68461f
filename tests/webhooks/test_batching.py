"""Batched delivery keeps every guarantee: order per customer, leases after a crash, cached keys after rotation."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from standardwebhooks import Webhook

from hub.runtime import Hub
from hub.schemas import utcnow
from tests.helpers import ADMIN, client_for
from tests.webhooks.conftest import Receiver, add_endpoint, draft, settle, store, t0
from webhooks import claim as claiming, delivery, sender
from webhooks.delivery import sweep_due
from webhooks.models import AttemptRow, EndpointRow, MessageRow

PHONES = [f"+86138001{i:05d}" for i in range(5)]


def _messages(hub: Hub) -> list[MessageRow]:
    with hub.sessions() as s:
        return list(s.scalars(select(MessageRow)))


def _attempts(hub: Hub) -> list[AttemptRow]:
    with hub.sessions() as s:
        return list(s.scalars(select(AttemptRow)))


def test_one_transaction_of_many_customers_arrives_in_order_per_customer(whub: Hub, receiver: Receiver) -> None:
    add_endpoint(whub, receiver.url)
    store(whub, *[draft(f"{c}-{k}", phone=PHONES[c], at=t0(k)) for k in reversed(range(8)) for c in range(5)])
    settle(whub)
    assert len(receiver.ok()) == 40
    for c in range(5):
        got = [r.source_event_id for r in receiver.ok() if r.source_event_id.startswith(f"{c}-")]
        assert got == [f"{c}-{k}" for k in range(8)]
    assert all(m.status == "delivered" and m.attempt_count == 1 for m in _messages(whub))


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_claimed_but_unrecorded_messages_are_sent_after_the_lease(
        db: str, hub_factory: Callable[..., Hub], receiver: Receiver, request: pytest.FixtureRequest) -> None:
    """A worker that dies between claim and record: the lease runs out and the sweep delivers the message."""
    url = request.getfixturevalue("pg_url") if db == "postgres" else None
    hub = hub_factory(url, retry_schedule="600,30")  # first attempt far away: nothing runs on its own
    endpoint = add_endpoint(hub, receiver.url)
    store(hub, draft("e-1"), draft("e-2", phone=PHONES[1]))
    with hub.transaction() as s:
        s.execute(update(MessageRow).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    batch = claiming.claim(hub, uuid.UUID(endpoint["id"]))  # ... and the worker dies here
    assert isinstance(batch, claiming.Batch) and len(batch.messages) == 2
    assert isinstance(claiming.claim(hub, uuid.UUID(endpoint["id"])), claiming.Wait)  # leased: nobody else
    assert sweep_due(hub, grace_s=0) == 0
    settle(hub)
    assert receiver.received == [] and _attempts(hub) == []
    with hub.transaction() as s:  # the lease ran out
        s.execute(update(MessageRow).values(lease_until=utcnow() - timedelta(seconds=1)))
    assert sweep_due(hub, grace_s=0) == 2
    settle(hub)
    assert sorted(r.source_event_id for r in receiver.ok()) == ["e-1", "e-2"]
    assert len(_attempts(hub)) == 2 and all(m.status == "delivered" for m in _messages(hub))


def test_a_post_that_never_left_is_not_an_attempt(shub: Hub, receiver: Receiver,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def no_slot(url: str, signer: object, items: list[sender.Outgoing], **_: object) -> list[sender.SendResult]:
        calls.append(len(items))
        if len(calls) > 1:
            monkeypatch.undo()
            return sender.send_batch(url, signer, items, **_)  # type: ignore[arg-type]
        return [sender.SendResult(None, 0.0, error="not sent: no free connection", sent=False) for _ in items]

    monkeypatch.setattr(sender, "send_batch", no_slot)
    add_endpoint(shub, receiver.url)
    store(shub, draft("e-1"))
    settle(shub)
    [message] = _messages(shub)
    assert message.attempt_count == 1 and message.status == "delivered"  # the unsent try did not count
    assert [a.success for a in _attempts(shub)] == [True]


def test_rotation_reaches_a_cached_signer(shub: Hub, receiver: Receiver) -> None:
    endpoint = add_endpoint(shub, receiver.url)
    store(shub, draft("e-1"))
    settle(shub)  # the endpoint's signer is cached now
    rotated = client_for(shub).post(f"/v1/endpoints/{endpoint['id']}/rotate-secret", json={"overlap_hours": 0},
                                    headers=ADMIN).json()
    store(shub, draft("e-2"))
    settle(shub)
    first, second = receiver.received
    Webhook(endpoint["secret"]).verify(first.body, first.headers)
    assert len(second.headers["webhook-signature"].split(" ")) == 1
    Webhook(rotated["secret"]).verify(second.body, second.headers)


def test_a_batch_ending_in_success_clears_the_failure_streak(shub: Hub, receiver: Receiver) -> None:
    receiver.script = lambda r: (500, {}, b"") if r.source_event_id == "e-0" else (200, {}, b"")
    endpoint = add_endpoint(shub, receiver.url)
    store(shub, draft("e-0", phone=PHONES[0]))
    settle(shub)
    health = client_for(shub).get(f"/v1/endpoints/{endpoint['id']}/health", headers=ADMIN).json()
    assert health["consecutive_failures"] == 1
    store(shub, draft("e-1", phone=PHONES[1]))
    settle(shub)
    assert delivery.deliver_due(shub, uuid.UUID(endpoint["id"])) == "idle=1"
    with shub.sessions() as s:
        assert s.get(EndpointRow, uuid.UUID(endpoint["id"])).failing_since is None  # type: ignore[union-attr]


def test_a_pump_whose_batch_delivered_nothing_yields_the_lane(shub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """A receiver that hangs costs a whole timeout per batch; its pump used to go on for up to MAX_ROUNDS
    batches while other endpoints' pumps waited behind it (helper-24). It now stops after one such batch and
    queues itself behind them; a pump that delivers keeps going."""
    sent: list[int] = []
    queued: list[tuple[str, tuple[object, ...]]] = []
    monkeypatch.setattr(delivery, "claim", lambda hub, endpoint_id: object())
    monkeypatch.setattr(delivery, "enqueue", lambda name, *args, **kw: queued.append((name, args)))
    monkeypatch.setattr(delivery, "attempt", lambda hub, batch, **_: sent.append(1) or ["retry_scheduled"] * 32)
    endpoint_id = uuid.uuid4()
    assert delivery.deliver_due(shub, endpoint_id) == "retry_scheduled=32"
    assert len(sent) == 1 and queued == [(delivery.DELIVER_DUE_TASK, (str(endpoint_id),))]
    sent.clear()
    monkeypatch.setattr(delivery, "attempt", lambda hub, batch, **_: sent.append(1) or ["delivered"] * 32)
    delivery.deliver_due(shub, endpoint_id)
    assert len(sent) == delivery.MAX_ROUNDS


def test_a_pump_of_a_slow_receiver_yields_the_lane_even_when_it_delivers(
        hub_factory: Callable[..., Hub], receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """A receiver answering 2xx slowly delivered something in every batch, so its pump went on for MAX_ROUNDS
    batches (16 min at 15 s a batch) while every other endpoint's pump waited behind it in the deliver lane."""
    hub = hub_factory(retry_schedule="600,30")  # first attempt far away: only the pump called here sends
    endpoint = add_endpoint(hub, receiver.url)
    store(hub, *[draft(f"e-{c}", phone=PHONES[c]) for c in range(5)])
    with hub.transaction() as s:
        s.execute(update(MessageRow).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    monkeypatch.setattr(delivery, "claim", lambda hub, endpoint_id: claiming.claim(hub, endpoint_id, limit=1))
    monkeypatch.setattr(delivery, "MAX_PUMP_S", 0.2)
    spent = [0.0]  # the receiver's time, counted on a clock of the test's: never the machine's load
    monkeypatch.setattr(delivery, "pump_clock", lambda: spent[0])

    def slow_ok(_: object) -> tuple[int, dict[str, str], bytes]:
        spent[0] += 0.15  # each answer takes 0.15 s: the second one passes MAX_PUMP_S
        return 200, {}, b""

    receiver.script = slow_ok
    queued: list[tuple[str, tuple[object, ...]]] = []
    monkeypatch.setattr(delivery, "enqueue", lambda name, *args, **kw: queued.append((name, args)))
    assert delivery.deliver_due(hub, uuid.UUID(endpoint["id"])) == "delivered=2"
    assert queued == [(delivery.DELIVER_DUE_TASK, (endpoint["id"],))]  # behind the other pumps, for the rest


def _due_now(hub: Hub) -> None:
    with hub.transaction() as s:
        s.execute(update(MessageRow).values(next_attempt_at=utcnow() - timedelta(seconds=1)))


def test_a_slow_receivers_batch_stops_starting_posts_when_the_pumps_turn_is_over(
        hub_factory: Callable[..., Hub], receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """The turn was only checked between batches: 32 answers of 3 s each, 8 at a time, held the deliver lane
    16.5 s. The batch now starts no POST after MAX_PUMP_S; the rest stay due, unattempted, for the next turn."""
    hub = hub_factory(retry_schedule="600,30")  # first attempt far away: only the pumps called here send
    endpoint_id = uuid.UUID(add_endpoint(hub, receiver.url)["id"])
    store(hub, *[draft(f"e-{c}", phone=f"+86139{c:08d}") for c in range(claiming.BATCH)])
    _due_now(hub)
    lane = [0.0]  # the lane's time on a clock of the test's: 3 s an answer, 8 at a time
    step = 3.0 / sender.MAX_IN_FLIGHT
    monkeypatch.setattr(delivery, "pump_clock", lambda: lane[0])

    def slow_ok(_: object) -> tuple[int, dict[str, str], bytes]:
        lane[0] += step
        return 200, {}, b""

    receiver.script = slow_ok
    queued: list[tuple[str, tuple[object, ...]]] = []
    monkeypatch.setattr(delivery, "enqueue", lambda name, *args, **kw: queued.append((name, args)))
    summary = dict(part.split("=") for part in delivery.deliver_due(hub, endpoint_id).split())
    # No POST started after MAX_PUMP_S: what was in flight then (at most one per slot) is all that came after.
    assert lane[0] <= delivery.MAX_PUMP_S + sender.MAX_IN_FLIGHT * step
    assert set(summary) == {"delivered", "deferred"} and int(summary["deferred"]) > 0
    assert int(summary["delivered"]) == len(receiver.received) == len(_attempts(hub)) < claiming.BATCH
    assert queued == [(delivery.DELIVER_DUE_TASK, (str(endpoint_id),))]  # behind the other pumps, for the rest
    waiting = [m for m in _messages(hub) if m.status == "pending"]
    assert len(waiting) == int(summary["deferred"])
    assert all(m.attempt_count == 0 and m.lease_until is None and m.last_error is None for m in waiting)

    for _ in range(4):  # the next turns deliver the rest, still due
        lane[0] = 0.0
        if delivery.deliver_due(hub, endpoint_id) == "idle=1":
            break
    assert sorted(r.headers["webhook-id"] for r in receiver.received) == sorted(str(m.id) for m in _messages(hub))
    assert all(m.status == "delivered" and m.attempt_count == 1 for m in _messages(hub))
    assert len(_attempts(hub)) == claiming.BATCH and all(a.success for a in _attempts(hub))


def test_a_fast_receiver_still_gets_full_batches(hub_factory: Callable[..., Hub], receiver: Receiver,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The turn's budget cuts only a slow batch: throughput rests on batches of 32 (two short transactions each)."""
    hub = hub_factory(retry_schedule="600,30")
    endpoint_id = uuid.UUID(add_endpoint(hub, receiver.url)["id"])
    store(hub, *[draft(f"e-{c}", phone=f"+86139{c:08d}") for c in range(2 * claiming.BATCH)])
    _due_now(hub)
    lane = [0.0]
    monkeypatch.setattr(delivery, "pump_clock", lambda: lane[0])

    def fast_ok(_: object) -> tuple[int, dict[str, str], bytes]:
        lane[0] += 0.005
        return 200, {}, b""

    receiver.script = fast_ok
    sizes: list[int] = []
    send_batch = sender.send_batch

    def counted(url: str, signer: object, items: list[sender.Outgoing], **kw: object) -> list[sender.SendResult]:
        results = send_batch(url, signer, items, **kw)  # type: ignore[arg-type]
        sizes.append(sum(r.sent for r in results))
        return results

    monkeypatch.setattr(sender, "send_batch", counted)
    monkeypatch.setattr(delivery, "enqueue", lambda *args, **kw: None)
    assert delivery.deliver_due(hub, endpoint_id) == "delivered=64 idle=1"
    assert sizes == [claiming.BATCH, claiming.BATCH]
