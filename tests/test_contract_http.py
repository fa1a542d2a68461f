"""Contract §1-§3 from outside: a real `crmhub serve` process driven with httpx, and the CLI run as a subprocess.

Most promises are pinned next to the code that keeps them, through TestClient or CliRunner. These are the ones
only a running process shows (settings read from the environment and `.env`, the admin token `serve` generates,
exit codes as a shell sees them) or that no other test pinned (the 401 over all of `/v1`, `GET /v1/connectors`,
the source's own fields and the 204 on delete, `/readyz` with its broker down).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "contract-admin-token"
PUBLIC_URL = "https://hub.example.test/crm"
MAX_BODY = 4096
POS_SECRET = "contract-pos-secret-0123"
UNKNOWN = "00000000-0000-0000-0000-000000000000"
# Contract §3's connector table: every key it names must be in the connector's config schema.
CONTRACT_CONFIG_KEYS = {
    "douyin": {"client_key", "client_secret"},
    "xiaohongshu": {"token", "label_map"},
    "callcenter": {"vendor", "username", "password"},
    "pos": {"secret"},
    "erp": {"secret", "base_url", "client_id", "client_secret", "token_url"},
    "credit_registry": {"provider", "token", "app_key", "secret_key", "base_url"},
    "wecom": {"corp_id", "token", "encoding_aes_key"},
    "web": {"write_key"},
}


def hub_env(workdir: Path, **settings: str) -> dict[str, str]:
    """The environment of a hub process: this checkout's code, its own SQLite file and data dir, no stray settings.

    PYTHONPATH names the checkout: an installed crmhub (an editable install of another tree) must not be what runs.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMHUB_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["CRMHUB_DATABASE_URL"] = f"sqlite:///{workdir / 'hub.db'}"
    env["CRMHUB_DATA_DIR"] = str(workdir / "data")
    env.update(settings)
    return env


class Served:
    """`crmhub serve` on a free loopback port, its output in a file; stopped by `stop()`."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"serve-{self.port}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "serve", "--port", str(self.port)],
                                         cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
        self._wait_up()

    def _wait_up(self) -> None:
        deadline = time.monotonic() + 60  # a safety net for a hung start, not a speed requirement
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"crmhub serve exited {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"crmhub serve did not come up:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server for the module; the token, body limit and public URL come from a `.env` file (contract §1)."""
    workdir = tmp_path_factory.mktemp("contract")
    (workdir / ".env").write_text(f"CRMHUB_ADMIN_TOKEN={TOKEN}\nCRMHUB_MAX_BODY_BYTES={MAX_BODY}\n"
                                  f"CRMHUB_PUBLIC_URL={PUBLIC_URL}\n", encoding="utf-8")
    server = Served(workdir, hub_env(workdir))
    yield server
    server.stop()


@pytest.fixture
def api(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.base, timeout=10, headers={"authorization": f"Bearer {TOKEN}"}) as client:
        yield client


