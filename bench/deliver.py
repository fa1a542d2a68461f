"""Delivery throughput: the hub's outbound pipeline vs a plain async httpx loop, same receiver, same bodies.

    python bench/deliver.py [--events 20000] [--concurrency 8] [--celery]

A uvicorn receiver (answers 200) runs in a subprocess. The hub stores N events (one
subscribed endpoint, one customer per event so per-customer ordering never serialises),
then delivers every message: claims batches, signs, sends, records. The baseline posts the
same signed bodies with httpx.AsyncClient at `--concurrency` in flight. Prints
deliveries/s for both and the ratio.

Default: an SQLite file and the in-process runner with `--concurrency` worker threads.
`--celery`: a throwaway PostgreSQL database (CRMHUB_BENCH_PG, default the local server) and
Redis (CRMHUB_BENCH_REDIS), and one `crmhub worker` (2 worker processes, the default
concurrency). The events are stored first; their delivery tasks are sent to the broker
once the worker is ready, and the clock runs from then until the last message is delivered.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG_ADMIN_URL = os.environ.get("CRMHUB_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CRMHUB_BENCH_REDIS", "redis://127.0.0.1:6379/0")


async def receiver_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Bare ASGI receiver: drain the body, answer 200."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_receiver(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.deliver:receiver_app", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning", "--no-access-log"], cwd=ROOT)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("receiver did not start")


def build_hub(tmp: Path, concurrency: int, runner: Any = None, **overrides: Any) -> Any:
    from hub.db import Base
    from hub.inprocess import InProcessRunner
    from hub.plugins import load_plugins, make_plugin_manager
    from hub.runtime import Hub, set_hub
    from hub.settings import Settings

    values: dict[str, Any] = {"database_url": f"sqlite:///{tmp / 'bench.db'}", "admin_token": "bench",
                              "secret_key": "bench", "data_dir": tmp / "data", "allow_private_endpoints": True}
    values.update(overrides)
    settings = Settings(_env_file=None, **values)
    pm = make_plugin_manager()
    load_plugins(pm, "webhooks", entry_points=False)  # no identity/: events keep their own customer ids
    import webhooks.models  # noqa: F401

    hub = Hub(settings, pm=pm, runner=runner or InProcessRunner(workers=concurrency, maxsize=1_000_000))
    if settings.is_sqlite:
        Base.metadata.create_all(hub.engine)
    else:
        hub.migrate()  # what `crmhub worker` checks for at start
    set_hub(hub)
    return hub


def store_events(hub: Any, n: int, url: str) -> str:
    import uuid

    from hub.pipeline import store_internal
    from hub.schemas import EventDraft, Identity, utcnow
    from webhooks.models import EndpointRow
    from webhooks.signing import generate_secret

    secret = generate_secret()
    with hub.transaction() as session:
        session.add(EndpointRow(url=url, event_types=["*"], secret_sealed=hub.box.seal_str(secret)))

    class Resolver:
        from hub import hookimpl

        @hookimpl(tryfirst=True)
        def resolve_identity(self, event: Any, session: Any) -> tuple[Any, None]:
            return uuid.uuid5(uuid.NAMESPACE_URL, event.identities[0].value), None

    hub.pm.register(Resolver(), name="bench-resolver")
    now = utcnow()
    for start in range(0, n, 1000):
        drafts = [EventDraft(type="lead.submitted", source_event_id=f"e-{i}", occurred_at=now,
                             identities=[Identity(type="phone", value=f"+86138{i:08d}")],
                             properties={"form": "spring", "i": i}) for i in range(start, min(n, start + 1000))]
        with hub.transaction() as session:
            store_internal(hub, session, drafts, source="bench")
    return secret


def run_hub(hub: Any, n: int) -> float:
    from sqlalchemy import func, select

    from webhooks.models import MessageRow

    started = time.perf_counter()
    hub.start()
    while True:
        hub.runner.join(timeout=600)
        with hub.sessions() as s:
            done = s.scalar(select(func.count()).select_from(MessageRow).where(MessageRow.status == "delivered"))
        if done >= n:
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    hub.stop()
    return n / elapsed


def signed_bodies(hub: Any, secret: str) -> list[tuple[str, dict[str, str]]]:
    import json

    from sqlalchemy import select

    from hub.models import EventRow
    from webhooks.models import MessageRow
    from webhooks.sender import signed_headers

    out = []
    with hub.sessions() as s:
        stmt = select(MessageRow.id, EventRow.data).join(EventRow, EventRow.id == MessageRow.event_id)
        for mid, data in s.execute(stmt):
            body = json.dumps({"type": data["type"], "timestamp": data["occurred_at"], "data": data},
                              ensure_ascii=False, separators=(",", ":"))
            out.append((body, signed_headers([secret], str(mid), body)))
    return out


async def run_baseline(url: str, bodies: list[tuple[str, dict[str, str]]], concurrency: int) -> float:
    import httpx

    queue: asyncio.Queue[tuple[str, dict[str, str]]] = asyncio.Queue()
    for item in bodies:
        queue.put_nowait(item)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=httpx.Timeout(15, connect=5), limits=limits, trust_env=False) as client:
        async def worker() -> None:
            while not queue.empty():
                body, headers = queue.get_nowait()
                resp = await client.post(url, content=body.encode(), headers=headers)
                assert resp.status_code == 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(bodies) / (time.perf_counter() - started)


# ---------------------------------------------------------------- the Celery runtime


class Recorder:
    """A runner that only remembers what was enqueued, to send it to the broker once the worker is up."""

    def __init__(self) -> None:
        self.tasks: list[tuple[str, tuple[Any, ...], float | None]] = []

    def enqueue(self, name: str, args: tuple[Any, ...], countdown: float | None = None) -> None:
        self.tasks.append((name, args, countdown))

    def start(self) -> None:
        return None

    def stop(self, timeout: float = 10.0) -> None:
        return None

    def join(self, timeout: float = 30.0) -> bool:
        return True


@contextmanager
def throwaway_database() -> Iterator[str]:
    from sqlalchemy import create_engine, text

    name = f"crmhub_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def start_worker(tmp: Path, env: dict[str, str], app: Any) -> tuple[subprocess.Popen[bytes], Path]:
    """`crmhub worker` on the deliver queue; returns once it answers a ping."""
    log = tmp / "worker.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "worker", "--queues", "deliver"],
                                env=env, cwd=tmp, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("crmhub worker exited:\n" + log.read_text(errors="replace")[-3000:])
        if app.control.ping(timeout=0.5):
            return proc, log
    stop_worker(proc)
    raise SystemExit("crmhub worker did not become ready:\n" + log.read_text(errors="replace")[-3000:])


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def run_celery(tmp: Path, n: int, url: str) -> tuple[float, list[tuple[str, dict[str, str]]]]:
    from hub.worker import CeleryRunner, make_celery

    prefix = f"crmhub-bench-{uuid.uuid4().hex[:8]}:"
    with throwaway_database() as db_url:
        settings = {"database_url": db_url, "broker_url": REDIS_URL, "broker_key_prefix": prefix}
        recorder = Recorder()
        hub = build_hub(tmp, 0, runner=recorder, **settings)
        secret = store_events(hub, n, url)
        with hub.engine.connect() as conn:  # a table loaded a second ago has no statistics yet;
            conn.exec_driver_sql("ANALYZE messages")  # autovacuum would analyze it within a minute
            conn.commit()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("CRMHUB_")},
               "CRMHUB_DATABASE_URL": db_url, "CRMHUB_BROKER_URL": REDIS_URL, "CRMHUB_BROKER_KEY_PREFIX": prefix,
               "CRMHUB_SECRET_KEY": "bench", "CRMHUB_ADMIN_TOKEN": "bench", "CRMHUB_DATA_DIR": str(tmp / "data"),
               "CRMHUB_ALLOW_PRIVATE_ENDPOINTS": "true", "CRMHUB_LOAD_PLUGINS": "webhooks"}
        broker = CeleryRunner(make_celery(hub.settings))
        worker, log = start_worker(tmp, env, broker.app)
        try:
            started = time.perf_counter()
            for name, args, countdown in recorder.tasks:
                broker.enqueue(name, args, countdown)
            wait_delivered(hub, n, log)
            rate = n / (time.perf_counter() - started)
        finally:
            stop_worker(worker)
            broker.app.close()
            _drop_broker_keys(prefix)
        bodies = signed_bodies(hub, secret)
        hub.engine.dispose()
    return rate, bodies


def wait_delivered(hub: Any, n: int, log: Path, timeout: float = 1800.0) -> None:
    from sqlalchemy import func, select

    from webhooks.models import MessageRow

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with hub.sessions() as s:
            done = s.scalar(select(func.count()).select_from(MessageRow).where(MessageRow.status == "delivered"))
        if done >= n:
            return
        time.sleep(0.1)
    raise SystemExit("deliveries did not finish:\n" + log.read_text(errors="replace")[-3000:])


def _drop_broker_keys(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
    client.close()


# ---------------------------------------------------------------- main


def main() -> None:
    from webhooks.sender import MAX_IN_FLIGHT

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=8,
                        help="in-process worker threads, and the baseline's requests in flight")
    parser.add_argument("--celery", action="store_true", help="PostgreSQL + Redis + one `crmhub worker` (2 processes)")
    args = parser.parse_args()
    port = _free_port()
    url = f"http://127.0.0.1:{port}/crm"
    receiver = start_receiver(port)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            if args.celery:
                hub_rate, bodies = run_celery(Path(tmp), args.events, url)
                label = "hub Celery (1 worker, 2 processes, PostgreSQL + Redis)"
            else:
                hub = build_hub(Path(tmp), args.concurrency)
                secret = store_events(hub, args.events, url)
                print(f"stored {args.events} events + messages in {time.perf_counter() - t:.1f}s")
                hub_rate = run_hub(hub, args.events)
                bodies = signed_bodies(hub, secret)
                hub.engine.dispose()
                label = f"hub in-process ({args.concurrency} threads, SQLite)"
        base_rate = asyncio.run(run_baseline(url, bodies, args.concurrency))
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)
    print(f"{label}: {hub_rate:,.0f} deliveries/s (at most {MAX_IN_FLIGHT} POSTs in flight per process)")
    print(f"baseline async httpx (concurrency {args.concurrency}): {base_rate:,.0f} posts/s")
    print(f"ratio hub/baseline: {hub_rate / base_rate:.2f}x (target >= 0.5x)")


if __name__ == "__main__":
    main()
