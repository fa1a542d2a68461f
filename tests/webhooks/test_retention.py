"""Retention of the delivery log: old attempts go, health answers the same, messages still say why they failed."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from hub.models import EventRow
from hub.retention import Pruner
from hub.runtime import Hub
from hub.schemas import utcnow
from tests.helpers import ADMIN, client_for, sqlite_plans_of_selects
from webhooks.cli import _last_attempt
from webhooks.health import endpoint_health
from webhooks.models import MSG_DELIVERED, MSG_FAILED, AttemptRow, EndpointRow, MessageRow
from webhooks.retention import prune_attempts

OK, FAIL = True, False


def _endpoint(hub: Hub) -> uuid.UUID:
    endpoint_id, now = uuid.uuid4(), utcnow()
    with hub.engine.begin() as conn:
        conn.execute(EndpointRow.__table__.insert(), [{
            "id": endpoint_id, "url": "https://crm.example.com/hook", "description": "", "event_types": ["*"],
            "enabled": True, "secret_sealed": "x", "created_at": now, "updated_at": now}])
    return endpoint_id


def _message(hub: Hub, endpoint_id: uuid.UUID, *, status: str = MSG_DELIVERED, code: int | None = 200,
             error: str | None = None, created: datetime | None = None) -> uuid.UUID:
    message_id, now = uuid.uuid4(), utcnow()
    with hub.engine.begin() as conn:
        conn.execute(MessageRow.__table__.insert(), [{
            "id": message_id, "endpoint_id": endpoint_id, "event_id": uuid.uuid4(), "event_type": "lead.submitted",
            "occurred_at": now, "status": status, "attempt_count": 1, "next_attempt_at": now,
            "last_status_code": code, "last_error": error, "created_at": created or now, "finished_at": now}])
    return message_id


def _attempts(hub: Hub, endpoint_id: uuid.UUID, message_id: uuid.UUID, *tries: tuple[timedelta, bool]) -> None:
    now = utcnow()
    with hub.engine.begin() as conn:
        conn.execute(AttemptRow.__table__.insert(), [
            {"message_id": message_id, "endpoint_id": endpoint_id, "at": now - age, "success": ok,
             "status_code": 200 if ok else 503, "latency_ms": 12.0, "error": None if ok else "HTTP 503",
             "response_excerpt": "x" * 100} for age, ok in tries])


def _kept(hub: Hub, endpoint_id: uuid.UUID) -> list[tuple[int, bool]]:
    """(whole days old, success) of the endpoint's attempts, oldest first."""
    now = utcnow()
    with hub.sessions() as session:
        rows = session.execute(select(AttemptRow.at, AttemptRow.success).where(AttemptRow.endpoint_id == endpoint_id)
                               .order_by(AttemptRow.at)).all()
    return [((now - at).days, ok) for at, ok in rows]


def _health(hub: Hub, endpoint_id: uuid.UUID, now: datetime) -> dict[str, Any]:
    with hub.sessions() as session:
        endpoint = session.get(EndpointRow, endpoint_id)
        assert endpoint is not None
        return endpoint_health(session, endpoint, now)


def d(days: float, minutes: int = 0) -> timedelta:
    return timedelta(days=days, minutes=minutes)


def test_old_attempts_go_in_batches_and_every_endpoint_health_reads_the_same(any_hub: Hub) -> None:
    """The four shapes of an endpoint's log around the 30-day window, pruned with batches of 4 rows."""
    healthy, streak, never, idle = (_endpoint(any_hub) for _ in range(4))
    for endpoint_id in (healthy, streak, never, idle):
        message_id = _message(any_hub, endpoint_id)
        if endpoint_id == healthy:  # 12 old attempts, then a recent day and a mixed last hour
            _attempts(any_hub, endpoint_id, message_id, *((d(60, i), i % 3 != 0) for i in range(12)),
                      (d(2), OK), (d(0, 50), FAIL), (d(0, 40), OK), (d(0, 20), FAIL), (d(0, 10), OK))
        elif endpoint_id == streak:  # last success 50 days ago; failing since, across the window's edge
            _attempts(any_hub, endpoint_id, message_id, (d(70), FAIL), (d(65), OK), (d(55), FAIL), (d(50), OK),
                      (d(45), FAIL), (d(35), FAIL), (d(20), FAIL), (d(0, 30), FAIL))
        elif endpoint_id == never:  # never delivered: the whole log is its streak
            _attempts(any_hub, endpoint_id, message_id, (d(40), FAIL), (d(39), FAIL), (d(38), FAIL))
        else:  # quiet for 40 days; its last failure came before its last success
            _attempts(any_hub, endpoint_id, message_id, (d(60), OK), (d(50), FAIL), (d(45), OK), (d(40), OK))
    with any_hub.sessions() as session:
        messages = session.scalar(select(func.count()).select_from(MessageRow))
    now = utcnow()
    before = {e: _health(any_hub, e, now) for e in (healthy, streak, never, idle)}

    pruner = Pruner(any_hub, batch=4, pause_s=0)
    deleted = prune_attempts(any_hub, pruner, now)

    assert _kept(any_hub, healthy) == [(2, OK), (0, FAIL), (0, OK), (0, FAIL), (0, OK)]
    assert _kept(any_hub, streak) == [(50, OK), (45, FAIL), (35, FAIL), (20, FAIL), (0, FAIL)]
    assert _kept(any_hub, never) == [(40, FAIL), (39, FAIL), (38, FAIL)]
    assert _kept(any_hub, idle) == [(50, FAIL), (40, OK)]
    assert deleted == 12 + 3 + 0 + 2
    assert pruner.batches == 3 + 1 + 1 and not pruner.exhausted  # healthy: 4 + 4 + 4 (one more read finds none)
    assert {e: _health(any_hub, e, now) for e in before} == before
    assert before[streak]["consecutive_failures"] == 4 and before[streak]["last_success_at"] is not None
    with any_hub.sessions() as session:
        assert session.scalar(select(func.count()).select_from(MessageRow)) == messages