def error_of(resp: httpx.Response, status: int) -> dict[str, Any]:
    """The contract's error body (§3): `{"error": {"code": <snake_case>, "message", "details"}}`, as JSON."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    body = resp.json()
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"]), body
    assert re.fullmatch(r"[a-z][a-z0-9_]*", body["error"]["code"]) and body["error"]["message"], body
    return dict(body["error"])


def add_source(api: httpx.Client, connector: str, config: dict[str, Any]) -> dict[str, Any]:
    resp = api.post("/v1/sources", json={"connector": connector, "name": f"{connector}-{uuid.uuid4().hex[:8]}",
                                         "config": config})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


# ---------------------------------------------------------------- §1 settings, §3 auth


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/connectors"), ("GET", "/v1/sources"), ("POST", "/v1/sources"), ("GET", f"/v1/sources/{UNKNOWN}"),
    ("GET", "/v1/customers?identity=phone:13800138000"), ("GET", "/v1/events"), ("GET", "/v1/endpoints"),
    ("GET", "/v1/health/sources"),
    ("GET", "/v1/no-such-thing"), ("GET", "/v1"), ("PUT", "/v1/sources"), ("DELETE", "/v1/connectors"),
    ("GET", "/v1/sources/"), ("POST", "/v1/endpoints/"), ("GET", "/v1/health/sources/"),
])
def test_every_v1_request_without_the_right_bearer_token_is_401(served: Served, method: str, path: str) -> None:
    """Contract §3: missing/wrong token → 401, for `/v1/*` (§1). An unknown path or method under /v1 answered
    404/405 before the token was looked at, telling a stranger which routes exist; a route's path with a trailing
    slash answered a 307 to the route."""
    wrong = [{}, {"authorization": "Bearer not-the-token"}, {"authorization": f"Basic {TOKEN}"},
             {"authorization": TOKEN}]
    for headers in wrong:
        resp = httpx.request(method, served.base + path, headers=headers, timeout=10)
        assert error_of(resp, 401)["code"] == "unauthorized", (headers, resp.text)


def test_with_the_token_an_unknown_path_is_404_and_a_wrong_method_405(api: httpx.Client) -> None:
    assert error_of(api.get("/v1/no-such-thing"), 404)["code"] == "not_found"
    wrong = api.put("/v1/sources")
    assert error_of(wrong, 405)["code"] == "method_not_allowed"
    # RFC 9110: Allow lists what the path takes; it said `POST` only, though GET /v1/sources is a route too.
    assert wrong.headers["allow"] == "GET, HEAD, POST"
    assert api.delete("/healthz").headers["allow"] == "GET, HEAD"
    redirect = api.get("/v1/sources/")  # with the token, a trailing slash is still redirected to the route
    assert redirect.status_code == 307 and redirect.headers["location"].endswith("/v1/sources")


def test_liveness_and_readiness_need_no_token(served: Served) -> None:
    assert httpx.get(f"{served.base}/healthz", timeout=10).status_code == 200
    ready = httpx.get(f"{served.base}/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok", ready.text


def test_head_is_answered_wherever_get_is_without_a_body(served: Served, api: httpx.Client) -> None:
    """RFC 9110 §9.3.2 (monitors probe with HEAD): it was a 405 on every route."""
    for url, headers in ((f"{served.base}/healthz", {}), (f"{served.base}/readyz", {}),
                         (f"{served.base}/v1/sources", {"authorization": f"Bearer {TOKEN}"})):
        head = httpx.head(url, headers=headers, timeout=10)
        get = httpx.get(url, headers=headers, timeout=10)
        assert head.status_code == get.status_code == 200, (url, head.status_code)
        assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"]
    assert httpx.head(f"{served.base}/v1/sources", timeout=10).status_code == 401  # the token still counts


def test_a_workers_metrics_port_refuses_in_the_apis_error_shape() -> None:
    """Its 401 said it was the API's JSON error (c8c68ce) but had no `details`, which every API error carries."""
    from hub.worker_metrics import _require_token

    def metrics(_: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"up 1\n"]

    guarded = _require_token(metrics, TOKEN)
    with httpx.Client(transport=httpx.WSGITransport(app=guarded), base_url="http://127.0.0.1") as client:
        assert error_of(client.get("/metrics"), 401) == {
            "code": "unauthorized", "details": None,
            "message": "missing or wrong admin token (Authorization: Bearer <CRMHUB_ADMIN_TOKEN>)"}
        assert client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"}).text == "up 1\n"


