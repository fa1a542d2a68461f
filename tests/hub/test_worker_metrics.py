"""`crmhub worker --metrics-port`: a Celery worker's processing metrics, summed over its pool processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from hub.models import EventRow, RawEvent
from hub.plugins import load_plugins, make_plugin_manager
from hub.runtime import Hub, set_hub
from tests.conftest import ADMIN_TOKEN, REDIS_URL, make_settings, running
from tests.helpers import ADMIN, basic, checkout_pythonpath, client_for, jbody

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.celery, pytest.mark.slow]

KEY = "worker-metrics-write-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def celery_hub(pg_url: str, tmp_path: Path) -> Iterator[tuple[Hub, dict[str, str]]]:
    """A hub that sends its tasks to Redis, and the environment a worker for it runs with."""
    prefix = f"crmhub-test-{uuid.uuid4().hex[:8]}:"
    settings = make_settings(tmp_path, pg_url, broker_url=REDIS_URL, broker_key_prefix=prefix)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("CRMHUB_", "PROMETHEUS_"))},
           "CRMHUB_DATABASE_URL": pg_url, "CRMHUB_BROKER_URL": REDIS_URL, "CRMHUB_BROKER_KEY_PREFIX": prefix,
           "CRMHUB_ADMIN_TOKEN": ADMIN_TOKEN, "CRMHUB_SECRET_KEY": str(settings.secret_key),
           "CRMHUB_DATA_DIR": str(tmp_path / "worker-data"),
           "PYTHONPATH": checkout_pythonpath()}
    pm = make_plugin_manager()
    load_plugins(pm, None, entry_points=False)
    hub = Hub(settings, pm=pm)
    hub.migrate()  # as the worker will: tables made by create_all would make its migration fail
    set_hub(hub)
    yield from ((h, env) for h in running(hub))


def _scrape(url: str, worker: subprocess.Popen[bytes], log: Path, **kwargs: object) -> httpx.Response:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert worker.poll() is None, "the worker exited:\n" + log.read_text(errors="replace")[-3000:]
        try:
            return httpx.get(url, timeout=5, **kwargs)  # type: ignore[arg-type]
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("the worker's metrics never came up:\n" + log.read_text(errors="replace")[-3000:])


def _stored(text: str) -> float:
    return sum(sample.value for family in text_string_to_metric_families(text)
               if family.name == "crmhub_events_stored" for sample in family.samples
               if sample.name == "crmhub_events_stored_total" and sample.labels == {"source": "web", "type": "track"})


def test_a_workers_pool_processes_are_counted_together_at_its_metrics_port(
    celery_hub: tuple[Hub, dict[str, str]], tmp_path: Path,
) -> None:
    """With Celery, events were stored and delivered in the pool processes, whose counters nobody could scrape:
    the API's /metrics showed crmhub_events_stored_total at zero whatever the database held."""
    hub, env = celery_hub
    port = _free_port()
    log = tmp_path / "worker.log"
    with open(log, "ab") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "worker", "--queues", "ingest", "--concurrency", "2",
             "--metrics-port", str(port)], env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        refused = _scrape(url, worker, log)  # the admin token, as the API's /metrics, refused in the API's shape
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
        client = client_for(hub)
        source = client.post("/v1/sources", json={"connector": "web", "name": "site", "config": {"write_key": KEY}},
                             headers=ADMIN).json()["id"]
        for i in range(12):
            body = jbody({"type": "track", "event": "Viewed", "userId": f"u-{i}", "messageId": f"m-{i}"})
            assert client.post(f"/hooks/{source}/v1/track", content=body, headers=basic(KEY)).status_code == 200
        deadline = time.monotonic() + 90
        with hub.sessions() as session:
            while session.scalar(select(func.count()).where(RawEvent.status == "pending")) and (
                    time.monotonic() < deadline):
                time.sleep(0.2)
            stored = session.scalar(select(func.count()).select_from(EventRow).where(EventRow.type == "track"))
        assert stored == 12
        scraped = _scrape(url, worker, log, headers=ADMIN)
        assert scraped.status_code == 200 and _stored(scraped.text) == stored
        metrics_dirs = [Path(arg) for arg in _cmdline(worker.pid) if "crmhub-worker-metrics-" in arg]
        assert len(metrics_dirs) == 1 and metrics_dirs[0].is_dir()
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)  # a warm shutdown: the main process's exit hooks run
        worker.wait(timeout=60)
    assert not metrics_dirs[0].exists()  # the worker's own directory goes with it


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
