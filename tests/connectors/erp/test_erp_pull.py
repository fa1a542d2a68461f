"""ERP incremental pull through hub.pull against a local fake ERP API (OAuth2 client credentials)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from hub.errors import RetryableError
from hub.models import EventRow
from hub.pull import CURSOR_KEY, pull_due, read_state, run_pull
from hub.runtime import Hub
from tests.connectors.erp.acceptance import SECRET
from tests.connectors.erp.fake_erp import CLIENT_ID, CLIENT_SECRET, FakeErp
from tests.helpers import add_source, client_for, wait_processed


def _order(n: int, updated_at: str, **extra: Any) -> dict[str, Any]:
    return {"order_no": f"SO-{n:03d}", "order_type": "formal", "customer_code": "C-SZ-0088",
            "customer_name": "腾讯科技（深圳）有限公司", "uscc": "9144030071526726XG", "amount": 1000 + n,
            "currency": "CNY", "contract_date": "2026-04-01", "updated_at": updated_at, **extra}


def _config(fake: FakeErp, **extra: Any) -> dict[str, Any]:
    return {"secret": SECRET, "base_url": fake.base_url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "token_url": f"{fake.base_url}/oauth/token", "page_size": 2, "rate_limit_per_s": 200, **extra}


def _events(hub: Hub) -> list[dict[str, Any]]:
    with hub.sessions() as s:
        return [row.data for row in s.scalars(select(EventRow).order_by(EventRow.seq))]


def test_pull_pages_with_a_token_resumes_after_a_failure_and_dedupes(hub: Hub) -> None:
    fake = FakeErp()
    fake.orders = [_order(i, f"2026-03-0{i}T10:00:00+08:00") for i in range(1, 6)]
    fake.fail_requests = {2}
    with fake.running():
        sid = uuid.UUID(add_source(client_for(hub), "erp", "erp-pull", _config(fake)))
        with pytest.raises(RetryableError):  # the ERP falls over on the 2nd page: the 1st is stored, cursor saved
            run_pull(hub, sid)
        assert read_state(hub, sid, CURSOR_KEY) == {"updated_since": "2026-03-02T10:00:00+08:00", "page": 1}
        result = run_pull(hub, sid)  # a restart resumes after the stored page, not from the beginning
        since = [q["updated_since"][:10] for kind, q in fake.log if kind == "orders"]
        assert since[:3] == ["1970-01-01", "2026-03-02", "2026-03-02"] and result.new == 3
        wait_processed(hub)
        events = _events(hub)
        assert [e["properties"]["order_no"] for e in events] == [f"SO-{i:03d}" for i in range(1, 6)]
        assert {e["type"] for e in events} == {"order.created"}
        assert all(e["properties"]["order_type"] == "formal" for e in events)
        assert read_state(hub, sid, CURSOR_KEY)["updated_since"] == "2026-03-05T10:00:00+08:00"

        # Later: one order changes in the ERP; the next pull asks only for newer orders.
        fake.orders[1] = _order(2, "2026-03-08T09:00:00+08:00", contract_date="2026-05-01")
        fake.log.clear()
        again = run_pull(hub, sid)
        assert {q["updated_since"] for kind, q in fake.log if kind == "orders"} >= {"2026-03-05T10:00:00+08:00"}
        assert again.new == 1
        wait_processed(hub)
        last = _events(hub)[-1]
        assert last["type"] == "order.updated" and last["properties"]["order_no"] == "SO-002"
        assert last["properties"]["changes"] == {"contract_date": {"before": "2026-04-01", "after": "2026-05-01"}}
        assert len(fake.tokens) == 1  # the token was fetched once and reused


def test_an_order_edited_while_the_hub_pages_does_not_make_it_skip_another(hub: Hub) -> None:
    """Helper-35's F1: offset paging under a fixed updated_since lost the row an edit shifted past the page edge."""
    fake = FakeErp()
    fake.orders = [_order(i, f"2026-03-0{i}T10:00:00+08:00") for i in range(1, 7)]

    def edit_first_order(request_no: int) -> None:
        if request_no == 1:  # SO-001 changes in the ERP right after the hub read the first page
            fake.orders[0] = _order(1, "2026-03-09T10:00:00+08:00", contract_date="2026-06-01")

    fake.after_request = edit_first_order
    with fake.running():
        sid = uuid.UUID(add_source(client_for(hub), "erp", "erp-edit", _config(fake)))
        run_pull(hub, sid)
        wait_processed(hub)
    pulled = {(e["properties"]["order_no"], e["type"]) for e in _events(hub)}
    assert {f"SO-{i:03d}" for i in range(1, 7)} <= {order_no for order_no, _ in pulled}
    assert ("SO-001", "order.updated") in pulled