def test_serve_generates_the_admin_token_stores_it_and_prints_it_once(tmp_path: Path) -> None:
    """Contract §1: CRMHUB_ADMIN_TOKEN empty → `crmhub serve` generates one, stores it, and prints it once."""
    env = hub_env(tmp_path, CRMHUB_ADMIN_TOKEN="")
    first = Served(tmp_path, env)
    try:
        stored = (tmp_path / "data" / "admin.token").read_text().strip()
        assert stored and stored in first.output()
        opened = httpx.get(f"{first.base}/v1/sources", headers={"authorization": f"Bearer {stored}"}, timeout=10)
        assert opened.status_code == 200 and opened.json() == {"items": []}
    finally:
        first.stop()
    second = Served(tmp_path, env)
    try:
        assert stored not in second.output()  # printed once: the second start keeps it to itself
        again = httpx.get(f"{second.base}/v1/sources", headers={"authorization": f"Bearer {stored}"}, timeout=10)
        assert again.status_code == 200
    finally:
        second.stop()


# ---------------------------------------------------------------- §3 sources


def test_connectors_list_each_contract_connector_with_a_json_schema_of_its_config(api: httpx.Client) -> None:
    resp = api.get("/v1/connectors")
    assert resp.status_code == 200, resp.text
    items = {item["name"]: item for item in resp.json()["items"]}
    assert set(CONTRACT_CONFIG_KEYS) <= set(items)
    for name, keys in CONTRACT_CONFIG_KEYS.items():
        item = items[name]
        assert isinstance(item["title"], str) and item["title"], item
        schema = item["config_schema"]
        assert schema.get("type") == "object" and keys <= set(schema["properties"]), (name, schema)