def test_0_days_keeps_every_attempt(any_hub: Hub) -> None:
    endpoint_id = _endpoint(any_hub)
    _attempts(any_hub, endpoint_id, _message(any_hub, endpoint_id), (d(400), FAIL), (d(300), OK), (d(200), OK))
    any_hub.settings.attempts_retention_days = 0
    assert prune_attempts(any_hub, Pruner(any_hub, pause_s=0)) == 0
    assert _kept(any_hub, endpoint_id) == [(400, FAIL), (300, OK), (200, OK)]


def test_a_failed_message_whose_attempts_are_gone_still_says_why(any_hub: Hub) -> None:
    """The listing, the CLI and /ops fall back on the message's own last status code and error."""
    endpoint_id = _endpoint(any_hub)
    old = _message(any_hub, endpoint_id, status=MSG_FAILED, code=503, error="HTTP 503: upstream down",
                   created=utcnow() - d(45))
    _attempts(any_hub, endpoint_id, old, (d(45, 3), FAIL), (d(45, 2), FAIL), (d(45, 1), FAIL))
    recent = _message(any_hub, endpoint_id)
    _attempts(any_hub, endpoint_id, recent, (d(0, 5), FAIL), (d(0, 4), OK))

    assert prune_attempts(any_hub, Pruner(any_hub, pause_s=0)) == 3
    client = client_for(any_hub)
    items = client.get(f"/v1/endpoints/{endpoint_id}/messages", params={"status": "failed"}, headers=ADMIN).json()
    (item,) = items["items"]
    assert item["id"] == str(old) and item["attempts"] == []
    assert (item["last_status_code"], item["last_error"]) == (503, "HTTP 503: upstream down")
    assert _last_attempt(item) == "503: HTTP 503: upstream down"
    page = client.get("/ops", headers=ADMIN).text
    assert "503 HTTP 503: upstream down" in page


def test_nothing_but_attempts_is_deleted(any_hub: Hub) -> None:
    endpoint_id = _endpoint(any_hub)
    message_id = _message(any_hub, endpoint_id, created=utcnow() - d(400))
    _attempts(any_hub, endpoint_id, message_id, (d(400), OK), (d(300), OK))
    with any_hub.engine.begin() as conn:
        conn.execute(EventRow.__table__.insert(), [{"id": uuid.uuid4(), "type": "lead.submitted", "source": "test",
                                                    "source_event_id": "old", "occurred_at": utcnow() - d(400),
                                                    "received_at": utcnow() - d(400), "data": {}}])
    assert prune_attempts(any_hub, Pruner(any_hub, pause_s=0)) == 1
    with any_hub.sessions() as session:
        assert session.scalar(select(func.count()).select_from(MessageRow)) == 1
        assert session.scalar(select(func.count()).select_from(EventRow)) == 1
        assert session.scalar(select(func.count()).select_from(EndpointRow)) == 1


def test_the_prune_and_endpoint_health_read_attempts_by_index(hub: Hub) -> None:
    """SQLite: no statement of a prune or a health read SCANs attempts: each one SEARCHes a range of an index."""
    endpoint_id = _endpoint(hub)
    message_id = _message(hub, endpoint_id)
    _attempts(hub, endpoint_id, message_id, *((d(40, i), i % 2 == 0) for i in range(6)), (d(0, 5), FAIL))

    def prune_then_read_health() -> None:
        prune_attempts(hub, Pruner(hub, batch=2, pause_s=0))
        _health(hub, endpoint_id, utcnow())

    plans = sqlite_plans_of_selects(hub, "attempts", prune_then_read_health)
    assert len(plans) >= 6
    for plan in plans:
        assert "SCAN attempts" not in plan and "SEARCH attempts USING" in plan, plan
