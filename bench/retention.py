"""Retention: one prune run deleting N old attempts, and what an inbound request waits for meanwhile.

    python bench/retention.py [--attempts 200000] [--db sqlite,postgres]

For each database (an SQLite file; a throwaway PostgreSQL database, CRMHUB_BENCH_PG, migrated as in production):
4 endpoints, N attempts 60 days old spread over them, and 1,000 from the last day (each endpoint's newest success is
recent, so all N are past the 30-day window). Then, with the same rows each time:
- baseline: one `DELETE FROM attempts WHERE at < cutoff` in one transaction (what a naive cleanup does);
- prune: one run of `webhooks.retention.prune_attempts` with the default batches (`hub.retention.BATCH` rows per
  transaction, at most `hub.retention.MAX_BATCHES` per run).
During each, and for two seconds with nothing else running, a thread stores one inbound request every 10 ms
(`hub.ingest.store_raw_batch`, the raw writer's group commit) and records how long each took. Prints the time of
each, and the inbound p50 / p99 / max, and the ratio of the worst inbound wait, baseline over prune.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG_ADMIN_URL = os.environ.get("CRMHUB_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
ENDPOINTS = 4
RECENT = 1_000
INSERT_CHUNK = 20_000
PROBE_EVERY_S = 0.01


def build_hub(url: str, tmp: Path) -> Any:
    from hub.db import Base
    from hub.inprocess import InProcessRunner
    from hub.plugins import load_plugins, make_plugin_manager
    from hub.runtime import Hub, set_hub
    from hub.settings import Settings

    settings = Settings(_env_file=None, database_url=url, admin_token="bench",  # type: ignore[call-arg]
                        secret_key="bench", data_dir=tmp / "data")
    pm = make_plugin_manager()
    load_plugins(pm, None, entry_points=False)
    hub = Hub(settings, pm=pm, runner=InProcessRunner())  # never started: nothing runs behind the bench's back
    if settings.is_sqlite:
        import enrichment.models  # noqa: F401
        import identity.models  # noqa: F401
        import webhooks.models  # noqa: F401

        Base.metadata.create_all(hub.engine)
    else:
        hub.migrate()
    set_hub(hub)
    return hub


def seed(hub: Any) -> tuple[list[uuid.UUID], uuid.UUID]:
    """The endpoints, one message each, and a source for the inbound probe. Returns (endpoint ids, source id)."""
    from hub.models import SourceRow
    from hub.schemas import utcnow
    from webhooks.models import EndpointRow, MessageRow

    now = utcnow()
    endpoints = [uuid.uuid4() for _ in range(ENDPOINTS)]
    source_id = uuid.uuid4()
    with hub.engine.begin() as conn:
        conn.execute(EndpointRow.__table__.insert(), [
            {"id": e, "url": "https://crm.example.com/hook", "description": "", "event_types": ["*"], "enabled": True,
             "secret_sealed": "x", "created_at": now, "updated_at": now} for e in endpoints])
        conn.execute(MessageRow.__table__.insert(), [
            {"id": e, "endpoint_id": e, "event_id": uuid.uuid4(), "event_type": "lead.submitted", "occurred_at": now,
             "status": "delivered", "created_at": now} for e in endpoints])
        conn.execute(SourceRow.__table__.insert(), [
            {"id": source_id, "connector": "web", "name": "bench", "enabled": True, "config_sealed": "x",
             "config_public": {}, "created_at": now, "updated_at": now}])
    return endpoints, source_id


def fill(hub: Any, endpoints: list[uuid.UUID], n: int) -> None:
    """`n` attempts 60 days old, round-robin over the endpoints (1 in 4 failed), then RECENT from the last day."""
    from hub.schemas import utcnow
    from webhooks.models import AttemptRow

    now = utcnow()
    old = now - timedelta(days=60)

    def row(i: int, at: Any) -> dict[str, Any]:
        ok = (i // ENDPOINTS) % 4 != 0  # every endpoint has successes and failures
        return {"message_id": endpoints[i % ENDPOINTS], "endpoint_id": endpoints[i % ENDPOINTS], "at": at,
                "success": ok, "status_code": 200 if ok else 503, "latency_ms": 20.0,
                "error": None if ok else "HTTP 503", "response_excerpt": f'{{"ok": true, "id": "{i:08d}"}}'}

    for start in range(0, n, INSERT_CHUNK):
        with hub.engine.begin() as conn:
            conn.execute(AttemptRow.__table__.insert(), [row(i, old + timedelta(seconds=i))
                                                         for i in range(start, min(n, start + INSERT_CHUNK))])
    with hub.engine.begin() as conn:
        conn.execute(AttemptRow.__table__.insert(), [row(i + 1, now - timedelta(seconds=RECENT - i))
                                                     for i in range(RECENT)])
    analyze(hub)


def analyze(hub: Any) -> None:
    if hub.engine.dialect.name == "postgresql":
        with hub.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE attempts")
    else:
        with hub.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


class Probe:
    """Stores one inbound request every PROBE_EVERY_S on a thread of its own; records each one's duration."""

    def __init__(self, hub: Any, source_id: uuid.UUID) -> None:
        self.hub, self.source_id = hub, source_id
        self.waits: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from hub.ingest import RawSubmission, store_raw_batch

        while not self._stop.is_set():
            sub = RawSubmission(self.source_id, uuid.uuid4().hex, {"method": "POST"}, b'{"type": "track"}')
            started = time.perf_counter()
            store_raw_batch(self.hub, [sub])
            self.waits.append(time.perf_counter() - started)
            self._stop.wait(PROBE_EVERY_S)

    def __enter__(self) -> Probe:
        self._thread.start()
        time.sleep(0.2)  # a few requests before the work starts
        return self

    def __exit__(self, *_: Any) -> None:
        time.sleep(0.2)
        self._stop.set()
        self._thread.join()

    def summary(self) -> str:
        waits = sorted(w * 1000 for w in self.waits)
        p99 = waits[min(len(waits) - 1, int(0.99 * len(waits)))]
        return (f"inbound n={len(waits)} p50 {statistics.median(waits):.1f} ms, p99 {p99:.1f} ms, "
                f"max {waits[-1]:.1f} ms (top 5: {', '.join(f'{w:.0f}' for w in waits[-5:])})")