def test_a_page_of_orders_all_at_one_time_moves_on_by_page(hub: Hub) -> None:
    """Only a page that shares one updated_at needs an offset: there is no later time to move to."""
    fake = FakeErp()
    fake.orders = [_order(i, "2026-03-01T10:00:00+08:00") for i in range(1, 6)]
    with fake.running():
        sid = uuid.UUID(add_source(client_for(hub), "erp", "erp-same", _config(fake)))
        assert run_pull(hub, sid).new == 5
    asked = [(q["updated_since"][:10], q["page"]) for kind, q in fake.log if kind == "orders"]
    assert asked[:4] == [("1970-01-01", "1"), ("2026-03-01", "1"), ("2026-03-01", "2"), ("2026-03-01", "3")]


def test_a_pull_ends_after_the_last_page_of_orders_that_share_one_time(hub: Hub) -> None:
    """More orders at one `updated_at` than a page holds: the last of their pages sent the cursor back to page 1,
    and the pull read pages 1, 2, 3, 1, 2, 3 … until MAX_PAGES_PER_RUN (1000 requests to the ERP every run)."""
    fake = FakeErp()
    fake.orders = [_order(i, "2026-03-01T10:00:00+08:00") for i in range(1, 6)]
    with fake.running():
        sid = uuid.UUID(add_source(client_for(hub), "erp", "erp-one-time", _config(fake)))
        first = run_pull(hub, sid, max_pages=50)
        assert (first.pages, first.new, fake.requests) == (4, 5, 4)
        fake.log.clear()
        # Later the ERP deletes two of those orders (the pages shift back) and a new one arrives: still found.
        del fake.orders[3:5]
        fake.orders.append(_order(8, "2026-03-02T09:00:00+08:00"))
        again = run_pull(hub, sid, max_pages=50)
        assert again.new == 1 and again.pages < 10
        assert read_state(hub, sid, CURSOR_KEY) == {"updated_since": "2026-03-02T09:00:00+08:00", "page": 1}
        wait_processed(hub)
    assert {e["properties"]["order_no"] for e in _events(hub)} == {f"SO-{i:03d}" for i in (1, 2, 3, 4, 5, 8)}


def test_a_pulled_version_already_pushed_is_not_stored_twice(hub: Hub) -> None:
    from tests.connectors.erp.acceptance import sign
    from tests.helpers import jbody

    fake = FakeErp()
    order = _order(7, "2026-03-09T10:00:00+08:00")
    fake.orders = [order]
    with fake.running():
        client = client_for(hub)
        sid = add_source(client, "erp", "erp-both", _config(fake))
        body = jbody({**order, "event_id": "push-7", "type": "order.created"})
        assert client.post(f"/hooks/{sid}", content=body, headers=dict(sign(body, {"secret": SECRET}).headers)
                           ).status_code == 200
        wait_processed(hub)
        run_pull(hub, uuid.UUID(sid))
        wait_processed(hub)
    assert [e["source_event_id"] for e in _events(hub)] == ["push-7"]


def test_wrong_client_secret_fails_clearly_and_pull_due_schedules_only_pull_sources(hub: Hub) -> None:
    from connectors.erp.pull import ErpPullError

    fake = FakeErp()
    with fake.running():
        client = client_for(hub)
        bad = uuid.UUID(add_source(client, "erp", "erp-bad", _config(fake, client_secret="wrong-secret-000000")))
        with pytest.raises(ErpPullError, match="token request failed"):
            run_pull(hub, bad)
        add_source(client, "erp", "erp-push-only", {"secret": SECRET})
        assert pull_due() == 1  # only the source with pull settings; it is now claimed until its interval passes
        assert pull_due() == 0
        hub.runner.join(timeout=10)


