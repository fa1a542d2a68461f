"""Company profiles: triggered lookups, caching with TTL, the oldest registry source, the CLI."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from enrichment.company import lookup_company
from enrichment.models import CompanyProfile
from hub.errors import InvalidRequest, NotFound, RetryableError
from hub.models import EventRow
from hub.runtime import Hub
from hub.schemas import EventDraft, Identity
from tests.enrichment.conftest import USCC, FakeRegistry, store_call
from tests.helpers import ADMIN, add_source, client_for, count_events, wait_processed


def _order_event(uscc: str, n: int = 1) -> EventDraft:
    return EventDraft(
        type="order.created", source_event_id=f"order-{uscc}-{n}", occurred_at=datetime(2026, 1, 25, tzinfo=UTC),
        identities=[Identity(type="erp_customer_code", value="C0001"), Identity(type="uscc", value=uscc),
                    Identity(type="phone", value="+8613800138000")],
        properties={"order_no": f"SO-{n}", "amount": 12000},
    )


def _profiles(hub: Hub) -> list[CompanyProfile]:
    with hub.sessions() as s:
        return list(s.scalars(select(CompanyProfile)))


def _profile_events(hub: Hub) -> list[EventRow]:
    with hub.sessions() as s:
        return list(s.scalars(select(EventRow).where(EventRow.type == "company.profile.updated")))


def _settle(hub: Hub) -> None:
    wait_processed(hub)
    hub.runner.join(10)


def test_event_with_uscc_triggers_one_lookup_and_profile_event(ehub: Hub, registry: FakeRegistry) -> None:
    add_source(client_for(ehub), "credit_registry", "tyc", {"provider": "tianyancha", "token": "tok-1"})
    store_call(ehub, _order_event(USCC, 1))
    store_call(ehub, _order_event(USCC, 2))  # same company again: debounced/cached, no second paid call
    _settle(ehub)
    assert registry.calls == [("tok-1", USCC)]
    [profile] = _profiles(ehub)
    assert profile.properties is not None and profile.properties["name"] == "福州测试科技有限公司"
    assert profile.fetched_at is not None and profile.error is None and profile.source_id is not None
    [event] = _profile_events(ehub)
    assert event.data["properties"]["insured_employees"] == 37
    assert {"type": "uscc", "value": USCC} in event.data["identities"]
    assert event.account_id is not None and profile.account_id == event.account_id
    store_call(ehub, _order_event(USCC, 3))  # fresh profile: nothing queued
    _settle(ehub)
    assert len(registry.calls) == 1 and len(_profile_events(ehub)) == 1


def test_stale_profile_is_looked_up_again(ehub: Hub, registry: FakeRegistry) -> None:
    add_source(client_for(ehub), "credit_registry", "tyc", {"provider": "tianyancha", "token": "tok-1"})
    store_call(ehub, _order_event(USCC, 1))
    _settle(ehub)
    old = datetime.now(UTC) - timedelta(seconds=ehub.settings.registry_cache_ttl_s + 60)
    with ehub.transaction() as s:
        s.execute(update(CompanyProfile).values(fetched_at=old, requested_at=None))
    store_call(ehub, _order_event(USCC, 2))
    _settle(ehub)
    assert len(registry.calls) == 2
    assert _profiles(ehub)[0].fetched_at > old  # type: ignore[operator]


def test_invalid_uscc_never_triggers_a_lookup(ehub: Hub, registry: FakeRegistry) -> None:
    add_source(client_for(ehub), "credit_registry", "tyc", {"provider": "tianyancha", "token": "tok-1"})
    store_call(ehub, _order_event("91350100M000100Y44"))  # bad check digit: dropped from identities
    _settle(ehub)
    assert registry.calls == [] and _profiles(ehub) == []
    with pytest.raises(InvalidRequest):
        lookup_company(ehub, "91350100M000100Y44")


def test_oldest_enabled_registry_source_is_used(ehub: Hub, registry: FakeRegistry) -> None:
    client = client_for(ehub)
    add_source(client, "credit_registry", "first", {"provider": "tianyancha", "token": "tok-old"})
    time.sleep(0.01)
    add_source(client, "credit_registry", "second", {"provider": "qichacha", "token": "tok-new"})
    props, outcome = lookup_company(ehub, USCC.lower())  # normalised like ingest
    assert outcome == "updated" and props["uscc"] == USCC
    assert registry.calls == [("tok-old", USCC)]
    _, outcome = lookup_company(ehub, USCC)
    assert outcome == "cached" and len(registry.calls) == 1
    _, outcome = lookup_company(ehub, USCC, force=True)
    assert outcome == "updated" and len(registry.calls) == 2
    assert len(_profile_events(ehub)) == 1  # an unchanged profile is not a second event


def test_no_registry_source_and_registry_errors(ehub: Hub, registry: FakeRegistry) -> None:
    with pytest.raises(NotFound) as exc:
        lookup_company(ehub, USCC)
    assert exc.value.code == "no_registry_source"
    add_source(client_for(ehub), "credit_registry", "tyc", {"provider": "tianyancha", "token": "tok-1"})
    registry.fail_with = RetryableError("registry 503")
    with pytest.raises(RetryableError):
        lookup_company(ehub, USCC)
    registry.fail_with = None
    with pytest.raises(NotFound):
        lookup_company(ehub, "91110108551385082Q")  # valid, but the registry does not know it
    errors = {p.uscc: p.error for p in _profiles(ehub)}
    assert "registry has no company" in (errors["91110108551385082Q"] or "")
    assert count_events(ehub, type="company.profile.updated") == 0


@pytest.mark.postgres
def test_a_registry_error_holding_a_nul_is_recorded_on_postgres(
    tmp_path: Path, registry: FakeRegistry, pg_url: str
) -> None:
    """The registry's own words (tianyancha's `reason`) are kept on the profile, and PostgreSQL refuses a NUL in text:
    the lookup ended in a DataError instead, with no error noted on the profile."""
    from hub.errors import HubError
    from hub.runtime import set_hub
    from tests.enrichment.conftest import FakeRegistryPlugin, build_hub

    hub = build_hub(tmp_path, [FakeRegistryPlugin(registry)], database_url=pg_url)
    hub.start()
    try:
        add_source(client_for(hub), "credit_registry", "tyc", {"provider": "tianyancha", "token": "tok-1"})
        registry.fail_with = HubError("tianyancha error 300000: no\x00such", code="registry_error")
        with pytest.raises(HubError) as exc:
            lookup_company(hub, USCC)
        assert exc.value.code == "registry_error"
        [profile] = _profiles(hub)
        assert profile.error == "tianyancha error 300000: no\ufffdsuch"
    finally:
        hub.stop()
        hub.engine.dispose()
        set_hub(None)


def test_cli_company_lookup(ehub: Hub, registry: FakeRegistry, monkeypatch: pytest.MonkeyPatch,
                            tmp_path: Path) -> None:
    import enrichment.cli as cli_mod
    from enrichment import register_commands
    from hub.cli import cli

    add_source(client_for(ehub), "credit_registry", "tyc", {"provider": "tianyancha", "token": "tok-1"})
    monkeypatch.setattr(cli_mod, "_hub", lambda: ehub)
    register_commands(cli=cli)
    result = CliRunner().invoke(cli, ["company", "lookup", USCC])
    assert result.exit_code == 0, result.output
    assert '"legal_representative": "张三"' in result.stdout
    bad = CliRunner().invoke(cli, ["company", "lookup", "123"])
    assert bad.exit_code == 1 and "not a valid unified social credit code" in bad.stderr
    ehub.start()  # the command stopped the hub it was given; the fixture stops it again


def test_a_registry_outage_is_retried_by_the_sweep_with_a_backoff(ehub: Hub, registry: FakeRegistry) -> None:
    """The task's quick retries (~6 s) were all a lookup got: after an outage the profile stayed empty until
    another event came more than 10 minutes later, with nothing recorded (helper-25)."""
    from enrichment.company import retry_delay_s, retry_due

    add_source(client_for(ehub), "credit_registry", "tyc", {"provider": "tianyancha", "token": "tok-1"})
    registry.fail_with = RetryableError("registry 503")
    store_call(ehub, _order_event(USCC, 1))
    _settle(ehub)
    [profile] = _profiles(ehub)
    assert len(registry.calls) == 1 and profile.lookup_failures == 1 and profile.properties is None
    assert (profile.error or "").startswith("registry unavailable, will retry")
    assert retry_due(ehub) == 0  # not before the backoff
    assert (retry_delay_s(1), retry_delay_s(2), retry_delay_s(20)) == (600.0, 1200.0, 6 * 3600.0)
    registry.fail_with = None  # the registry is back
    with ehub.transaction() as s:
        s.execute(update(CompanyProfile).values(requested_at=datetime.now(UTC) - timedelta(seconds=601)))
    assert retry_due(ehub) == 1
    _settle(ehub)
    [profile] = _profiles(ehub)
    assert profile.properties is not None and profile.error is None and profile.lookup_failures == 0
    assert len(registry.calls) == 2 and len(_profile_events(ehub)) == 1
    assert retry_due(ehub) == 0


def test_a_sources_cache_ttl_decides_when_a_profile_is_stale(ehub: Hub, registry: FakeRegistry) -> None:
    """`cache_ttl_s` was accepted and ignored: only CRMHUB_REGISTRY_CACHE_TTL_S counted (helper-25)."""
    add_source(client_for(ehub), "credit_registry", "tyc",
               {"provider": "tianyancha", "token": "tok-1", "cache_ttl_s": 3600})
    store_call(ehub, _order_event(USCC, 1))
    _settle(ehub)
    two_days_ago = datetime.now(UTC) - timedelta(days=2)  # fresh by the 30-day setting, stale by the source's hour
    with ehub.transaction() as s:
        s.execute(update(CompanyProfile).values(fetched_at=two_days_ago, requested_at=None))
    _, outcome = lookup_company(ehub, USCC)
    assert outcome == "updated" and len(registry.calls) == 2
    with ehub.transaction() as s:
        s.execute(update(CompanyProfile).values(fetched_at=two_days_ago, requested_at=None))
    store_call(ehub, _order_event(USCC, 2))  # an event finds it stale too
    _settle(ehub)
    assert len(registry.calls) == 3


def test_a_profile_that_changes_back_is_stored_again(
    ehub: Hub, registry: FakeRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_for(ehub)
    add_source(client, "credit_registry", "tyc", {"provider": "tianyancha", "token": "tok-1"})
    store_call(ehub, _order_event(USCC, 1))
    _settle(ehub)
    original, staff = registry.lookup, iter([38, 37, 37])

    def changing(config: Any, uscc: str, http: Any) -> dict[str, Any]:
        return {**original(config, uscc, http), "insured_employees": next(staff)}

    monkeypatch.setattr(registry, "lookup", changing)
    lookup_company(ehub, USCC, force=True)  # 37 → 38
    lookup_company(ehub, USCC, force=True)  # 38 → 37: the same content as the first profile, still a change
    lookup_company(ehub, USCC, force=True)  # unchanged: no event
    _settle(ehub)
    with ehub.sessions() as s:
        rows = list(s.scalars(select(EventRow).where(EventRow.type == "company.profile.updated")
                              .order_by(EventRow.seq)))
    assert [r.data["properties"]["insured_employees"] for r in rows] == [37, 38, 37]
    account = client.get(f"/v1/accounts/{rows[0].account_id}", headers=ADMIN).json()
    assert account["profile"]["insured_employees"] == 37  # not left at the 38 the registry no longer says


def test_a_lookup_whose_task_was_lost_is_queued_again_by_the_sweep(ehub: Hub, registry: FakeRegistry) -> None:
    """A lookup queued in-process and lost (lane full, process stopped before it ran) was never tried again
    until the company's next event, after the debounce (helper-51)."""
    from enrichment.company import LOOKUP_TASK, retry_due

    add_source(client_for(ehub), "credit_registry", "tyc", {"provider": "tianyancha", "token": "tok-1"})
    lost: list[tuple[str, tuple[Any, ...]]] = []
    enqueue = ehub.runner.enqueue

    def losing(name: str, args: tuple[Any, ...], countdown: float | None = None) -> None:
        if name == LOOKUP_TASK:
            lost.append((name, args))
            return
        enqueue(name, args, countdown=countdown)

    ehub.runner.enqueue = losing  # type: ignore[method-assign]
    try:
        store_call(ehub, _order_event(USCC, 1))
        _settle(ehub)
    finally:
        ehub.runner.enqueue = enqueue  # type: ignore[method-assign]
    assert lost == [(LOOKUP_TASK, (USCC,))] and registry.calls == []
    assert retry_due(ehub) == 0  # still within the debounce: it may be on its way
    with ehub.transaction() as s:
        s.execute(update(CompanyProfile).values(requested_at=datetime.now(UTC) - timedelta(seconds=601)))
    assert retry_due(ehub) == 1
    _settle(ehub)
    [profile] = _profiles(ehub)
    assert registry.calls == [("tok-1", USCC)] and profile.properties is not None
    assert profile.requested_at is None and profile.lookup_failures == 0 and len(_profile_events(ehub)) == 1
    assert retry_due(ehub) == 0


