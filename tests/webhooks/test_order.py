"""Per-customer order: a failing message holds back only its own customer's later messages to that endpoint."""

from __future__ import annotations

from hub.runtime import Hub
from tests.webhooks.conftest import Receiver, add_endpoint, draft, make_due, settle, store, t0

ALICE, BOB = "+8613800138000", "+8613900139000"


def test_failing_message_holds_back_only_its_customer(whub: Hub, receiver: Receiver) -> None:
    failed_once: set[str] = set()

    def script(r):  # type: ignore[no-untyped-def]
        if r.source_event_id == "a1" and "a1" not in failed_once:
            failed_once.add("a1")
            return 500, {}, b"try later"
        return 200, {}, b""

    receiver.script = script
    add_endpoint(whub, receiver.url)
    store(whub, draft("a1", phone=ALICE, at=t0(1)), draft("b1", phone=BOB, at=t0(2)))
    store(whub, draft("a2", phone=ALICE, at=t0(3)), draft("b2", phone=BOB, at=t0(4)))
    store(whub, draft("a3", phone=ALICE, at=t0(5)))
    settle(whub)
    delivered = [r.source_event_id for r in receiver.ok()]
    assert sorted(delivered) == ["b1", "b2"]  # Bob is not held back by Alice's failure
    assert delivered.index("b1") < delivered.index("b2")
    assert [r.source_event_id for r in receiver.received if r.status >= 300] == ["a1"]  # a2, a3 never tried early
    make_due(whub)
    for _ in range(3):  # each success releases the next message of that customer
        settle(whub)
    alice = [r.source_event_id for r in receiver.ok() if r.source_event_id.startswith("a")]
    assert alice == ["a1", "a2", "a3"]


def test_order_follows_occurrence_not_arrival_within_a_backlog(whub: Hub, receiver: Receiver) -> None:
    """Messages waiting behind a failure go out in occurred_at order, even if stored in another order."""
    failed_once: set[str] = set()

    def script(r):  # type: ignore[no-untyped-def]
        if r.source_event_id == "a1" and not failed_once:
            failed_once.add("a1")
            return 503, {}, b""
        return 200, {}, b""

    receiver.script = script
    add_endpoint(whub, receiver.url)
    store(whub, draft("a1", phone=ALICE, at=t0(1)))
    settle(whub)
    store(whub, draft("a4", phone=ALICE, at=t0(9)))
    store(whub, draft("a2", phone=ALICE, at=t0(3)))
    store(whub, draft("a3", phone=ALICE, at=t0(5)))
    settle(whub)
    assert receiver.ok() == []
    make_due(whub)
    for _ in range(4):
        settle(whub)
    assert [r.source_event_id for r in receiver.ok()] == ["a1", "a2", "a3", "a4"]


def test_events_without_customer_are_not_ordered_behind_anything(whub: Hub, receiver: Receiver) -> None:
    receiver.script = lambda r: (500, {}, b"") if r.source_event_id == "x1" else (200, {}, b"")
    add_endpoint(whub, receiver.url)
    store(whub, draft("x1", phone=None, at=t0(1)), draft("x2", phone=None, at=t0(2)))
    settle(whub)
    assert [r.source_event_id for r in receiver.ok()] == ["x2"]
