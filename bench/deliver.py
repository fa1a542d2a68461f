"""Delivery throughput: the hub's outbound pipeline vs a plain async httpx loop, same receiver, same bodies.

    python bench/deliver.py [--events 20000] [--concurrency 8]

A uvicorn receiver (answers 200) runs in a subprocess. The hub stores N events on an
SQLite file (one subscribed endpoint, one customer per event so per-customer ordering
never serialises), then its in-process runner with `--concurrency` worker threads claims,
signs, sends and records every message. The baseline posts the same signed bodies with
httpx.AsyncClient at the same concurrency. Prints deliveries/s for both and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


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


def build_hub(tmp: Path, concurrency: int) -> Any:
    from hub.db import Base
    from hub.inprocess import InProcessRunner
    from hub.plugins import load_plugins, make_plugin_manager
    from hub.runtime import Hub, set_hub
    from hub.settings import Settings

    settings = Settings(_env_file=None, database_url=f"sqlite:///{tmp / 'bench.db'}", admin_token="bench",  # type: ignore[call-arg]
                        secret_key="bench", data_dir=tmp / "data", allow_private_endpoints=True)
    pm = make_plugin_manager()
    load_plugins(pm, "webhooks", entry_points=False)  # no identity/: events keep their own customer ids
    import webhooks.models  # noqa: F401

    hub = Hub(settings, pm=pm, runner=InProcessRunner(workers=concurrency, maxsize=1_000_000))
    Base.metadata.create_all(hub.engine)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=8, help="hub worker threads = baseline in-flight requests")
    args = parser.parse_args()
    port = _free_port()
    url = f"http://127.0.0.1:{port}/crm"
    receiver = start_receiver(port)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            hub = build_hub(Path(tmp), args.concurrency)
            t = time.perf_counter()
            secret = store_events(hub, args.events, url)
            print(f"stored {args.events} events + messages in {time.perf_counter() - t:.1f}s")
            hub_rate = run_hub(hub, args.events)
            bodies = signed_bodies(hub, secret)
            hub.engine.dispose()
        base_rate = asyncio.run(run_baseline(url, bodies, args.concurrency))
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)
    print(f"hub in-process ({args.concurrency} threads, SQLite): {hub_rate:,.0f} deliveries/s")
    print(f"baseline async httpx (concurrency {args.concurrency}): {base_rate:,.0f} posts/s")
    print(f"ratio hub/baseline: {hub_rate / base_rate:.2f}x (target >= 0.5x)")


if __name__ == "__main__":
    main()
