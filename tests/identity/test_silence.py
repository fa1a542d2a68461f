"""customer.silent (contract §7): once per silence period, from the scheduled task or `crmhub silent-scan`."""

from __future__ import annotations

from datetime import timedelta

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from hub.models import EventRow
from hub.runtime import Hub
from hub.schemas import utcnow
from identity import register_commands, register_schedules
from identity.silence import SCAN_TASK, scan_silent
from tests.identity.conftest import draft, ingest


def silent_events(hub: Hub) -> list[EventRow]:
    with hub.sessions() as s:
        return list(s.scalars(select(EventRow).where(EventRow.type == "customer.silent").order_by(EventRow.seq)))


def test_silent_once_per_period_and_again_after_new_activity(quiet_hub: Hub) -> None:
    now = utcnow()
    (quiet,) = ingest(quiet_hub, draft(("email", "q@example.com"), at=now - timedelta(days=40)), source="douyin")
    ingest(quiet_hub, draft(("email", "busy@example.com"), at=now - timedelta(days=3)))
    assert scan_silent(quiet_hub, now) == 1
    (event,) = silent_events(quiet_hub)
    assert event.customer_id == quiet.customer_id and event.source == "identity"
    props = event.data["properties"]
    assert props["days_silent"] == 40 and props["last_source"] == "douyin"
    assert props["last_activity_at"] == (now - timedelta(days=40)).isoformat()
    assert scan_silent(quiet_hub, now + timedelta(days=1)) == 0  # same period: nothing new
    ingest(quiet_hub, draft(("email", "q@example.com"), at=now - timedelta(days=1)))
    assert scan_silent(quiet_hub, now + timedelta(days=10)) == 0
    assert scan_silent(quiet_hub, now + timedelta(days=31)) == 1  # silent again: a new period
    assert len(silent_events(quiet_hub)) == 2


def test_silence_threshold_comes_from_settings(quiet_hub: Hub) -> None:
    quiet_hub.settings.silent_days = 5
    ingest(quiet_hub, draft(("email", "q@example.com"), at=utcnow() - timedelta(days=6)))
    assert scan_silent(quiet_hub) == 1


def test_scan_is_scheduled_and_has_a_command(quiet_hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    scheduled: list[tuple[str, float]] = []
    register_schedules(schedule=lambda name, every: scheduled.append((name, every)))
    assert scheduled == [(SCAN_TASK, 3600.0)]
    assert (SCAN_TASK, 3600.0) in quiet_hub.schedules

    group = click.Group()
    register_commands(cli=group)
    monkeypatch.setattr("hub.cli.hub_for_cli", lambda: quiet_hub)
    ingest(quiet_hub, draft(("email", "q@example.com"), at=utcnow() - timedelta(days=90)))
    result = CliRunner().invoke(group, ["silent-scan"])
    assert result.exit_code == 0, result.output
    assert "1 customer.silent event(s) emitted" in result.output
    assert len(silent_events(quiet_hub)) == 1