def test_an_unanswered_lookup_waits_while_no_registry_is_configured(ehub: Hub, registry: FakeRegistry) -> None:
    """Without a registry source each lookup ends at once (no_registry_source) and records nothing: the sweep
    must not queue them again every time it runs."""
    from enrichment.company import retry_due

    store_call(ehub, _order_event(USCC, 1))
    _settle(ehub)
    with ehub.transaction() as s:
        s.execute(update(CompanyProfile).values(requested_at=datetime.now(UTC) - timedelta(seconds=601)))
    assert retry_due(ehub) == 0 and registry.calls == []


def test_a_refused_lookup_is_not_taken_for_a_lost_one(ehub: Hub, registry: FakeRegistry) -> None:
    from enrichment.company import retry_due

    add_source(client_for(ehub), "credit_registry", "tyc", {"provider": "tianyancha", "token": "tok-1"})
    registry.fail_with = NotFound("no such company", code="company_not_found")
    store_call(ehub, _order_event(USCC, 1))
    _settle(ehub)
    with ehub.transaction() as s:
        s.execute(update(CompanyProfile).values(requested_at=datetime.now(UTC) - timedelta(seconds=601)))
    [profile] = _profiles(ehub)
    assert profile.error and profile.lookup_failures == 0
    assert retry_due(ehub) == 0 and len(registry.calls) == 1