def one_delete(hub: Any) -> int:
    from sqlalchemy import delete

    from hub.db import write_lock
    from hub.retention import cutoff
    from webhooks.models import AttemptRow

    before = cutoff(hub.settings.attempts_retention_days)
    with write_lock(hub.engine), hub.engine.begin() as conn:
        return int(conn.execute(delete(AttemptRow).where(AttemptRow.at < before)).rowcount)


def one_run(hub: Any) -> int:
    from sqlalchemy import event

    from hub.retention import Pruner
    from webhooks.retention import prune_attempts

    commits: list[float] = []

    def commit(_conn: Any) -> None:
        if threading.current_thread() is threading.main_thread():  # the prune's, not the probe's
            commits.append(time.perf_counter())

    event.listen(hub.engine, "commit", commit)
    pruner = Pruner(hub)
    started = time.perf_counter()
    try:
        deleted = prune_attempts(hub, pruner)
    finally:
        event.remove(hub.engine, "commit", commit)
    gaps = sorted(b - a for a, b in zip([started, *commits], commits, strict=False))
    print(f"    {pruner.batches} batches, more left: {pruner.exhausted}; commit to commit (a batch and the pause "
          f"before it) p50 {1000 * statistics.median(gaps):.0f} ms, max {1000 * gaps[-1]:.0f} ms")
    return deleted


def measure(label: str, url: str, n: int, tmp: Path) -> None:
    from hub.runtime import set_hub

    hub = build_hub(url, tmp)
    try:
        endpoints, source_id = seed(hub)
        with Probe(hub, source_id) as idle:
            time.sleep(2.0)
        print(f"{label}: idle       {idle.summary()}")
        worst = {}
        for name, work in (("baseline", one_delete), ("prune", one_run)):
            started = time.perf_counter()
            fill(hub, endpoints, n)
            print(f"{label}: {n:,} old + {RECENT:,} recent attempts stored in {time.perf_counter() - started:.1f} s")
            with Probe(hub, source_id) as probe:
                started = time.perf_counter()
                deleted = work(hub)
                took = time.perf_counter() - started
            print(f"{label}: {name:9}  deleted {deleted:,} in {took:.2f} s ({deleted / took:,.0f} rows/s); "
                  f"{probe.summary()}")
            worst[name] = max(probe.waits)
        print(f"{label}: worst inbound wait, baseline / prune: {worst['baseline'] / worst['prune']:.1f}x")
    finally:
        hub.engine.dispose()
        set_hub(None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=200_000)
    parser.add_argument("--db", default="sqlite,postgres")
    args = parser.parse_args()
    from sqlalchemy import create_engine, text

    for db in args.db.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            if db == "sqlite":
                measure("SQLite", f"sqlite:///{Path(tmp) / 'bench.db'}", args.attempts, Path(tmp))
                continue
            name = f"crmhub_bench_{uuid.uuid4().hex[:8]}"
            admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                measure("PostgreSQL", PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", args.attempts, Path(tmp))
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()


if __name__ == "__main__":
    main()