def test_a_token_the_erp_expired_is_renewed_and_a_wrong_scope_is_refused(hub: Hub) -> None:
    """The fake expires tokens on its own clock (helper-27's G9): the hub must not keep a dead one."""
    from connectors.erp.pull import ErpPullError

    fake = FakeErp()
    fake.orders = [_order(1, "2026-03-01T10:00:00+08:00")]
    with fake.running():
        client = client_for(hub)
        sid = uuid.UUID(add_source(client, "erp", "erp-exp", _config(fake)))
        assert run_pull(hub, sid).new == 1
        fake.expires_in = 3600
        later = fake.clock() + 7200
        fake.clock = lambda: later  # two hours on: the ERP no longer takes the first token
        with pytest.raises(RetryableError, match="401"):
            run_pull(hub, sid)
        run_pull(hub, sid)  # a new token, fetched with the same client credentials
        assert len(fake.tokens) == 2
        scoped = uuid.UUID(add_source(client, "erp", "erp-scope", _config(fake, scope="orders.write")))
        with pytest.raises(ErpPullError, match="invalid_scope"):
            run_pull(hub, scoped)


def test_a_disabled_source_is_not_pulled_and_a_scheduled_pull_of_it_is_a_no_op(hub: Hub) -> None:
    """Helper-35's F3: disabling a source must stop its pulls, including one already queued."""
    from hub.errors import Conflict
    from hub.pull import pull_source
    from tests.helpers import ADMIN

    fake = FakeErp()
    fake.orders = [_order(1, "2026-03-01T10:00:00+08:00")]
    with fake.running():
        client = client_for(hub)
        sid = add_source(client, "erp", "erp-off", _config(fake))
        assert client.patch(f"/v1/sources/{sid}", json={"enabled": False}, headers=ADMIN).status_code == 200
        with pytest.raises(Conflict, match="disabled"):
            run_pull(hub, uuid.UUID(sid))
        assert pull_source(sid) == 0
        assert pull_source(str(uuid.uuid4())) == 0  # deleted since it was scheduled
    assert fake.requests == 0


@pytest.mark.parametrize("overlap", ["same process", "other connection"])
def test_a_second_pull_of_a_busy_source_is_skipped(any_hub: Hub, overlap: str) -> None:
    """Helper-35's F2: overlapping pulls read one cursor, fetch the same pages and break the rate limit."""
    from hub.pull import pull_lock

    fake = FakeErp()
    fake.orders = [_order(1, "2026-03-01T10:00:00+08:00")]
    with fake.running():
        sid = uuid.UUID(add_source(client_for(any_hub), "erp", "erp-busy", _config(fake)))
        with pull_lock(any_hub, sid) as held:
            assert held
            if overlap == "other connection" and any_hub.engine.dialect.name == "postgresql":
                with pull_lock(any_hub, sid) as again:  # a second pooled connection: as another worker would
                    assert not again
            assert run_pull(any_hub, sid).skipped
            assert fake.requests == 0
        assert run_pull(any_hub, sid).new == 1  # released: the next pull runs


def test_re_reading_the_boundary_order_is_not_counted_as_inbound_duplicates(hub: Hub) -> None:
    """Helper-35's F5: the pull's own overlap is not a platform redelivering; source health must not count it."""
    from webhooks.health import source_health

    fake = FakeErp()
    fake.orders = [_order(i, f"2026-03-0{i}T10:00:00+08:00") for i in range(1, 4)]
    with fake.running():
        sid = uuid.UUID(add_source(client_for(hub), "erp", "erp-dup", _config(fake)))
        run_pull(hub, sid)
        run_pull(hub, sid)  # fetches the boundary order SO-003 again
    with hub.sessions() as session:
        item = next(i for i in source_health(session) if i["source_id"] == sid)
    assert item["duplicates_1h"] == 0 and item["accepted_1h"] == 3


