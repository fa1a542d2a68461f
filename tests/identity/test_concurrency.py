"""Concurrent workers on PostgreSQL: events sharing identifiers end as one customer each, none lost."""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
import uuid
from pathlib import Path

import pytest
from httpx import Response
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.exc import OperationalError

from hub.api import create_source
from hub.errors import RetryableError
from hub.models import RAW_HANDLED, EventRow, RawEvent
from hub.pipeline import prepare_event, process_raw
from hub.runtime import Hub, set_hub
from hub.schemas import Identity, SourceCreate, utcnow
from identity.models import CustomerRow, IdentityRow
from identity.split import split_customer
from tests.conftest import make_hub, make_settings
from tests.helpers import ADMIN, client_for
from tests.identity.conftest import customer_of, draft

WORKERS = 8


def _body(n: int, traits: dict[str, str], user: str | None = None, anon: str | None = None) -> bytes:
    msg = {"type": "identify", "messageId": f"m{n}", "traits": traits, "timestamp": f"2026-01-01T00:{n % 60:02d}:00Z"}
    if user:
        msg["userId"] = user
    msg["anonymousId"] = anon or f"anon-{n}"
    return json.dumps(msg).encode()


@pytest.mark.postgres
def test_concurrent_events_sharing_a_new_identifier(tmp_path: Path, pg_url: str) -> None:
    hub = make_hub(make_settings(tmp_path, pg_url), plugins="identity,web")
    try:
        config = {"write_key": "test-write-key-0001"}
        source = create_source(hub, SourceCreate(connector="web", name="site", config=config))
        bodies: list[bytes] = []
        for k in range(2):  # d_k alone, x_k alone, then the event that links them to the shared phone
            bodies.append(_body(len(bodies), {"email": f"d{k}@example.com"}, anon=f"ad{k}"))
            bodies.append(_body(len(bodies), {"email": f"x{k}@example.com"}, anon=f"ax{k}"))
        for k in range(2):  # within the limits: 4 emails, 5 anonymous ids on the final customer
            bodies.append(_body(len(bodies), {"email": f"d{k}@example.com", "phone": "13912345678"}, anon=f"ax{k}"))
        while len(bodies) < 48:
            anon = "ad0" if len(bodies) % 7 == 0 else "anon-p"
            bodies.append(_body(len(bodies), {"phone": "139 1234 5678"}, anon=anon))
        random.Random(7).shuffle(bodies)
        retries = _run_workers(_store_raws(hub, source.id, bodies, "v1/identify"))

        with hub.sessions() as s:
            statuses = set(s.scalars(select(RawEvent.status)))
            events = list(s.scalars(select(EventRow).where(EventRow.source == "web")))
            customers = {c.id: c for c in s.scalars(select(CustomerRow))}
            phone_owners = list(s.scalars(select(IdentityRow.customer_id).where(IdentityRow.value == "+8613912345678")))
        assert statuses == {RAW_HANDLED}
        assert len(events) == 48  # none lost
        live = [c for c in customers.values() if c.merged_into is None]
        assert len(live) == 1, f"{len(live)} customers; {retries} retries"
        (survivor,) = live
        assert phone_owners == [survivor.id]
        for event in events:
            owner = customers[event.customer_id]
            assert (owner.merged_into or owner.id) == survivor.id
    finally:
        hub.engine.dispose()
        set_hub(None)


def _run_workers(raw_ids: list[int]) -> int:
    """process_raw every raw row on WORKERS threads, re-queueing on RetryableError; returns the retry count."""
    work: queue.Queue[int] = queue.Queue()
    for raw_id in raw_ids:
        work.put(raw_id)
    retries = 0
    lock = threading.Lock()
    start = threading.Barrier(WORKERS)

    def worker() -> None:
        nonlocal retries
        start.wait()
        while True:
            try:
                raw_id = work.get_nowait()
            except queue.Empty:
                return
            try:
                process_raw(raw_id)
            except RetryableError:
                with lock:
                    retries += 1
                time.sleep(random.uniform(0.005, 0.05))
                work.put(raw_id)

    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    return retries


