"""/ops in real headless Chromium: a failing endpoint must be shown as failing (screenshot kept as an artifact)."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from hub.app import create_app
from hub.runtime import Hub
from tests.webhooks.conftest import Receiver, add_endpoint, draft, settle, store

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium: apt-get install -y chromium"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
            f"--user-data-dir={profile}", "--window-size=1400,900", *extra, url]
    return subprocess.run(args, capture_output=True, text=True, timeout=90, check=False)


def test_ops_page_shows_failing_endpoint_first(hub_factory, receiver: Receiver, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hub: Hub = hub_factory(retry_schedule="0")
    receiver.script = lambda r: (200, {}, b"") if r.headers.get("webhook-id") is None else (500, {}, b"down")
    failing = add_endpoint(hub, receiver.url, event_types=["lead.submitted"])
    healthy = add_endpoint(hub, receiver.url + "/healthy", event_types=["order.created"])
    store(hub, draft("e-1"))
    settle(hub)

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(hub, manage_lifecycle=False), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        url = f"http://ops:test-admin-token@127.0.0.1:{port}/ops"
        dom = _chromium(url, tmp_path / "profile", "--dump-dom")
        assert dom.returncode == 0, dom.stderr[-2000:]
        html = dom.stdout
        rows = re.findall(r'data-endpoint-id="([^"]+)" data-status="([^"]+)"', html)
        assert rows, f"no endpoint rows rendered:\n{html[:2000]}"
        assert rows[0] == (failing["id"], "failing"), rows  # failing first, and shown as failing
        assert (healthy["id"], "healthy") in rows
        assert "Replay 1 failed" in html
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "ops.png"
        shot.unlink(missing_ok=True)
        res = _chromium(url, tmp_path / "profile2", f"--screenshot={shot}")
        assert res.returncode == 0 and shot.exists() and shot.stat().st_size > 5000, res.stderr[-2000:]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