def test_failing_pulls_show_in_source_health_and_turn_the_source_failing(hub: Hub) -> None:
    """Helper-35's F4: a pulling source receives no requests, so a pull that keeps failing was invisible."""
    from connectors.erp.pull import ErpPullError
    from tests.helpers import ADMIN
    from webhooks.health import source_status

    fake = FakeErp()
    fake.orders = [_order(1, "2026-03-01T10:00:00+08:00")]
    with fake.running():
        client = client_for(hub)
        sid = add_source(client, "erp", "erp-sick", _config(fake, client_secret="wrong-secret-000000"))

        def health() -> dict[str, Any]:
            items = client.get("/v1/health/sources", headers=ADMIN).json()["items"]
            return next(item for item in items if item["source_id"] == sid)

        assert health()["pull"] is None
        for attempt in range(1, 4):
            with pytest.raises(ErpPullError):
                run_pull(hub, uuid.UUID(sid))
            item = health()
            assert item["pull"]["consecutive_failures"] == attempt
            assert "token request failed" in item["pull"]["last_error"]
            assert source_status(item) == ("failing" if attempt >= 3 else "degraded")
        assert "token request failed" in client.get("/ops", headers=ADMIN).text
        assert client.patch(f"/v1/sources/{sid}", json={"config": _config(fake)}, headers=ADMIN).status_code == 200
        run_pull(hub, uuid.UUID(sid))
        item = health()
        assert item["pull"]["consecutive_failures"] == 0 and item["pull"]["last_success_at"]
        assert source_status(item) == "healthy"


def test_a_throttled_pull_is_retried_after_the_erps_retry_after_not_sooner(hub: Hub) -> None:
    """The ERP's 429 `Retry-After` was ignored: the task retried after 0.2, 0.4, 0.8 … s, inside the rate-limit
    window, and each early retry was another 429 (five of them and the pull gave up)."""
    import time

    from hub.tasks import enqueue

    fake = FakeErp()
    fake.orders = [_order(1, "2026-03-01T10:00:00+08:00")]
    with fake.running():
        sid = add_source(client_for(hub), "erp", "erp-throttled", _config(fake))
        fake.throttle(1)
        started = time.monotonic()
        with pytest.raises(RetryableError) as raised:
            run_pull(hub, uuid.UUID(sid))
        assert raised.value.retry_after == 1.0 and "retry after 1s" in str(raised.value)
        enqueue("hub.pull.pull_source", sid)  # as the schedule does: the runner retries it
        deadline = time.monotonic() + 20
        while fake.requests == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fake.requests >= 1, "the pull never got through"
        assert time.monotonic() - started >= 1.0
        assert fake.throttled == 2  # the direct call and the task's first try; the retry waited out the window
        wait_processed(hub)
        assert [e["properties"]["order_no"] for e in _events(hub)] == ["SO-001"]


@pytest.mark.postgres
def test_a_pull_whose_lock_connection_is_terminated_still_ends_as_it_went(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection holding a pull's advisory lock is terminated (pg_terminate_backend, a PostgreSQL restart) while
    the pull runs. Releasing the lock then raised, and a pull that had stored its pages and recorded its success
    failed its task."""
    import hub.pull as pull
    from tests.conftest import make_hub, make_settings, running

    real_pages = pull._pull_pages

    def pages_after_losing_the_lock(hub: Hub, *args: Any) -> None:
        with hub.engine.connect() as conn:
            lost = conn.scalar(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"))
        assert lost == 1
        real_pages(hub, *args)

    monkeypatch.setattr(pull, "_pull_pages", pages_after_losing_the_lock)
    fake = FakeErp()
    fake.orders = [_order(1, "2026-03-01T10:00:00+08:00")]
    for hub in running(make_hub(make_settings(tmp_path, pg_url))):
        with fake.running():
            sid = uuid.UUID(add_source(client_for(hub), "erp", "erp-lost-lock", _config(fake)))
            assert run_pull(hub, sid).new == 1
            assert read_state(hub, sid, pull.HEALTH_KEY)["consecutive_failures"] == 0
