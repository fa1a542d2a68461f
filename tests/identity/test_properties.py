"""Property test: whatever events arrive, the resolver's invariants hold."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import select

from hub.runtime import set_hub
from identity.models import CustomerRow, IdentityRow
from tests.conftest import make_hub, make_settings
from tests.identity.conftest import draft, ingest

POOL = st.sampled_from([
    ("web_user_id", "u1"), ("web_user_id", "u2"), ("web_anonymous_id", "a1"), ("web_anonymous_id", "a2"),
    ("email", "x@example.com"), ("email", "y@example.com"), ("phone", "13912345678"), ("phone", "13987654321"),
    ("phone", "4008123123"), ("phone", "01062345678"), ("phone", "13333333333"), ("douyin_open_id", "d1"),
])
EVENTS = st.lists(st.lists(POOL, min_size=1, max_size=4), min_size=1, max_size=12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=EVENTS)
def test_invariants(tmp_path_factory: object, events: list[list[tuple[str, str]]]) -> None:
    tmp: Path = tmp_path_factory.mktemp("prop")  # type: ignore[attr-defined]
    hub = make_hub(make_settings(tmp), plugins="identity")
    try:
        rows = ingest(hub, *[draft(*idents) for idents in events])
        with hub.sessions() as s:
            customers = {c.id: c for c in s.scalars(select(CustomerRow))}
            idents = list(s.scalars(select(IdentityRow)))
        live = {cid for cid, c in customers.items() if c.merged_into is None}
        # Merged-away customers point straight at a live survivor, which is older.
        for c in customers.values():
            if c.merged_into is not None:
                assert c.merged_into in live and customers[c.merged_into].created_at <= c.created_at
        # Identifiers belong to live customers only; exclusive ones to exactly one; limits hold.
        assert {i.customer_id for i in idents} <= live
        exclusive = Counter((i.type, i.value) for i in idents if not i.shared)
        assert max(exclusive.values(), default=1) == 1
        per_type = Counter((i.customer_id, i.type) for i in idents if not i.shared)
        assert all(n <= (1 if t == "web_user_id" else 5) for (_, t), n in per_type.items())
        assert not any(i.value == "+8613333333333" for i in idents)  # a placeholder is never kept
        # Every event with a usable identifier has a customer that still resolves.
        for row, idents_in in zip(rows, events, strict=True):
            if any(v != "13333333333" for _, v in idents_in):
                assert row.customer_id in customers
    finally:
        hub.engine.dispose()
        set_hub(None)
