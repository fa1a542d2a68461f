"""docker-compose.yml's topology started natively: api (`crmhub serve`) + `crmhub worker` + `crmhub beat`
on the local PostgreSQL and Redis, events sent end to end, and a worker SIGKILLed mid-processing.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import create_engine, func, select, text

from hub.models import EventRow, RawEvent
from hub.settings import unknown_env_names
from tests.conftest import REDIS_URL
from tests.helpers import basic, jbody

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.celery, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "topology-admin-token"
KEY = "topology-write-key"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Topology:
    def __init__(self, tmp_path: Path, pg_url: str) -> None:
        self.port = _port()
        self.db_url = pg_url
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CRMHUB_")},
            "CRMHUB_DATABASE_URL": pg_url,
            "CRMHUB_BROKER_URL": REDIS_URL,
            "CRMHUB_BROKER_KEY_PREFIX": f"crmhub-test-{uuid.uuid4().hex[:8]}:",
            "CRMHUB_BROKER_VISIBILITY_TIMEOUT_S": "4",
            "CRMHUB_REQUEUE_AFTER_S": "3",
            "CRMHUB_REQUEUE_EVERY_S": "2",
            "CRMHUB_ADMIN_TOKEN": TOKEN,
            "CRMHUB_SECRET_KEY": "topology-secret",
            "CRMHUB_DATA_DIR": str(tmp_path / "data"),
            "CRMHUB_PUBLIC_URL": f"http://127.0.0.1:{self.port}",
        }
        self.tmp = tmp_path
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([sys.executable, "-m", "hub.cli", *args], env=self.env, cwd=self.tmp,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.kill(name, signal.SIGTERM)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.tmp.glob("*.log"))


@pytest.fixture
def topology(tmp_path: Path, pg_url: str) -> Iterator[Topology]:
    topo = Topology(tmp_path, pg_url)
    yield topo
    topo.stop_all()


def _wait_http(url: str, topology: Topology, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if topology.procs["api"].poll() is not None:
            raise AssertionError("crmhub serve exited:\n" + topology.logs())
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not come up\n" + topology.logs())


def _counts(db_url: str) -> tuple[int, int, int]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            raws = conn.scalar(select(func.count()).select_from(RawEvent)) or 0
            handled = conn.scalar(select(func.count()).select_from(RawEvent).where(RawEvent.status == "handled")) or 0
            events = conn.scalar(select(func.count()).select_from(EventRow)) or 0
            dupes = conn.scalar(text(
                "SELECT count(*) FROM (SELECT source_event_id FROM events GROUP BY source_id, source_event_id "
                "HAVING count(*) > 1) d"))
            assert dupes == 0
            return raws, handled, events
    finally:
        engine.dispose()


def _send(base: str, source_id: str, n: int, prefix: str) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
        for i in range(n):
            msg = {"type": "track", "event": "Viewed", "userId": f"u-{i % 37}", "messageId": f"{prefix}-{i}"}
            resp = client.post(f"/hooks/{source_id}/v1/track", content=jbody(msg), headers=basic(KEY))
            assert resp.status_code == 200, resp.text


def _queues(service: dict[str, Any]) -> set[str]:
    command = list(map(str, service["command"]))
    return set(command[command.index("--queues") + 1].split(","))


def _compose_services() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"])


def _as_compose_runs(service: str, **native: object) -> list[str]:
    """The `crmhub` arguments of a compose service, so the native topology runs what compose runs.

    Only what cannot be the same on one shared machine is replaced: `--host` (loopback only), `--port` (a free
    one) and `--concurrency` (2 shared cores).
    """
    command = [str(arg) for arg in _compose_services()[service]["command"]]
    assert command[0] == "crmhub", command
    args = command[1:]
    for option, value in native.items():
        flag = "--" + option
        assert flag in args, f"{service} has no {flag}: {args}"
        args[args.index(flag) + 1] = str(value)
    return args


# Contract §1: every setting an operator may need to give the containers (the rest pass through when set).
CONTRACT_SETTINGS = {
    "CRMHUB_DATABASE_URL", "CRMHUB_BROKER_URL", "CRMHUB_ADMIN_TOKEN", "CRMHUB_SECRET_KEY", "CRMHUB_PUBLIC_URL",
    "CRMHUB_MAX_BODY_BYTES", "CRMHUB_RETRY_SCHEDULE", "CRMHUB_ALLOW_PRIVATE_ENDPOINTS",
    "CRMHUB_TENCENTCLOUD_SECRET_ID", "CRMHUB_TENCENTCLOUD_SECRET_KEY", "CRMHUB_ASR_REGION", "CRMHUB_ASR_ENDPOINT",
    "CRMHUB_ASR_PROTOCOL", "CRMHUB_SILENT_DAYS", "CRMHUB_METRICS_PUBLIC",
}


def test_compose_passes_every_contract_setting_under_its_real_name(tmp_path: Path) -> None:
    """A misspelt variable in the compose file is ignored by the hub; a missing one cannot be set without editing
    the file (a CRM core on the compose network needs CRMHUB_ALLOW_PRIVATE_ENDPOINTS)."""
    services = _compose_services()
    for name in ("api", "worker", "worker-deliver", "beat"):
        env = services[name]["environment"]
        assert unknown_env_names(env) == [], name
        assert CONTRACT_SETTINGS <= set(env), f"{name} lacks {sorted(CONTRACT_SETTINGS - set(env))}"
    # and the native topology sets what compose sets to a value (the rest stay at the hub's defaults there too)
    native = Topology(tmp_path, "postgresql+psycopg://unused")
    env = services["api"]["environment"]
    given = {k for k, v in env.items() if v and not str(v).endswith(":-}")}  # `${X:-}` is empty, the default
    assert given <= set(native.env), sorted(given - set(native.env))


def test_compose_file_matches_the_native_topology() -> None:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) >= {"postgres", "redis", "api", "worker", "worker-deliver", "beat"}
    # every queue has a worker, and deliveries (which wait on receivers) have their own (helper-25)
    assert _queues(services["worker"]) == {"ingest", "enrich"} and _queues(services["worker-deliver"]) == {"deliver"}
    for name in ("worker", "worker-deliver"):
        assert services[name]["stop_grace_period"] == "30s"
    for name, command in (("api", "serve"), ("worker", "worker"), ("worker-deliver", "worker"), ("beat", "beat")):
        assert command in " ".join(map(str, services[name]["command"]))
        env = services[name]["environment"]
        assert env["CRMHUB_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["CRMHUB_BROKER_URL"].startswith("redis://")
        assert services[name]["restart"] == "unless-stopped"  # a crash at start is retried, not left dead
    assert "/healthz" in " ".join(services["api"]["healthcheck"]["test"])
    for name in ("worker", "worker-deliver", "beat"):
        assert services[name]["depends_on"] == {"api": {"condition": "service_healthy"}}


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = (line.strip() for line in text.splitlines())
    return [(word.upper(), rest.strip()) for word, _, rest in
            (line.partition(" ") for line in lines if line and not line.startswith("#"))]


def _users_created(steps: list[tuple[str, str]]) -> dict[str, str]:
    """{name: uid} of every `useradd --uid N … NAME` in a RUN."""
    out = {}
    for op, args in steps:
        for command in (shlex.split(part) for part in args.split("&&") if op == "RUN"):
            if command and command[0] == "useradd" and "--uid" in command:
                out[command[-1]] = command[command.index("--uid") + 1]
    return out


def test_image_runs_unprivileged_and_owns_what_it_writes() -> None:
    """The image ran as root (review finding): a hole in the hub or a dependency was root in the container.

    The unprivileged user must still write its data dir (admin token, secret key, beat schedule) and the
    working directory (the default `sqlite:///./crmhub.db` and its migration lock file), and own the data dir
    before VOLUME: a fresh volume copies that owner, a change after VOLUME is discarded.
    """
    steps = _dockerfile()
    users = [args.split(":")[0] for op, args in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0"), f"the image runs as root: USER {users}"
    created = _users_created(steps)
    names = {name for name, uid in created.items() if users[-1] in (name, uid)}
    assert names, f"USER {users[-1]} is no user the image creates ({created})"
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(args for op, args in steps if op == "ENV")))
    data_dir = env["CRMHUB_DATA_DIR"]
    owners = "|".join(re.escape(x) for x in names | {created[n] for n in names})
    chowned = [i for i, (op, args) in enumerate(steps)
               if op == "RUN" and re.search(rf"chown\s+(?:{owners})(?::\S+)?\s+{re.escape(data_dir)}(?:\s|$)", args)]
    volume = [i for i, (op, args) in enumerate(steps) if op == "VOLUME" and data_dir in args.split()]
    assert chowned and volume and chowned[0] < volume[0], f"{data_dir} is not given to {users[-1]} before VOLUME"
    assert [args for op, args in steps if op == "WORKDIR"][-1] == data_dir, "./crmhub.db would be read-only"
    for name, service in _compose_services().items():  # compose runs the image as it is
        if "build" in service:
            assert "user" not in service, name


def test_worker_killed_mid_processing_loses_nothing_and_duplicates_nothing(topology: Topology) -> None:
    base = f"http://127.0.0.1:{topology.port}"
    topology.start("api", *_as_compose_runs("api", host="127.0.0.1", port=topology.port))
    _wait_http(f"{base}/healthz", topology)
    headers = {"authorization": f"Bearer {TOKEN}"}
    resp = httpx.post(f"{base}/v1/sources", headers=headers, timeout=10,
                      json={"connector": "web", "name": "site", "config": {"write_key": KEY}})
    assert resp.status_code == 201, resp.text
    source_id = resp.json()["id"]
    assert httpx.get(f"{base}/readyz", timeout=10).json()["checks"]["broker"] == "ok"

    total = 400
    _send(base, source_id, total, "k")  # queued in Redis; no worker yet
    topology.start("worker-deliver", *_as_compose_runs("worker-deliver", concurrency=1))  # as compose runs them
    topology.start("worker", *_as_compose_runs("worker", concurrency=2))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        _, handled, _ = _counts(topology.db_url)
        if handled >= 20:
            break
        time.sleep(0.02)
    topology.kill("worker")  # SIGKILL the whole worker process group mid-stream
    _, handled_at_kill, _ = _counts(topology.db_url)
    assert handled_at_kill < total, "the worker finished before it could be killed; raise `total`"

    topology.start("worker2", *_as_compose_runs("worker", concurrency=2))
    topology.start("beat", *_as_compose_runs("beat"))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        raws, handled, events = _counts(topology.db_url)
        if handled == total:
            break
        time.sleep(0.5)
    raws, handled, events = _counts(topology.db_url)
    assert (raws, handled, events) == (total, total, total), topology.logs()


def test_a_hanging_receiver_does_not_hold_back_inbound_processing(topology: Topology) -> None:
    """compose runs deliveries on their own worker (helper-25: one worker for every queue let a receiver that
    hangs keep inbound events unprocessed for a minute). Every event is processed before the first delivery
    attempt could even time out: the attempts table is still empty when the last raw request is handled."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    release = threading.Event()

    class Hanging(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            release.wait(60)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Hanging)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    topology.env["CRMHUB_ALLOW_PRIVATE_ENDPOINTS"] = "true"
    base = f"http://127.0.0.1:{topology.port}"
    try:
        topology.start("api", *_as_compose_runs("api", host="127.0.0.1", port=topology.port))
        _wait_http(f"{base}/healthz", topology)
        headers = {"authorization": f"Bearer {TOKEN}"}
        source = httpx.post(f"{base}/v1/sources", headers=headers, timeout=10,
                            json={"connector": "web", "name": "site", "config": {"write_key": KEY}}).json()["id"]
        hook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
        assert httpx.post(f"{base}/v1/endpoints", headers=headers, timeout=10, json={"url": hook}).status_code == 201
        topology.start("worker-deliver", *_as_compose_runs("worker-deliver", concurrency=1))
        topology.start("worker", *_as_compose_runs("worker", concurrency=2))
        total = 12
        _send(base, source, total, "h")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and _counts(topology.db_url)[1] < total:
            time.sleep(0.1)
        engine = create_engine(topology.db_url)
        try:
            with engine.connect() as conn:
                attempts = conn.scalar(text("SELECT count(*) FROM attempts"))
        finally:
            engine.dispose()
        assert _counts(topology.db_url)[1] == total, topology.logs()
        assert attempts == 0  # no delivery has finished (the receiver still hangs), yet everything is processed
    finally:
        release.set()
        receiver.shutdown()
        receiver.server_close()
