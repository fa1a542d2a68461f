"""Endpoint health, source health, /metrics and /ops (in-process HTTP; the browser test is separate)."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from hub.models import InboundRejection, RawEvent
from hub.runtime import Hub
from hub.schemas import utcnow
from tests.helpers import ADMIN, add_source, basic, client_for, jbody, sqlite_plans_of_selects, wait_processed
from tests.webhooks.conftest import Receiver, add_endpoint, draft, make_due, settle, store
from webhooks import sender
from webhooks.health import endpoint_status, source_status
from webhooks.models import AttemptRow, MessageRow

KEY = "write-key-123456"


def test_status_rule() -> None:
    assert endpoint_status(False, 0, 0, 0) == "disabled"
    assert endpoint_status(True, 5, 10, 5) == "failing"
    assert endpoint_status(True, 2, 2, 0) == "failing"
    assert endpoint_status(True, 1, 10, 9) == "degraded"
    assert endpoint_status(True, 0, 100, 90) == "degraded"
    assert endpoint_status(True, 0, 100, 95) == "healthy"
    assert endpoint_status(True, 0, 0, 0) == "healthy"
    assert endpoint_status(True, 0, 10, 10) == "healthy"


def test_one_success_among_many_attempts_is_degraded_not_failing(shub: Hub) -> None:
    """1 success in 30,000 attempts: `success_rate_1h` rounds to 0.0, yet the endpoint did deliver."""
    eid = uuid.UUID(add_endpoint(shub, "http://127.0.0.1:9/hook")["id"])
    store(shub, draft("e-1"))
    settle(shub)  # its one real attempt fails (nothing listens on port 9); the success below comes last
    at = utcnow() - timedelta(minutes=5)
    with shub.transaction() as s:
        message_id = s.scalars(select(MessageRow.id)).one()
        s.execute(AttemptRow.__table__.insert(), [
            {"message_id": message_id, "endpoint_id": eid, "at": at + timedelta(microseconds=i), "success": False,
             "status_code": 500} for i in range(29_998)] + [
            {"message_id": message_id, "endpoint_id": eid, "at": utcnow(), "success": True, "status_code": 200}])
    health = client_for(shub).get(f"/v1/endpoints/{eid}/health", headers=ADMIN).json()
    assert health["success_rate_1h"] == 0.0 and health["consecutive_failures"] == 0
    assert health["status"] == "degraded"


def test_latency_percentiles_are_the_nearest_rank_of_the_hours_attempts(shub: Hub) -> None:
    """p95 of 31 attempts taking 1..31 ms is 30 ms (30 of 31 took at most that); rounding the index half to even
    reported 29 ms, which only 29 of 31 (94 %) met. /ops shows the same numbers as the API."""
    eid = uuid.UUID(add_endpoint(shub, "http://127.0.0.1:9/hook")["id"])
    store(shub, draft("e-1"))
    settle(shub)
    now = utcnow()
    with shub.transaction() as s:
        s.execute(delete(AttemptRow))  # the real attempt's latency is not known in advance
        message_id = s.scalars(select(MessageRow.id)).one()
        s.execute(AttemptRow.__table__.insert(), [
            {"message_id": message_id, "endpoint_id": eid, "at": now - timedelta(seconds=ms), "success": True,
             "status_code": 200, "latency_ms": float(ms)} for ms in range(1, 32)])
    client = client_for(shub)
    health = client.get(f"/v1/endpoints/{eid}/health", headers=ADMIN).json()
    assert (health["attempts_1h"], health["latency_p50_ms"], health["latency_p95_ms"]) == (31, 16.0, 30.0)
    assert "<td>16.0 / 30.0</td>" in client.get("/ops", headers=ADMIN).text


@pytest.mark.parametrize(("delivered", "shown"), [(199, "99.5%"), (2499, "99.9%")])
def test_ops_and_the_cli_show_the_same_success_rate_and_never_100_with_a_failure(
    shub: Hub, monkeypatch: pytest.MonkeyPatch, delivered: int, shown: str
) -> None:
    """0.995 was "100%" on /ops beside "99.5%" in the CLI; 0.9996 was "100%" on both."""
    from click.testing import CliRunner

    from hub.cli import cli
    from webhooks import register_commands

    eid = uuid.UUID(add_endpoint(shub, "http://127.0.0.1:9/hook")["id"])
    store(shub, draft("e-1"))
    settle(shub)  # its one real attempt fails (nothing listens on port 9): the failure before the successes
    with shub.transaction() as s:
        message_id = s.scalars(select(MessageRow.id)).one()
        s.execute(AttemptRow.__table__.insert(), [
            {"message_id": message_id, "endpoint_id": eid, "at": utcnow(), "success": True, "status_code": 200}
            for _ in range(delivered)])
    client = client_for(shub)
    health = client.get(f"/v1/endpoints/{eid}/health", headers=ADMIN).json()
    assert health["attempts_1h"] == delivered + 1 and health["success_rate_1h"] < 1
    assert f"<td>{shown}</td>" in client.get("/ops", headers=ADMIN).text
    register_commands(cli=cli)
    monkeypatch.setattr("hub.cli.hub_for_cli", lambda migrate=True: shub)
    table = CliRunner().invoke(cli, ["endpoints", "health", str(eid)])
    assert f"{shown} of {delivered + 1}" in table.stdout, table.output


def test_endpoint_health_tracks_failures_and_recovery(shub: Hub, receiver: Receiver) -> None:
    failing = {"on": True}
    receiver.script = lambda _r: (500, {}, b"") if failing["on"] else (200, {}, b"")
    eid = add_endpoint(shub, receiver.url)["id"]
    client = client_for(shub)
    store(shub, draft("e-1"), draft("e-2", phone="+8613900139000"))
    settle(shub)
    health = client.get(f"/v1/endpoints/{eid}/health", headers=ADMIN).json()
    assert health["status"] == "failing" and health["consecutive_failures"] == 2
    assert health["success_rate_1h"] == 0 and health["pending"] == 2 and health["failed"] == 0
    assert health["last_success_at"] is None and health["last_failure_at"] is not None
    failing["on"] = False
    make_due(shub)
    health = client.get(f"/v1/endpoints/{eid}/health", headers=ADMIN).json()
    assert health["consecutive_failures"] == 0 and health["pending"] == 0
    assert health["success_rate_1h"] == 0.5 and health["status"] == "degraded"
    assert health["latency_p50_ms"] > 0 and health["latency_p95_ms"] >= health["latency_p50_ms"]
    msgs = client.get(f"/v1/endpoints/{eid}/messages", headers=ADMIN).json()["items"]
    assert len(msgs) == 2 and all(len(m["attempts"]) == 2 for m in msgs)
    assert {a["status_code"] for m in msgs for a in m["attempts"]} == {500, 200}
    times = [a["at"] for m in msgs for a in m["attempts"]] + [m["created_at"] for m in msgs]
    assert all(t.endswith("+00:00") for t in times), times  # one time format across the API


@pytest.mark.postgres
def test_times_read_back_from_a_postgresql_server_in_another_zone_are_utc(
    hub_factory: Callable[..., Hub], receiver: Receiver, pg_url: str
) -> None:
    """PostgreSQL hands timestamptz back in the session's zone, which is the server's `timezone` (initdb takes the
    machine's: Asia/Shanghai on a server in China). Every time the hub read from such a server came out +08:00
    while the ones it made came out +00:00, breaking the one time format across the API."""
    from sqlalchemy import create_engine, text

    from tests.conftest import PG_ADMIN_URL

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{pg_url.rsplit("/", 1)[1]}" SET timezone = \'Asia/Shanghai\''))
    finally:
        admin.dispose()
    hub = hub_factory(pg_url)
    source_id = add_source(client_for(hub), "web", "site", {"write_key": KEY})
    eid = add_endpoint(hub, receiver.url)["id"]
    store(hub, draft("e-1"))
    settle(hub)
    client = client_for(hub)
    [message] = client.get(f"/v1/endpoints/{eid}/messages", headers=ADMIN).json()["items"]
    health = client.get(f"/v1/endpoints/{eid}/health", headers=ADMIN).json()
    source = client.get(f"/v1/sources/{source_id}", headers=ADMIN).json()
    times = [message["created_at"], message["attempts"][0]["at"], health["last_success_at"], source["created_at"]]
    assert all(t.endswith("+00:00") for t in times), times


def test_a_refused_attempt_has_no_latency_and_leaves_the_percentiles_alone(
    hub_factory: Callable[..., Hub], receiver: Receiver
) -> None:
    """A refusal at send time never reached the network: its 0 ms pulled p50 to 0 for an endpoint that answers."""
    hub = hub_factory(retry_schedule="0")
    eid = add_endpoint(hub, receiver.url)["id"]
    store(hub, draft("e-1"))
    settle(hub)
    hub.settings.allow_private_endpoints = False  # the host now resolves to a private address: refused
    store(hub, draft("e-2", phone="+8613900139000"))
    settle(hub)
    msgs = client_for(hub).get(f"/v1/endpoints/{eid}/messages", headers=ADMIN).json()["items"]
    [refused], [answered] = msgs[0]["attempts"], msgs[1]["attempts"]
    assert refused["status_code"] is None and refused["latency_ms"] is None
    health = client_for(hub).get(f"/v1/endpoints/{eid}/health", headers=ADMIN).json()
    assert health["attempts_1h"] == 2 and health["success_rate_1h"] == 0.5
    assert health["latency_p50_ms"] == health["latency_p95_ms"] == round(answered["latency_ms"], 3) > 0


def test_source_health_counts(shub: Hub) -> None:
    client = client_for(shub)
    sid = add_source(client, "web", "site", {"write_key": KEY})
    body = jbody({"type": "track", "event": "Signed Up", "userId": "u-1", "messageId": "m-1",
                  "timestamp": "2026-01-25T14:22:00+08:00"})
    assert client.post(f"/hooks/{sid}/v1/track", content=body, headers=basic(KEY)).status_code == 200
    assert client.post(f"/hooks/{sid}/v1/track", content=body, headers=basic(KEY)).status_code == 200
    assert client.post(f"/hooks/{sid}/v1/track", content=body, headers=basic("wrong-key-000")).status_code == 401
    wait_processed(shub)
    deadline = time.monotonic() + 5  # the rejection log is written best-effort, off the request path
    while True:
        [item] = client.get("/v1/health/sources", headers=ADMIN).json()["items"]
        if item["rejected_auth_1h"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert item["source_id"] == sid and item["connector"] == "web"
    assert (item["received_1h"], item["accepted_1h"], item["duplicates_1h"], item["rejected_auth_1h"]) == (3, 1, 1, 1)
    assert item["quarantined_1h"] == 0 and item["processing_lag_s"] == 0 and item["last_received_at"]


def _source_item(client: Any, sid: str, until: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The source's health item once `until` holds (the rejection log is written off the request path)."""
    deadline = time.monotonic() + 5
    while True:
        item = next(i for i in client.get("/v1/health/sources", headers=ADMIN).json()["items"] if i["source_id"] == sid)
        if until(item) or time.monotonic() > deadline:
            return dict(item)
        time.sleep(0.05)


def test_last_received_at_counts_refused_requests(shub: Hub) -> None:
    client = client_for(shub)
    sid = add_source(client, "web", "site", {"write_key": KEY})
    before = utcnow()
    assert client.post(f"/hooks/{sid}/v1/track", content=b"{}", headers=basic("wrong-key-000")).status_code == 401
    item = _source_item(client, sid, lambda i: i["rejected_auth_1h"] == 1)
    assert (item["received_1h"], item["accepted_1h"], item["rejected_auth_1h"]) == (1, 0, 1)
    assert item["last_received_at"] is not None
    assert datetime.fromisoformat(item["last_received_at"]) >= before
    assert source_status(item | {"enabled": True, "processing_lag_s": 0}) == "failing"


def test_a_source_whose_redeliveries_pass_the_check_is_not_failing_for_one_refusal(shub: Hub) -> None:
    """Failing means every request of the hour was refused; a redelivery verified before it was found stored, so a
    platform whose retries of an earlier request get through, beside one bad signature, is degraded."""
    client = client_for(shub)
    sid = add_source(client, "web", "site", {"write_key": KEY})
    body = jbody({"type": "track", "event": "x", "userId": "u-1", "messageId": "m-1"})
    assert client.post(f"/hooks/{sid}/v1/track", content=body, headers=basic(KEY)).status_code == 200
    wait_processed(shub)
    with shub.transaction() as session:  # that request came in before the hour
        session.execute(update(RawEvent).values(received_at=utcnow() - timedelta(hours=2)))
    assert client.post(f"/hooks/{sid}/v1/track", content=body, headers=basic(KEY)).status_code == 200
    assert client.post(f"/hooks/{sid}/v1/track", content=body, headers=basic("wrong-key-000")).status_code == 401
    item = _source_item(client, sid, lambda i: i["rejected_auth_1h"] == 1 and i["duplicates_1h"] == 1)
    assert (item["received_1h"], item["accepted_1h"], item["duplicates_1h"], item["rejected_auth_1h"]) == (2, 0, 1, 1)
    assert item["status"] == "degraded"


def test_last_received_at_is_the_latest_request_of_any_outcome_and_age(shub: Hub) -> None:
    client = client_for(shub)
    sid = add_source(client, "web", "site", {"write_key": KEY})
    long_ago = utcnow() - timedelta(hours=3)
    with shub.transaction() as session:  # refused long before the health window
        session.add(InboundRejection(source_id=uuid.UUID(sid), status_code=400, code="invalid_json", at=long_ago))
    item = _source_item(client, sid, lambda i: True)
    assert item["received_1h"] == 0 and datetime.fromisoformat(item["last_received_at"]) == long_ago
    body = jbody({"type": "track", "event": "x", "userId": "u-1", "messageId": "m-1"})
    assert client.post(f"/hooks/{sid}/v1/track", content=body, headers=basic(KEY)).status_code == 200
    accepted_at = datetime.fromisoformat(_source_item(client, sid, lambda i: True)["last_received_at"])
    assert accepted_at > long_ago
    assert client.post(f"/hooks/{sid}/v1/track", content=body, headers=basic("wrong-key-000")).status_code == 401
    item = _source_item(client, sid, lambda i: i["rejected_auth_1h"] == 1)
    assert datetime.fromisoformat(item["last_received_at"]) > accepted_at


def test_metrics_need_the_token_unless_public(hub_factory, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    hub = hub_factory()
    add_endpoint(hub, receiver.url)
    store(hub, draft("e-1"))
    settle(hub)
    client = client_for(hub)
    assert client.get("/metrics").status_code == 401
    text = client.get("/metrics", headers=ADMIN).text
    assert re.search(r'crmhub_delivery_attempts_total\{outcome="delivered"\} [1-9]', text)
    assert "crmhub_delivery_seconds_bucket" in text
    assert 'crmhub_queue_depth{stage="deliver_pending"} 0.0' in text
    assert 'crmhub_queue_depth{stage="asr_failed"} 0.0' in text  # other packages' work (queue_depths hook)


def test_metrics_public(hub_factory) -> None:  # type: ignore[no-untyped-def]
    hub = hub_factory(metrics_public=True)
    assert client_for(hub).get("/metrics").status_code == 200


def test_ops_auth_and_replay_button(hub_factory, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    hub = hub_factory(retry_schedule="0")
    receiver.script = lambda _r: (500, {}, b"")
    eid = add_endpoint(hub, receiver.url)["id"]
    store(hub, draft("e-1"))
    settle(hub)
    client = client_for(hub)
    denied = client.get("/ops")
    assert denied.status_code == 401 and denied.headers["www-authenticate"].startswith("Basic")
    assert denied.json()["error"]["code"] == "unauthorized"  # contract §3: errors are JSON (it was plain text)
    wrong = client.get("/ops", headers=basic("ops", "wrong"))
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
    bare = client.post(f"/ops/endpoints/{eid}/replay", data={"token": "0" * 64})
    assert bare.status_code == 401 and bare.json()["error"]["code"] == "unauthorized"
    page = client.get("/ops", headers=basic("ops", "test-admin-token"))
    assert page.status_code == 200 and f'data-endpoint-id="{eid}" data-status="failing"' in page.text
    assert client.get("/ops", headers=ADMIN).status_code == 200
    token = re.search(r'name="token" value="([0-9a-f]+)"', page.text).group(1)  # type: ignore[union-attr]
    forged = client.post(f"/ops/endpoints/{eid}/replay", data={"token": "0" * 64},
                         headers=basic("x", "test-admin-token"))
    assert forged.status_code == 403 and forged.json()["error"]["code"] == "stale_form"
    receiver.script = lambda _r: (200, {}, b"")
    resp = client.post(f"/ops/endpoints/{eid}/replay", data={"token": token}, headers=basic("x", "test-admin-token"),
                       follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/ops?notice=replayed&n=1"
    page = client.get(resp.headers["location"], headers=ADMIN).text
    assert '<p class="notice" id="notice">Queued 1 failed message(s) for replay.</p>' in page
    settle(hub)
    assert len(receiver.ok()) == 1


def test_a_verification_handshake_counts_as_received(shub: Hub) -> None:
    """Douyin's verify_webhook is answered without storing anything; health still counts the request."""
    from prometheus_client import REGISTRY

    from connectors.douyin.connector import signature

    def handshakes_counted() -> float:
        return REGISTRY.get_sample_value("crmhub_ingest_requests_total",
                                         {"connector": "douyin", "outcome": "handshake"}) or 0.0

    before = handshakes_counted()
    client = client_for(shub)
    sid = add_source(client, "douyin", "dy", {"client_key": "ck", "client_secret": "cs-0123456789"})
    body = jbody({"event": "verify_webhook", "client_key": "ck", "content": {"challenge": 12345}})
    resp = client.post(f"/hooks/{sid}", content=body,
                       headers={"x-douyin-signature": signature(b"cs-0123456789", body),
                                "content-type": "application/json"})
    assert resp.json() == {"challenge": 12345}
    item = _source_item(client, sid, lambda i: i["received_1h"] > 0)
    assert (item["received_1h"], item["handshakes_1h"], item["accepted_1h"], item["rejected_other_1h"]) == (1, 1, 0, 0)
    assert item["last_received_at"] is not None
    assert handshakes_counted() == before + 1  # the request metric counts every request too


def _scripted_batch(monkeypatch: pytest.MonkeyPatch, finish: dict[str, tuple[int, float]]) -> None:
    """`send_batch` answers each message (by source event id) with a status, finished `offset` s into the batch."""

    def send(_url: str, _signer: object, items: list[sender.Outgoing], **_: object) -> list[sender.SendResult]:
        start = time.monotonic() - 1.0
        results = []
        for item in items:
            status, offset = finish[json.loads(item.body)["data"]["source_event_id"]]
            results.append(sender.SendResult(status, 5.0, error=None if status < 300 else f"HTTP {status}",
                                             done=start + offset))
        return results

    monkeypatch.setattr(sender, "send_batch", send)


@pytest.mark.parametrize(("finish", "consecutive"), [
    ({"e-0": (200, 0.1), "e-1": (500, 0.2), "e-2": (503, 0.3)}, 2),  # the failures finished after the success
    ({"e-0": (500, 0.1), "e-1": (503, 0.2), "e-2": (200, 0.3)}, 0),  # the success finished last
])
def test_consecutive_failures_follow_each_attempts_finish_time(
    shub: Hub, monkeypatch: pytest.MonkeyPatch, finish: dict[str, tuple[int, float]], consecutive: int
) -> None:
    """One batch's attempts finish at different times; stamped with one time, failures after a success were lost."""
    _scripted_batch(monkeypatch, finish)
    eid = add_endpoint(shub, "http://127.0.0.1:9/hook")["id"]
    store(shub, *(draft(sei, phone=f"+861380013800{i}") for i, sei in enumerate(finish)))  # one batch
    settle(shub)
    health = client_for(shub).get(f"/v1/endpoints/{eid}/health", headers=ADMIN).json()
    assert health["attempts_1h"] == 3 and health["consecutive_failures"] == consecutive
    with shub.sessions() as s:
        attempts = s.scalars(select(AttemptRow).order_by(AttemptRow.id)).all()
    assert [a.status_code for a in attempts] == [status for status, _ in finish.values()]  # in finish order
    assert [a.at for a in attempts] == sorted({a.at for a in attempts})  # each at its own time


def test_ops_shows_why_an_endpoint_fails_while_its_messages_still_retry(
    shub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A streak shows its reason at once, not only after the last retry (the default schedule waits hours)."""

    def send(_url: str, _signer: object, items: list[sender.Outgoing], **_: object) -> list[sender.SendResult]:
        return [sender.SendResult(None, 3.0, error="ConnectError: <b>refused</b>") for _ in items]

    monkeypatch.setattr(sender, "send_batch", send)
    eid = add_endpoint(shub, "http://127.0.0.1:9/hook")["id"]
    store(shub, draft("e-1"))
    settle(shub)
    client = client_for(shub)
    health = client.get(f"/v1/endpoints/{eid}/health", headers=ADMIN).json()
    assert health["consecutive_failures"] == 1 and health["pending"] == 1 and health["failed"] == 0
    [message] = client.get(f"/v1/endpoints/{eid}/messages", headers=ADMIN).json()["items"]
    page = client.get("/ops", headers=ADMIN).text
    assert re.search(rf'<li class="failure" data-status="pending">lead.submitted <code>{message["id"]}</code>\s*'
                     r"\(retrying, 1 attempt\):\s*no response ConnectError: &lt;b&gt;refused&lt;/b&gt;", page), page
    assert "<b>refused" not in page


def test_ops_shows_only_known_notices(shub: Hub) -> None:
    """A link to /ops must not put its own words on the operator's page (phishing), escaped or not."""
    client = client_for(shub)
    for query in ("notice=Session+expired:+log+in+at+evil.example", "notice=%3Cscript%3Ex%3C/script%3E",
                  "notice=replayed+1+failed+messages"):
        page = client.get(f"/ops?{query}", headers=ADMIN).text
        assert 'id="notice"' not in page and "evil.example" not in page and "script%3E" not in page
    for n, shown in (("3", "3"), ("x", "0"), ("<b>", "0"), ("9" * 5000, "0")):
        page = client.get("/ops", params={"notice": "replayed", "n": n}, headers=ADMIN).text
        assert f'<p class="notice" id="notice">Queued {shown} failed message(s) for replay.</p>' in page


@pytest.mark.parametrize("table", ["raw_events", "inbound_rejections", "quarantine"])
def test_source_health_reads_its_tables_by_index_not_by_scanning_them(hub: Hub, table: str) -> None:
    """Helper-36's F4: /ops and /v1/health/sources read every raw request ever stored on each load. The log of
    refusals and duplicates (grouped on `at`, which its index cannot range) and the quarantine (walked along its
    source index, reading each payload to reach created_at) were still read whole: 0.2 s at 300,000 logged
    duplicates and 50,000 quarantined rows, all days old, and growing with them."""
    from webhooks.health import source_health

    add_source(client_for(hub), "pos", "pos-plan", {"secret": "pos-secret-0123456789"})

    def read_health() -> None:
        with hub.sessions() as session:
            source_health(session)

    plans = sqlite_plans_of_selects(hub, table, read_health)
    assert plans
    for plan in plans:
        assert f"SCAN {table}" not in plan, plan  # a SCAN (even of an index) reads every row; SEARCH a range
