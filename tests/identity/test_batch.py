"""Batched resolution (`events_prepared` preload, deferred writes) decides exactly what one event at a time does.

Each scenario is stored twice in the same hub under two prefixes that keep the identifiers apart: once with
one transaction per event, once as a single `store_drafts` batch. Partitions of events into customers,
history and traits must match.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import func, select

from hub.models import EventRow
from hub.pipeline import store_drafts
from hub.runtime import Hub
from hub.schemas import EventDraft, Identity
from identity.models import CustomerRow, HistoryRow, IdentityRow
from tests.conftest import make_hub, make_settings
from tests.identity.conftest import T0

Scenario = list[tuple[list[tuple[str, int]], str]]  # per event: (identifiers as (type, n), name trait)

# "landline" and "line400" are phones too: weak lines that become shared instead of merging customers.
TYPES = ("phone", "douyin_open_id", "xhs_user_id", "email", "web_user_id", "landline", "line400")
_PHONE_BLOCKS = {"phone": "139{d}{n:07d}", "landline": "010-6{d}{n:06d}", "line400": "400{d}{n:06d}"}


def _value(prefix: str, type_: str, n: int) -> str:
    if type_ in _PHONE_BLOCKS:  # the prefix picks a separate block of numbers
        return _PHONE_BLOCKS[type_].format(d="1" if prefix == "a" else "2", n=n)
    if type_ == "email":
        return f"{prefix}{n}@example.com"
    return f"{prefix}-{type_}-{n}"


def _mine(prefix: str, value: str | None) -> bool:
    """Whether a stored (normalised) identifier belongs to this prefix's run."""
    d = "1" if prefix == "a" else "2"
    return value is None or value.startswith((prefix, f"+86139{d}", f"+86106{d}", f"+86400{d}"))


def _drafts(prefix: str, scenario: Scenario) -> list[EventDraft]:
    return [
        EventDraft(type="message.received", source_event_id=f"{prefix}{i}", occurred_at=T0 + timedelta(minutes=i),
                   identities=[Identity(type="phone" if t in _PHONE_BLOCKS else t, value=_value(prefix, t, n))
                               for t, n in idents],
                   traits={"name": f"{name}{i}"} if name else {})
        for i, (idents, name) in enumerate(scenario)
    ]


def _store(hub: Hub, drafts: list[EventDraft], *, batched: bool) -> None:
    groups = [drafts] if batched else [[d] for d in drafts]
    for group in groups:
        with hub.transaction() as session:
            store_drafts(hub, session, group, source="pos", source_id=None)


def _outcome(hub: Hub, prefix: str) -> dict[str, Any]:
    """What resolution decided for one prefix, with customer ids replaced by the events they hold."""
    with hub.sessions() as s:
        into = dict(s.execute(select(CustomerRow.id, CustomerRow.merged_into)).all())

        def final(cid: uuid.UUID) -> uuid.UUID:
            while into.get(cid) is not None:
                cid = into[cid]  # type: ignore[assignment]
            return cid

        rows = s.execute(select(EventRow.source_event_id, EventRow.customer_id)
                         .where(EventRow.source == "pos", EventRow.source_event_id.like(f"{prefix}%"))).all()
        members: dict[uuid.UUID, set[str]] = {}
        for sid, cid in rows:
            members.setdefault(final(cid), set()).add(sid[len(prefix):])
        label = {cid: ",".join(sorted(ids)) for cid, ids in members.items()}
        traits = {label[c.id]: {k: v["value"] for k, v in c.traits.items()}
                  for c in s.scalars(select(CustomerRow).where(CustomerRow.id.in_(list(label))))}
        idents = Counter((label.get(final(r.customer_id), "?"), r.type, r.shared)
                         for r in s.scalars(select(IdentityRow)) if _mine(prefix, r.value))
        history = Counter((h.action, h.reason) for h in s.scalars(select(HistoryRow))
                          if _mine(prefix, h.identity_value))
        merged = s.scalar(select(func.count()).select_from(EventRow).where(
            EventRow.type == "customer.merged", EventRow.customer_id.in_(list(label))))
    return {"partition": sorted(label.values()), "traits": traits, "identities": idents, "history": history,
            "merged_events": merged}