def _store_raws(hub: Hub, source_id: uuid.UUID, bodies: list[bytes], path: str) -> list[int]:
    with hub.transaction() as session:
        raws = [RawEvent(source_id=source_id, dedup_key=f"k{n}", body=body,
                         request={"method": "POST", "headers": {}, "query": {}, "path": path})
                for n, body in enumerate(bodies)]
        session.add_all(raws)
        session.flush()
        return [r.id for r in raws]


@pytest.mark.postgres
def test_concurrent_batches_linking_three_people_end_as_three_customers(tmp_path: Path, pg_url: str) -> None:
    """Batches of 3 events, each batch touching several people: the batch preload locks every owner at once."""
    hub = make_hub(make_settings(tmp_path, pg_url), plugins="identity,web")
    try:
        source = create_source(hub, SourceCreate(connector="web", name="site",
                                                 config={"write_key": "test-write-key-0001"}))
        rng = random.Random(11)
        messages = []
        for n in range(120):  # person g: phone, 2 emails, 4 anonymous ids, all linked through the anon ids
            g = n % 3
            trait = rng.choice([{"phone": f"1391234567{g}"}, {"email": f"p{g}.{rng.randrange(2)}@example.com"}])
            messages.append({"type": "identify", "messageId": f"b{n}", "anonymousId": f"p{g}-{rng.randrange(4)}",
                             "traits": trait, "timestamp": f"2026-01-01T01:{n % 60:02d}:00Z"})
        rng.shuffle(messages)
        bodies = [json.dumps({"batch": messages[i : i + 3]}).encode() for i in range(0, len(messages), 3)]
        retries = _run_workers(_store_raws(hub, source.id, bodies, "v1/batch"))

        with hub.sessions() as s:
            assert set(s.scalars(select(RawEvent.status))) == {RAW_HANDLED}
            customers = {c.id: c for c in s.scalars(select(CustomerRow))}
            events = list(s.scalars(select(EventRow).where(EventRow.source == "web")))
        assert len(events) == 120  # none lost
        live = {c.id for c in customers.values() if c.merged_into is None}
        assert len(live) == 3, f"{len(live)} customers; {retries} retries"
        person_of: dict[uuid.UUID, str] = {}
        for event in events:
            owner = customers[event.customer_id]
            survivor = owner.merged_into or owner.id
            person = _person(event.data)
            assert person_of.setdefault(survivor, person) == person
    finally:
        hub.engine.dispose()
        set_hub(None)


def _person(data: dict[str, object]) -> str:
    """Which of the three people an event is about, from its anonymous id (`p<g>-<k>`)."""
    for ident in data["identities"]:  # type: ignore[attr-defined]
        if ident["type"] == "web_anonymous_id":
            return str(ident["value"]).split("-")[0]
    raise AssertionError(f"no anonymous id in {data}")


@pytest.mark.postgres
def test_the_batch_preload_locks_every_owner_it_read(tmp_path: Path, pg_url: str) -> None:
    """The locks are what keep a concurrent merge off the batch's customers: test them, not only outcomes."""
    hub = make_hub(make_settings(tmp_path, pg_url), plugins="identity")
    other = create_engine(pg_url)
    try:
        in_batch = customer_of(hub, draft(("phone", "13900000021")))
        outside = customer_of(hub, draft(("phone", "13900000022")))
        event = prepare_event(draft(("phone", "13900000021")), source="pos", source_id=None, received_at=utcnow())
        with hub.transaction() as session:
            hub.pm.hook.events_prepared(events=[event], session=session)
            with other.connect() as conn:
                lock = text("SELECT id FROM customers WHERE id = :id FOR UPDATE NOWAIT")
                with pytest.raises(OperationalError, match="lock"):
                    conn.execute(lock, {"id": in_batch})
                conn.rollback()
                assert conn.execute(lock, {"id": outside}).scalar() == outside
                conn.rollback()
    finally:
        other.dispose()
        hub.engine.dispose()
        set_hub(None)


