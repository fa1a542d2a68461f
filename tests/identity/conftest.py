"""Helpers for identity tests: store drafts straight through the real pipeline (no connector needed)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from hub.models import EventRow
from hub.pipeline import store_drafts
from hub.runtime import Hub, set_hub
from hub.schemas import EventDraft, Identity, utcnow
from tests.conftest import make_hub, make_settings

_ids = itertools.count(1)
T0 = datetime(2026, 1, 1, tzinfo=utcnow().tzinfo)


def draft(*idents: tuple[str, str], type: str = "message.received", at: datetime | None = None,
          traits: dict[str, Any] | None = None, properties: dict[str, Any] | None = None) -> EventDraft:
    n = next(_ids)
    return EventDraft(
        type=type, source_event_id=f"e{n}", occurred_at=at or T0 + timedelta(minutes=n),
        identities=[Identity(type=t, value=v) for t, v in idents], traits=traits or {}, properties=properties or {},
    )


def ingest(hub: Hub, *drafts: EventDraft, source: str = "pos") -> list[EventRow]:
    """Store drafts in one transaction each; returns their stored rows (in order)."""
    out = []
    for d in drafts:
        with hub.transaction() as session:
            store_drafts(hub, session, [d], source=source, source_id=None)
        out.append(event_row(hub, d.source_event_id, source))
    return out


def event_row(hub: Hub, source_event_id: str, source: str = "pos") -> EventRow:
    with hub.sessions() as session:
        row = session.scalars(select(EventRow).where(EventRow.source == source,
                                                     EventRow.source_event_id == source_event_id)).one()
        return row


def customer_of(hub: Hub, *drafts: EventDraft, source: str = "pos") -> uuid.UUID | None:
    (row,) = ingest(hub, *drafts, source=source)[-1:]
    return row.customer_id


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def quiet_hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hub]:
    """A hub with only the identity plugin and no background runner started, on SQLite and PostgreSQL."""
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    h = make_hub(make_settings(tmp_path, url, identity_placeholders="13912340000"), plugins="identity")
    yield h
    h.engine.dispose()
    set_hub(None)
