"""Concurrent workers on PostgreSQL: events sharing a new identifier end as one customer, none lost."""

from __future__ import annotations

import json
import queue
import random
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from hub.api import create_source
from hub.errors import RetryableError
from hub.models import RAW_HANDLED, EventRow, RawEvent
from hub.pipeline import process_raw
from hub.runtime import set_hub
from hub.schemas import SourceCreate
from identity.models import CustomerRow, IdentityRow
from tests.conftest import make_hub, make_settings

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
        with hub.transaction() as session:
            raws = [RawEvent(source_id=source.id, dedup_key=f"k{n}", body=body,
                             request={"method": "POST", "headers": {}, "query": {}, "path": "v1/identify"})
                    for n, body in enumerate(bodies)]
            session.add_all(raws)
            session.flush()
            ids = [r.id for r in raws]

        work: queue.Queue[int] = queue.Queue()
        for raw_id in ids:
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