def _check_same(hub: Hub, scenario: Scenario) -> None:
    _store(hub, _drafts("a", scenario), batched=False)
    _store(hub, _drafts("b", scenario), batched=True)
    assert _outcome(hub, "b") == _outcome(hub, "a")


FIXED: Scenario = [
    ([("douyin_open_id", 1)], "张"),
    ([("xhs_user_id", 1)], "李"),
    ([("douyin_open_id", 1), ("phone", 1)], ""),           # attach
    ([("xhs_user_id", 1), ("phone", 1)], "王"),            # merge inside the batch
    ([("web_user_id", 1), ("phone", 1)], ""),
    ([("web_user_id", 2), ("phone", 1)], ""),              # web_user_id limit 1: refused, phone left out
    ([("email", 1)], "赵"),
    ([("email", 1), ("douyin_open_id", 1)], "钱"),         # a second merge into the same survivor
    ([("phone", 2), ("email", 2)], ""),
    ([("phone", 2)], "孙"),
]


def test_a_batch_decides_what_one_event_at_a_time_decides(quiet_hub: Hub) -> None:
    _check_same(quiet_hub, FIXED)
    outcome = _outcome(quiet_hub, "b")
    assert len(outcome["partition"]) == 3 and outcome["merged_events"] == 2
    assert outcome["history"][("merge_refused", "limit_exceeded:web_user_id")] == 1


SHARED: Scenario = [
    ([("phone", 1), ("landline", 1)], "张"),
    ([("email", 1), ("landline", 1)], "李"),                # the landline becomes shared, no merge
    ([("douyin_open_id", 1), ("landline", 1)], ""),        # a third holder
    ([("phone", 1), ("email", 1)], "王"),                   # merge: both held the landline, one row stays
    ([("landline", 1)], ""),                               # a weak line alone follows its latest holder
    ([("line400", 1), ("douyin_open_id", 1)], ""),         # 400 lines are always shared
    ([("line400", 1), ("xhs_user_id", 1)], "赵"),
    ([("xhs_user_id", 1), ("douyin_open_id", 1)], ""),     # merge: both hold the 400 line
]


def test_a_batch_decides_what_one_event_at_a_time_decides_on_shared_lines(quiet_hub: Hub) -> None:
    _check_same(quiet_hub, SHARED)
    outcome = _outcome(quiet_hub, "b")
    assert outcome["partition"] == ["0,1,3", "2,4,5,6,7"] and outcome["merged_events"] == 2
    assert outcome["history"][("merge_refused", "shared_line")] >= 2


idents = st.lists(st.tuples(st.sampled_from(TYPES), st.integers(0, 4)), min_size=1, max_size=3, unique=True)
scenarios = st.lists(st.tuples(idents, st.sampled_from(["", "甲", "乙"])), min_size=1, max_size=25)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario=scenarios)
def test_random_batches_decide_what_one_event_at_a_time_decides(tmp_path_factory: pytest.TempPathFactory,
                                                                 scenario: Scenario) -> None:
    hub = make_hub(make_settings(tmp_path_factory.mktemp("batch")), plugins="identity")
    try:
        _check_same(hub, scenario)
    finally:
        hub.engine.dispose()


def test_a_rolled_back_batch_leaves_no_identity_writes(quiet_hub: Hub) -> None:
    with pytest.raises(RuntimeError), quiet_hub.transaction() as session:
        store_drafts(quiet_hub, session, _drafts("a", FIXED), source="pos", source_id=None)
        raise RuntimeError("the worker died before commit")
    _store(quiet_hub, _drafts("b", FIXED[:1]), batched=True)  # the session factory carries nothing over
    with quiet_hub.sessions() as s:
        assert s.scalar(select(func.count()).select_from(CustomerRow)) == 1
        assert s.scalar(select(func.count()).select_from(HistoryRow)) == 0
        assert s.scalar(select(func.count()).select_from(EventRow)) == 1
