"""Ingest benchmark: `crmhub serve` (embedded default) against a bare Starlette endpoint, same load.

    python bench/ingest.py [--duration 10] [--connections 64] [--batch 5] [--tool auto|wrk|python]

Both servers run as separate processes on this machine, one after the other, under
the same load: signed `web` batch requests with unique message ids. wrk (Debian's
package) drives them when present, else a bundled asyncio generator. Prints
requests/s and p50/p99 latency for both, their ratio, and checks that every
request crmhub acknowledged is in its database.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
WRITE_KEY = "bench-write-key-001"
TOKEN = "bench-admin-token"
AUTH = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()

WRK_SCRIPT = r"""
local counter = 0
local next_thread_id = 0
setup = function(thread)
  -- sets the global `tid` inside that thread's own Lua state
  thread:set("tid", next_thread_id)
  next_thread_id = next_thread_id + 1
end
init = function(args)
  batch = tonumber(args[1])
  run = args[2]
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = args[3]
end
request = function()
  counter = counter + 1
  local parts = {}
  for i = 1, batch do
    parts[i] = string.format(
      '{"type":"track","event":"Course Viewed","userId":"u-%d","messageId":"%s-%d-%d-%d",' ..
      '"properties":{"course":"python","price":12800},"timestamp":"2026-01-25T14:22:00+08:00"}',
      (counter * batch + i) %% 5000, run, tid, counter, i)
  end
  return wrk.format(nil, nil, nil, '{"batch":[' .. table.concat(parts, ",") .. ']}')
end
done = function(summary, latency, requests)
  io.write(string.format('WRKJSON {"requests": %d, "duration_us": %d, "non2xx": %d, "errors": %d, ' ..
    '"p50_us": %d, "p99_us": %d}\n', summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early ({proc.returncode}) for {url}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def batch_body(run: str, n: int, batch: int) -> bytes:
    msgs = [{"type": "track", "event": "Course Viewed", "userId": f"u-{(n * batch + i) % 5000}",
             "messageId": f"{run}-py-{n}-{i}", "properties": {"course": "python", "price": 12800},
             "timestamp": "2026-01-25T14:22:00+08:00"} for i in range(batch)]
    return json.dumps({"batch": msgs}).encode()


def run_wrk(url: str, duration: int, connections: int, batch: int, run: str, workdir: Path) -> dict[str, Any]:
    script = workdir / "bench.lua"
    script.write_text(WRK_SCRIPT.replace("%%", "%"))
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", str(script), url,
         "--", str(batch), run, AUTH],
        capture_output=True, text=True, check=True,
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("WRKJSON "))
    data = json.loads(line.removeprefix("WRKJSON "))
    seconds = data["duration_us"] / 1e6
    return {"rps": data["requests"] / seconds, "p50_ms": data["p50_us"] / 1000, "p99_ms": data["p99_us"] / 1000,
            "requests": data["requests"], "ok": data["requests"] - data["non2xx"] - data["errors"],
            "non2xx": data["non2xx"], "errors": data["errors"]}


async def _python_load(url: str, duration: int, connections: int, batch: int, run: str) -> dict[str, Any]:
    latencies: list[float] = []
    ok = bad = 0
    counter = 0
    deadline = time.monotonic() + duration
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        async def worker() -> None:
            nonlocal ok, bad, counter
            while time.monotonic() < deadline:
                counter += 1
                body = batch_body(run, counter, batch)
                started = time.perf_counter()
                resp = await client.post(url, content=body, headers={"authorization": AUTH,
                                                                     "content-type": "application/json"})
                latencies.append(time.perf_counter() - started)
                if 200 <= resp.status_code < 300:
                    ok += 1
                else:
                    bad += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.monotonic() - started
    q = statistics.quantiles(latencies, n=100)
    return {"rps": len(latencies) / elapsed, "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000,
            "requests": len(latencies), "ok": ok, "non2xx": bad, "errors": 0}


def load(tool: str, url: str, args: argparse.Namespace, run: str, workdir: Path) -> dict[str, Any]:
    if tool == "wrk":
        return run_wrk(url, args.duration, args.connections, args.batch, run, workdir)
    return asyncio.run(_python_load(url, args.duration, args.connections, args.batch, run))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--batch", type=int, default=5, help="messages per signed batch request")
    parser.add_argument("--tool", choices=["auto", "wrk", "python"], default="auto")
    args = parser.parse_args()
    tool = args.tool if args.tool != "auto" else ("wrk" if shutil.which("wrk") else "python")
    workdir = Path(tempfile.mkdtemp(prefix="crmhub-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMHUB_")}
    env.update(CRMHUB_DATABASE_URL=f"sqlite:///{workdir / 'bench.db'}", CRMHUB_ADMIN_TOKEN=TOKEN,
               CRMHUB_DATA_DIR=str(workdir / "data"), CRMHUB_SECRET_KEY="bench")
    print(f"load tool: {tool}; {args.connections} connections, {args.duration}s each, {args.batch} messages/request")

    bare_port = free_port()
    bare = subprocess.Popen([sys.executable, str(ROOT / "bench" / "_bare.py"), str(bare_port)])
    try:
        wait_up(f"http://127.0.0.1:{bare_port}/", bare)
        baseline = load(tool, f"http://127.0.0.1:{bare_port}/hooks/x/v1/batch", args, "bare", workdir)
    finally:
        bare.terminate()
        bare.wait()

    port = free_port()
    hub = subprocess.Popen([sys.executable, "-m", "hub.cli", "serve", "--port", str(port)], env=env, cwd=workdir,
                           stdout=subprocess.DEVNULL)
    try:
        wait_up(f"http://127.0.0.1:{port}/healthz", hub)
        resp = httpx.post(f"http://127.0.0.1:{port}/v1/sources", headers={"authorization": f"Bearer {TOKEN}"},
                          json={"connector": "web", "name": "bench", "config": {"write_key": WRITE_KEY}}, timeout=10)
        resp.raise_for_status()
        source_id = resp.json()["id"]
        crmhub = load(tool, f"http://127.0.0.1:{port}/hooks/{source_id}/v1/batch", args, "hub", workdir)
    finally:
        hub.terminate()
        hub.wait(timeout=120)
    with sqlite3.connect(workdir / "bench.db") as conn:
        stored = conn.execute("SELECT count(*) FROM raw_events").fetchone()[0]

    print(f"{'':10} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'2xx':>9} {'other':>7}")
    for name, r in (("bare", baseline), ("crmhub", crmhub)):
        print(f"{name:10} {r['rps']:10.0f} {r['p50_ms']:9.1f} {r['p99_ms']:9.1f} {r['ok']:9d} "
              f"{r['non2xx'] + r['errors']:7d}")
    ratio = crmhub["rps"] / baseline["rps"]
    print(f"ratio crmhub/bare requests/s: {ratio:.2f}x (target >= 0.35x); crmhub p99 {crmhub['p99_ms']:.1f} ms "
          f"(target <= 50 ms)")
    durable = "yes" if stored >= crmhub["ok"] else "NO"
    print(f"durable: {stored} raw rows stored for {crmhub['ok']} acknowledged requests -> {durable}")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