def test_a_source_has_the_contract_fields_a_url_under_the_public_url_and_no_secret(api: httpx.Client,
                                                                                  served: Served) -> None:
    secret = "never-echoed-secret-31415"
    created = add_source(api, "douyin", {"client_key": "ck", "client_secret": secret})
    assert {"id", "connector", "name", "enabled", "webhook_url", "created_at"} <= set(created)
    source_id = str(uuid.UUID(created["id"]))
    assert created["connector"] == "douyin" and created["enabled"] is True
    assert created["webhook_url"] == f"{PUBLIC_URL}/hooks/{source_id}"  # CRMHUB_PUBLIC_URL from .env
    assert datetime.fromisoformat(created["created_at"]).tzinfo is not None  # RFC 3339 with an offset
    shown = api.get(f"/v1/sources/{source_id}")
    listed = api.get("/v1/sources")
    assert shown.json() == created and created in listed.json()["items"]
    for resp in (shown, listed):
        assert secret not in resp.text
    disabled = api.patch(f"/v1/sources/{source_id}", json={"enabled": False})
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    hook = f"{served.base}/hooks/{source_id}"  # the public URL is a proxy's; this is the server behind it
    assert error_of(httpx.post(hook, content=b"{}", timeout=10), 404)["code"] == "source_not_found"
    deleted = api.delete(f"/v1/sources/{source_id}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert error_of(api.get(f"/v1/sources/{source_id}"), 404)["code"] == "source_not_found"


def test_unknown_connector_invalid_config_and_a_taken_name_name_the_field(api: httpx.Client) -> None:
    unknown = error_of(api.post("/v1/sources", json={"connector": "nope", "name": "x", "config": {}}), 422)
    assert [d["field"] for d in unknown["details"]] == ["connector"]
    missing = error_of(api.post("/v1/sources", json={"connector": "douyin", "name": "x",
                                                     "config": {"client_key": "ck"}}), 422)
    assert [d["field"] for d in missing["details"]] == ["client_secret"]
    short_key = {"corp_id": "ww1", "token": "t0ken", "encoding_aes_key": "k" * 42}
    wecom = error_of(api.post("/v1/sources", json={"connector": "wecom", "name": "x", "config": short_key}), 422)
    [detail] = wecom["details"]  # the validator's words, without pydantic's "Value error, " before them
    assert detail["field"] == "encoding_aes_key" and detail["message"] == "EncodingAESKey must be 43 characters"
    taken = add_source(api, "web", {"write_key": "write-key-0123456789"})
    again = api.post("/v1/sources", json={"connector": "web", "name": taken["name"],
                                          "config": {"write_key": "write-key-0123456789"}})
    conflict = error_of(again, 409)
    assert conflict["code"] == "duplicate_name" and [d["field"] for d in conflict["details"]] == ["name"]


def test_a_body_of_the_wrong_shape_is_named_as_the_body(api: httpx.Client) -> None:
    """A JSON array where an object belongs has no field of its own: named `body`, as a body that is not JSON is."""
    for body in (b"[]", b"not json"):
        wrong = error_of(api.post("/v1/sources", content=body, headers={"content-type": "application/json"}), 422)
        assert [d["field"] for d in wrong["details"]] == ["body"], wrong
        assert wrong["message"] == "invalid request: body"


@pytest.mark.parametrize(("config", "named"), [
    ({"provider": "tianyancha"}, ["token"]),
    ({"provider": "qichacha", "app_key": "qcc-app-key"}, ["secret_key"]),
    ({"provider": "qichacha"}, ["app_key", "secret_key"]),
])
def test_a_missing_registry_credential_is_named_as_its_own_field(api: httpx.Client, config: dict[str, str],
                                                                 named: list[str]) -> None:
    """Contract §3: invalid config → 422 naming the field. `token` or `app_key`+`secret_key` were named `config`."""
    body = {"connector": "credit_registry", "name": f"registry-{uuid.uuid4().hex[:8]}", "config": config}
    refused = error_of(api.post("/v1/sources", json=body), 422)
    assert refused["code"] == "invalid_config" and [d["field"] for d in refused["details"]] == named, refused


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_json_sent_without_a_json_content_type_is_415_naming_the_header(api: httpx.Client,
                                                                      content_type: str | None) -> None:
    """`curl -d` sends a form type: the body, a fine JSON object, was refused as "not a valid dictionary"."""
    body = json.dumps({"connector": "web", "name": "web-ct", "config": {"write_key": "write-key-0123456789"}})
    headers = {"content-type": content_type} if content_type else {}
    refused = error_of(api.post("/v1/sources", content=body.encode(), headers=headers), 415)
    assert refused["code"] == "unsupported_media_type" and [d["field"] for d in refused["details"]] == ["content-type"]
    assert all(item["name"] != "web-ct" for item in api.get("/v1/sources").json()["items"])


@pytest.mark.parametrize("path", ["/v1/events?limit=0", "/v1/events?limit=501", "/v1/events?limit=abc",
                                  f"/v1/customers/{UNKNOWN}/events?limit=0",
                                  f"/v1/endpoints/{UNKNOWN}/messages?limit=501"])
def test_a_bad_limit_is_named_limit_as_the_other_query_parameters_are(api: httpx.Client, path: str) -> None:
    """A bad `cursor`, `after` or `types` is named bare; `limit` came as `query.limit`."""
    refused = error_of(api.get(path), 422)
    assert [d["field"] for d in refused["details"]] == ["limit"] and refused["message"] == "invalid request: limit"
    assert error_of(api.get("/v1/customers"), 422)["details"][0]["field"] == "identity"


# ---------------------------------------------------------------- §3 inbound webhooks, endpoints


def _signed(body: bytes) -> dict[str, str]:
    digest = hmac.new(POS_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"content-type": "application/json", "x-hub-signature-256": f"sha256={digest}"}


def test_the_body_limit_from_the_settings_is_413_and_a_redelivery_is_a_duplicate(api: httpx.Client,
                                                                                  served: Served) -> None:
    hook = f"{served.base}/hooks/{add_source(api, 'pos', {'secret': POS_SECRET})['id']}"
    event = {"event_id": f"e-{uuid.uuid4().hex}", "type": "purchase", "member_card_no": "M-1",
             "phone": "13800138000", "order_no": "o-1", "amount": 1, "currency": "CNY",
             "paid_at": "2026-01-25T14:22:00+08:00"}
    body = json.dumps(event).encode()
    first = httpx.post(hook, content=body, headers=_signed(body), timeout=10)
    assert first.status_code == 200 and first.json() == {"accepted": 1, "duplicates": 0}, first.text
    again = httpx.post(hook, content=body, headers=_signed(body), timeout=10)
    assert again.status_code == 200 and again.json() == {"accepted": 0, "duplicates": 1}, again.text
    big = json.dumps({**event, "event_id": "big", "padding": "x" * MAX_BODY}).encode()
    assert error_of(httpx.post(hook, content=big, headers=_signed(big), timeout=10), 413)["code"] == \
        "payload_too_large"
    assert error_of(httpx.post(hook, content=body, headers={"content-type": "application/json"}, timeout=10),
                    401)["message"]


def test_an_endpoint_on_loopback_is_refused_by_default(api: httpx.Client) -> None:
    """CRMHUB_ALLOW_PRIVATE_ENDPOINTS defaults to false (contract §1)."""
    refused = error_of(api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/hook", "event_types": ["*"]}), 422)
    assert [d["field"] for d in refused["details"]] == ["url"]
    assert api.get("/v1/endpoints").json()["items"] == []


# ---------------------------------------------------------------- §2 the command line


@pytest.mark.parametrize(("args", "code", "stderr"), [
    (["sources", "list", "--json"], 0, ""),
    (["import", "no-such-file.csv"], 1, "error: no such file"),  # a missing import file is an error, not usage
    (["worker"], 1, "error: CRMHUB_BROKER_URL is not set"),  # a missing setting is an error, as a bad one is
    (["import"], 2, "Error: Missing argument"),
])
def test_cli_exit_codes(tmp_path: Path, args: list[str], code: int, stderr: str) -> None:
    """Contract §2: 0 success, 1 error (message on stderr), 2 usage error, as a shell sees them. The rest of the
    commands' codes are pinned through CliRunner (tests/hub/test_cli.py); `beat` shares `worker`'s check there."""
    done = subprocess.run([sys.executable, "-m", "hub.cli", *args], cwd=tmp_path, env=hub_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == code, done.stdout + done.stderr
    assert stderr in done.stderr
    if code == 1:
        assert done.stdout == "" and "Traceback" not in done.stderr
    if code == 0:
        assert json.loads(done.stdout) == []


@pytest.mark.parametrize("args", [["sources", "list"], ["sources", "health", "--json"], ["endpoints", "list"],
                                  ["silent-scan"], ["quality", "report"]])
def test_an_unusable_database_url_is_an_error_message_from_every_command_group(tmp_path: Path,
                                                                               args: list[str]) -> None:
    """Contract §2: an error is exit 1 with its message on stderr. Run as `python -m hub.cli`, the commands that
    `hub.cli` is imported into (sources, plugins' groups) ended in a traceback instead."""
    env = hub_env(tmp_path, CRMHUB_DATABASE_URL="nonsense://nowhere")
    done = subprocess.run([sys.executable, "-m", "hub.cli", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1 and done.stdout == "", done.stdout + done.stderr
    assert done.stderr.startswith("error: database nonsense://nowhere is unreachable or unusable"), done.stderr
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------- §3 health: readiness names what is down


def test_readyz_is_503_naming_an_unreachable_broker(tmp_path: Path) -> None:
    """`/readyz`: database and broker reachable (contract §3); a broker on a closed loopback port is not."""
    from hub.inprocess import InProcessRunner
    from hub.runtime import set_hub
    from tests.conftest import make_hub, make_settings
    from tests.helpers import client_for

    closed = free_port()  # bound and released: nothing listens there
    hub = make_hub(make_settings(tmp_path, broker_url=f"redis://127.0.0.1:{closed}/0"), runner=InProcessRunner())
    try:
        resp = client_for(hub).get("/readyz")
    finally:
        hub.engine.dispose()
        set_hub(None)
    assert resp.status_code == 503, resp.text
    assert resp.json()["status"] == "not_ready" and resp.json()["checks"]["database"] == "ok"
    assert resp.json()["checks"]["broker"].startswith("error")