@pytest.mark.postgres
def test_a_connection_lost_while_storing_a_profile_keeps_the_paid_answer(
    tmp_path: Path, registry: FakeRegistry, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's connection is terminated (pg_terminate_backend) while the registry's answer is being stored.
    The task failed with it, and the lookup waited for the sweep to find it unanswered (10 min), then paid again."""
    from sqlalchemy import create_engine, text

    import enrichment.company as company
    from hub.runtime import set_hub
    from tests.enrichment.conftest import FakeRegistryPlugin, build_hub

    hub = build_hub(tmp_path, [FakeRegistryPlugin(registry)], database_url=pg_url)  # not started: run by hand
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    real_store, dropped = company.store_internal, []

    def store_after_losing_the_connection(hub: Hub, session: Any, drafts: Any, *, source: str) -> int:
        if not dropped:
            pid = session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with admin.connect() as conn:
                dropped.append(conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar())
        return real_store(hub, session, drafts, source=source)

    monkeypatch.setattr(company, "store_internal", store_after_losing_the_connection)
    try:
        add_source(client_for(hub), "credit_registry", "tyc", {"provider": "tianyancha", "token": "tok-1"})
        store_call(hub, _order_event(USCC, 1))
        assert company.lookup_task(USCC) == "updated"
        assert dropped == [True] and registry.calls == [("tok-1", USCC)]
        [profile] = _profiles(hub)
        assert profile.properties is not None and profile.requested_at is None and len(_profile_events(hub)) == 1
    finally:
        hub.stop()
        hub.engine.dispose()
        admin.dispose()
        set_hub(None)


@pytest.mark.postgres
def test_overlapping_retry_sweeps_queue_a_lookup_once(
    tmp_path: Path, registry: FakeRegistry, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two sweeps run together (two `crmhub beat`s by mistake, or sweeps queued behind a busy enrich worker): each
    read the same due profile and each queued a lookup, two paid registry calls for one company."""
    import threading

    import enrichment.company as company
    from enrichment.company import retry_due
    from hub.runtime import set_hub
    from tests.enrichment.conftest import FakeRegistryPlugin, build_hub

    hub = build_hub(tmp_path, [FakeRegistryPlugin(registry)], database_url=pg_url)  # not started: run by hand
    queued: list[str] = []
    second_done = threading.Event()
    real_enqueue = company.enqueue_after_commit

    def enqueue_then_wait(session: Any, name: str, *args: Any, **kwargs: Any) -> None:
        queued.append(args[0])
        if threading.current_thread() is not threading.main_thread():
            second_done.wait(10)  # the first sweep holds its transaction open while the second runs
        real_enqueue(session, name, *args, **kwargs)

    monkeypatch.setattr(company, "enqueue_after_commit", enqueue_then_wait)
    try:
        with hub.transaction() as s:  # a lookup the registry failed 11 minutes ago: due again
            s.add(CompanyProfile(uscc=USCC, lookup_failures=1, error="registry unavailable",
                                 requested_at=datetime.now(UTC) - timedelta(seconds=660)))
        first: list[int] = []
        thread = threading.Thread(target=lambda: first.append(retry_due(hub)))
        thread.start()
        deadline = time.monotonic() + 10
        while not queued and time.monotonic() < deadline:
            time.sleep(0.01)
        second = retry_due(hub)
        second_done.set()
        thread.join(15)
        assert (first, second) == ([1], 0) and queued == [USCC]
    finally:
        second_done.set()
        hub.stop()
        hub.engine.dispose()
        set_hub(None)


@pytest.mark.postgres
def test_two_events_for_one_stale_company_processed_at_once_queue_one_lookup(
    tmp_path: Path, registry: FakeRegistry, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each transaction read the stale profile before the other committed, so each marked it requested and each
    queued a lookup: two paid registry calls. The second now waits for the first's row lock and queues nothing."""
    import threading

    import enrichment.company as company
    from hub.runtime import set_hub
    from tests.enrichment.conftest import FakeRegistryPlugin, build_hub

    hub = build_hub(tmp_path, [FakeRegistryPlugin(registry)], database_url=pg_url)  # not started: run by hand
    queued: list[str] = []
    monkeypatch.setattr(company, "enqueue_after_commit", lambda _s, _name, uscc: queued.append(uscc))
    second_done = threading.Event()
    claimed: dict[str, bool] = {}

    def first_event() -> None:
        with hub.transaction() as s:
            claimed["first"] = company._request(s, USCC, None, 3600)
            second_done.wait(1.5)  # still uncommitted while the second event reads the profile

    try:
        with hub.transaction() as s:  # looked up two hours ago, stale for a one-hour TTL
            s.add(CompanyProfile(uscc=USCC, fetched_at=datetime.now(UTC) - timedelta(hours=2), lookup_failures=0))
        thread = threading.Thread(target=first_event)
        thread.start()
        deadline = time.monotonic() + 10
        while "first" not in claimed and time.monotonic() < deadline:
            time.sleep(0.01)
        with hub.transaction() as s:
            claimed["second"] = company._request(s, USCC, None, 3600)
        second_done.set()
        thread.join(15)
        assert claimed == {"first": True, "second": False} and queued == [USCC]
        [profile] = _profiles(hub)
        assert profile.requested_at is not None and profile.requested_at > datetime.now(UTC) - timedelta(minutes=1)
    finally:
        second_done.set()
        hub.stop()
        hub.engine.dispose()
        set_hub(None)