@pytest.mark.postgres
def test_an_event_racing_a_split_follows_the_identifier_to_its_new_customer(tmp_path: Path, pg_url: str) -> None:
    """The resolver reads identifiers before locking their owner; a split commits in between (helper-26's F1).

    The split holds the original customer's lock while it moves the identifier, so the event's worker waits
    for it and must then read the identifier again: before, it used what it had read and the event stayed on
    the original customer (or merged it with someone the split had just separated).
    """
    hub = make_hub(make_settings(tmp_path, pg_url), plugins="identity")
    anon = "anon-split-race-1"
    try:
        original = customer_of(hub, draft(("phone", "13900000031"), ("web_anonymous_id", anon)))
        assert original is not None
        resolved: queue.Queue[uuid.UUID | None] = queue.Queue()

        def late_event() -> None:
            resolved.put(customer_of(hub, draft(("web_anonymous_id", anon)), source="web"))

        with hub.transaction() as session:
            new = split_customer(hub, session, original, [Identity(type="web_anonymous_id", value=anon)], "two people")
            new_id = new.id
            worker = threading.Thread(target=late_event)
            worker.start()
            time.sleep(1.0)  # the worker has read the identifier (still the original's) and waits for the lock
            assert resolved.empty()
        worker.join(30)
        assert resolved.get_nowait() == new_id
        with hub.sessions() as session:
            merged = session.scalars(select(CustomerRow).where(CustomerRow.merged_into.is_not(None))).all()
        assert merged == []
    finally:
        hub.engine.dispose()
        set_hub(None)


def _wait_for_a_lock_wait(engine: Engine, timeout: float = 10.0) -> None:
    """Until another backend of this database waits for a row lock (each look in a transaction of its own:
    pg_stat_activity is read once per transaction)."""
    query = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                 "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as probe:
            if probe.execute(query).scalar():
                return
        time.sleep(0.02)
    raise AssertionError("the split never waited for the identities' lock")


@pytest.mark.postgres
def test_a_split_that_loses_a_deadlock_runs_again(
    tmp_path: Path, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A merge that loses a deadlock is retried (process_raw → RetryableError → the task runner); a split was
    answered 500. Here a real one: the split holds the customer and waits for its identities, which another
    transaction holds while it asks for the customer. PostgreSQL aborts the split (it waited first)."""
    hub = make_hub(make_settings(tmp_path, pg_url), plugins="identity")
    other = create_engine(pg_url)
    try:
        original = customer_of(hub, draft(("phone", "13900000041"), ("email", "split41@example.com")))
        assert original is not None
        outcome: queue.Queue[Response | BaseException] = queue.Queue()
        body = {"identities": [{"type": "email", "value": "split41@example.com"}], "reason": "two people"}

        def split() -> None:
            try:
                outcome.put(client_for(hub).post(f"/v1/customers/{original}/split", headers=ADMIN, json=body))
            except BaseException as exc:  # handed to the test thread, which fails with it
                outcome.put(exc)

        caplog.set_level(logging.INFO, logger="identity.split")
        worker = threading.Thread(target=split)
        with other.connect() as conn:
            conn.execute(text("SELECT id FROM identities WHERE customer_id = :id FOR UPDATE"), {"id": original})
            worker.start()
            _wait_for_a_lock_wait(other)
            conn.execute(text("SELECT id FROM customers WHERE id = :id FOR UPDATE"), {"id": original})  # the cycle
            conn.rollback()
        worker.join(30)
        resp = outcome.get_nowait()
        assert isinstance(resp, Response) and resp.status_code == 201, resp
        new_id = uuid.UUID(resp.json()["id"])
        assert [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()] == [
            f"split of customer {original} retrying (1 of 4): DeadlockDetected"]
        with hub.sessions() as session:
            owners = dict(session.execute(select(IdentityRow.value, IdentityRow.customer_id)).tuples().all())
            splits = session.scalars(select(EventRow).where(EventRow.type == "customer.split")).all()
        assert owners == {"+8613900000041": original, "split41@example.com": new_id}
        assert len(splits) == 1  # the aborted attempt left nothing behind
    finally:
        other.dispose()
        hub.engine.dispose()
        set_hub(None)
