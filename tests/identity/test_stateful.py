"""Stateful property test: events, replays and operator splits, interleaved, against a model of docs/identity.md.

The model is the rules as the docs state them (strong identifiers decide, the oldest customer survives, weak
lines never link anybody, per-type limits and earlier splits demote the event's lowest-priority identifier,
a split takes the named identities and the events that came only through them). After every step the hub's
tables and API must agree with it: who holds what, who was merged into whom, where every event belongs, and
one history row for every decision. Identifiers come from a small pool so that collisions are common.

`CRMHUB_STATEFUL_EXAMPLES` / `CRMHUB_STATEFUL_STEPS` run it longer than CI does (e.g. 150 and 30, with
`--hypothesis-seed`). The regressions it found are plain tests in test_resolution.py (a line's latest user,
a line attached to a known customer).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import func, select

from hub.models import EventRow
from hub.pipeline import store_drafts
from hub.runtime import Hub, set_hub
from hub.schemas import EventDraft, Identity
from identity.models import CustomerRow, HistoryRow, IdentityRow
from identity.rules import PRIORITY
from tests.conftest import make_hub, make_settings
from tests.helpers import ADMIN, client_for
from tests.identity.conftest import T0

Key = tuple[str, str]
LIMITS = {"web_user_id": 1, "phone": 2, "email": 2}  # small, so that limits are hit often
DEFAULT_LIMIT = 5


@dataclass(frozen=True)
class Pooled:
    """One identifier of the pool: as a platform sends it, as ingest normalises it, and what it is."""

    type: str
    raw: str
    value: str
    kind: str  # strong | weak | shared (400/800: shared from the start) | placeholder | account


POOL = (
    Pooled("web_user_id", "u1", "u1", "strong"),
    Pooled("web_user_id", "u2", "u2", "strong"),
    Pooled("web_anonymous_id", "a1", "a1", "strong"),
    Pooled("email", "X@example.com", "x@example.com", "strong"),
    Pooled("email", "y@example.com", "y@example.com", "strong"),
    Pooled("email", "z@example.com", "z@example.com", "strong"),
    Pooled("phone", "139 1234 5678", "+8613912345678", "strong"),
    Pooled("phone", "13987654321", "+8613987654321", "strong"),
    Pooled("phone", "+86 137-1234-5679", "+8613712345679", "strong"),
    Pooled("phone", "4008123123", "+864008123123", "shared"),
    Pooled("phone", "010-62345678", "+861062345678", "weak"),
    Pooled("phone", "13333333333", "+8613333333333", "placeholder"),
    Pooled("douyin_open_id", "d1", "d1", "strong"),
    Pooled("pos_member_id", "m1", "m1", "strong"),
    Pooled("uscc", "91350100M000100Y43", "91350100M000100Y43", "account"),
)
BY_KEY = {(p.type, p.value): p for p in POOL}
PERSON = [p for p in POOL if p.kind in ("strong", "weak", "shared")]


def limit(type_: str) -> int:
    return LIMITS.get(type_, DEFAULT_LIMIT)


def rank(key: Key) -> int:
    return PRIORITY.index(key[0])


@dataclass
class Cust:
    id: uuid.UUID
    order: tuple[datetime, str]  # (created_at, id): the oldest survives a merge
    strong: set[Key] = field(default_factory=set)
    weak: set[Key] = field(default_factory=set)
    name: tuple[datetime, uuid.UUID] | None = None  # the `name` trait: when, and the event it came from
    used: dict[Key, int] = field(default_factory=dict)  # weak line → when this customer last used it (a tick)


@dataclass
class Model:
    """The rules of docs/identity.md over customers keyed by the hub's own ids (learnt as they are created)."""

    live: dict[uuid.UUID, Cust] = field(default_factory=dict)
    merged_into: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)
    splits: set[frozenset[uuid.UUID]] = field(default_factory=set)
    events: dict[str, tuple[uuid.UUID | None, frozenset[Key]]] = field(default_factory=dict)  # stored customer id
    times: dict[str, tuple[uuid.UUID, datetime]] = field(default_factory=dict)  # event's row id and occurred_at
    history: Counter[tuple[str, str]] = field(default_factory=Counter)
    split_count: int = 0
    tick: int = 0

    def owner(self, key: Key) -> uuid.UUID | None:
        return next((c.id for c in self.live.values() if key in c.strong), None)

    def holders(self, key: Key) -> set[uuid.UUID]:
        return {c.id for c in self.live.values() if key in c.weak}

    def surviving(self, cid: uuid.UUID) -> uuid.UUID:
        return self.merged_into.get(cid, cid)

    def conflict(self, active: list[Key], owners: dict[Key, uuid.UUID]) -> str | None:
        involved = list(dict.fromkeys(owners[k] for k in active if k in owners))
        if len(involved) > 1 and any(frozenset(p) in self.splits for p in itertools.combinations(involved, 2)):
            return "split_previously"
        new = [k for k in active if k not in owners]
        if len(involved) < 2 and not new:
            return None
        per = [Counter(t for t, _ in self.live[c].strong) for c in involved]
        total = sum(per, Counter()) + Counter(t for t, _ in new)
        for type_, n in sorted(total.items()):
            if n > limit(type_) and n > max((c[type_] for c in per), default=0):
                return f"limit_exceeded:{type_}"
        return None

    def merge(self, survivor: uuid.UUID, loser: uuid.UUID) -> None:
        gone = self.live.pop(loser)
        mine = self.live[survivor].name
        if gone.name is not None and (mine is None or mine[0] < gone.name[0]):
            self.live[survivor].name = gone.name
        self.live[survivor].strong |= gone.strong
        self.live[survivor].weak |= gone.weak
        for key, at in gone.used.items():  # the merged customer used the line when either of them did
            self.live[survivor].used[key] = max(at, self.live[survivor].used.get(key, at))
        for old, into in list(self.merged_into.items()):
            if into == loser:
                self.merged_into[old] = survivor
        self.merged_into[loser] = survivor
        pairs = set()
        for pair in self.splits:
            if loser in pair:
                (other,) = pair - {loser}
                if other != survivor:
                    pairs.add(frozenset({survivor, other}))
            else:
                pairs.add(pair)
        self.splits = pairs
        self.history["merge", "shared_identifier"] += 1

    def attach_weak(self, cid: uuid.UUID, key: Key, created: bool) -> None:
        others = self.holders(key) - {cid}
        if key not in self.live[cid].weak and others:
            self.history["merge_refused", "shared_line"] += 1
        elif key not in self.live[cid].weak and not created:
            self.history["attach", "seen_with_customer"] += 1
        self.live[cid].weak.add(key)
        self.tick += 1
        self.live[cid].used[key] = self.tick

    def last_user(self, key: Key) -> uuid.UUID | None:
        """docs/identity.md: a line's events (and lookups) go to the customer who used it last."""
        holders = [c for c in self.live.values() if key in c.weak]
        return max(holders, key=lambda c: c.used[key]).id if holders else None


class IdentityMachine(RuleBasedStateMachine):
    """Events (one per transaction or several per batch), replays and splits against one fresh SQLite hub."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="idsm-"))
        limits = ",".join(f"{t}={n}" for t, n in LIMITS.items())
        self.hub: Hub = make_hub(make_settings(self.tmp, identity_limits=limits), plugins="identity")
        self.client: TestClient = client_for(self.hub)
        self.model = Model()
        self.drafts: dict[str, tuple[EventDraft, str]] = {}
        self.n = 0

    def teardown(self) -> None:
        self.client.close()
        self.hub.engine.dispose()
        set_hub(None)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------------ rules

    EVENTS = st.lists(st.tuples(st.lists(st.sampled_from(POOL), max_size=4), st.integers(0, 20)), min_size=1,
                      max_size=4)

    @initialize(events=EVENTS, source=st.just("pos"), batched=st.booleans(), echo=st.just(False))
    def start(self, events: list[tuple[list[Pooled], int]], source: str, batched: bool, echo: bool) -> None:
        """Something to split or replay from the first step on (no step is spent on an unmet precondition)."""
        self.ingest(events, source, batched, echo)

    @rule(events=EVENTS, source=st.sampled_from(["pos", "douyin"]), batched=st.booleans(), echo=st.booleans())
    def ingest(self, events: list[tuple[list[Pooled], int]], source: str, batched: bool, echo: bool) -> None:
        """Events carrying identifiers of the pool; their times are drawn too, so some arrive late. A batch may
        carry one message twice (`echo`): the second is a duplicate."""
        drafts = [self._draft(idents, minute) for idents, minute in events]
        groups = [drafts + drafts[:1] if echo else drafts] if batched else [[d] for d in drafts]
        for group in groups:
            with self.hub.transaction() as session:
                _, dupes = store_drafts(self.hub, session, group, source=source, source_id=None)
            assert dupes == len(group) - len({d.source_event_id for d in group})
        for d in drafts:
            self.drafts[d.source_event_id] = (d, source)
            self._expect(d, source)

    @precondition(lambda self: self.drafts)
    @rule(data=st.data(), batched=st.booleans())
    def replay(self, data: st.DataObject, batched: bool) -> None:
        """The same platform message again (alone, or in a batch with itself): nothing new is stored."""
        seid = data.draw(st.sampled_from(sorted(self.drafts)))
        d, source = self.drafts[seid]
        before = self._counts()
        with self.hub.transaction() as session:
            stored, dupes = store_drafts(self.hub, session, [d, d] if batched else [d], source=source, source_id=None)
        assert (stored, dupes) == (0, 2 if batched else 1)
        assert self._counts() == before

    @precondition(lambda self: any(len(c.strong | c.weak) >= 2 for c in self.model.live.values()))
    @rule(data=st.data(), via_old_id=st.booleans())
    def split(self, data: st.DataObject, via_old_id: bool) -> None:
        splittable = sorted((c for c in self.model.live.values() if len(c.strong | c.weak) >= 2), key=lambda c: c.order)
        cust = data.draw(st.sampled_from(splittable))
        held = sorted(cust.strong | cust.weak)
        wanted = data.draw(st.lists(st.sampled_from(held), min_size=1, max_size=len(held) - 1, unique=True))
        merged_away = sorted(old for old, into in self.model.merged_into.items() if into == cust.id)
        target = merged_away[0] if via_old_id and merged_away else cust.id  # a merged-away id names its survivor
        body = {"identities": [{"type": t, "value": BY_KEY[(t, v)].raw} for t, v in wanted], "reason": "two people"}
        resp = self.client.post(f"/v1/customers/{target}/split", json=body, headers=ADMIN)
        assert resp.status_code == 201, resp.text
        new_id = uuid.UUID(resp.json()["id"])
        assert {(i["type"], i["value"]) for i in resp.json()["identities"]} == set(wanted)
        self._apply_split(cust, new_id, set(wanted))

    @precondition(lambda self: self.model.live)
    @rule(data=st.data(), takes_all=st.booleans())
    def refused_split(self, data: st.DataObject, takes_all: bool) -> None:
        """A split that names every identity, or one the customer does not hold, is a 422 and changes nothing."""
        cust = data.draw(st.sampled_from(sorted(self.model.live.values(), key=lambda c: c.order)))
        held = sorted(cust.strong | cust.weak)
        if takes_all and held:
            wanted, code = held, "split_takes_all"
        else:
            others = [(p.type, p.value) for p in PERSON if (p.type, p.value) not in held]
            wanted, code = [data.draw(st.sampled_from(others))], "identity_not_on_customer"
        before = self._counts()
        body = {"identities": [{"type": t, "value": v} for t, v in wanted]}
        resp = self.client.post(f"/v1/customers/{cust.id}/split", json=body, headers=ADMIN)
        assert resp.status_code == 422 and resp.json()["error"]["code"] == code, resp.text
        assert self._counts() == before

    # ------------------------------------------------------------------ the model

    def _draft(self, idents: list[Pooled], minute: int) -> EventDraft:
        self.n += 1
        return EventDraft(type="message.received", source_event_id=f"s{self.n}",
                          occurred_at=T0 + timedelta(minutes=minute),
                          identities=[Identity(type=p.type, value=p.raw) for p in idents],
                          traits={"name": f"n{self.n}"})

    def _stored(self, seid: str, source: str) -> EventRow:
        with self.hub.sessions() as s:
            return s.scalars(select(EventRow).where(EventRow.source == source,
                                                    EventRow.source_event_id == seid)).one()

    def _created(self, cid: uuid.UUID) -> tuple[datetime, str]:
        with self.hub.sessions() as s:
            row = s.get(CustomerRow, cid)
            assert row is not None
            return row.created_at, str(cid)

    def _new(self, actual: uuid.UUID | None) -> uuid.UUID:
        assert actual is not None and actual not in self.model.live and actual not in self.model.merged_into, actual
        self.model.live[actual] = Cust(actual, self._created(actual))
        return actual

    def _expect(self, d: EventDraft, source: str) -> None:
        """What docs/identity.md says this event does; checks the customer the hub chose and applies it."""
        m = self.model
        seen = [BY_KEY[(i.type, _norm(i))] for i in d.identities]
        keys = frozenset((p.type, p.value) for p in seen)
        row = self._stored(d.source_event_id, source)
        actual = row.customer_id
        m.times[d.source_event_id] = (row.id, d.occurred_at)
        strong = sorted(dict.fromkeys((p.type, p.value) for p in seen if p.kind == "strong"), key=rank)
        weak = list(dict.fromkeys((p.type, p.value) for p in seen if p.kind in ("weak", "shared")))
        if not strong and not weak:
            if any(p.kind == "account" for p in seen):
                assert actual is None  # a company's event with no contact
            else:
                self._learn(self._new(actual), d.source_event_id)  # no usable identifier: a customer of its own
            m.events[d.source_event_id] = (actual, keys)
            return
        if strong:
            owners = {k: o for k in strong if (o := m.owner(k)) is not None}
            active = list(strong)
            refused: list[str] = []
            while len(active) > 1:
                reason = m.conflict(active, owners)
                if reason is None:
                    break
                active.pop()
                refused.append(reason)
            chosen = sorted({owners[k] for k in active if k in owners}, key=lambda c: m.live[c].order)
            if chosen:
                survivor, created = chosen[0], False
                assert actual == survivor, (d.identities, actual, survivor)
                for loser in chosen[1:]:
                    m.merge(survivor, loser)
            else:
                survivor, created = self._new(actual), True
            for reason in refused:
                m.history["merge_refused", reason.split(":")[0]] += 1
                event(f"merge refused: {reason.split(':')[0]}")
            if len(chosen) > 1:
                event("merge")
            for k in active:
                if k not in owners:
                    m.live[survivor].strong.add(k)
                    if not created:
                        m.history["attach", "seen_with_customer"] += 1
        else:
            line = next((k for k in weak if m.holders(k)), None)
            if line is not None:
                survivor, created = m.last_user(line), False
                assert actual == survivor, (d.identities, actual, survivor, m.holders(line))
            else:
                survivor, created = self._new(actual), True
        for k in weak:
            m.attach_weak(survivor, k, created)
        self._learn(survivor, d.source_event_id)
        m.events[d.source_event_id] = (actual, keys)

    def _learn(self, cid: uuid.UUID, seid: str) -> None:
        """The event's `name` trait wins unless the customer's is newer (an older event arriving late)."""
        cust, (row_id, at) = self.model.live[cid], self.model.times[seid]
        if cust.name is None or cust.name[0] <= at:
            cust.name = (at, row_id)

    def _apply_split(self, cust: Cust, new_id: uuid.UUID, wanted: set[Key]) -> None:
        m = self.model
        keep_strong = (cust.strong - wanted)
        family = {cust.id, *(old for old, into in m.merged_into.items() if into == cust.id)}
        moved = set()
        for seid, (stored, keys) in m.events.items():
            if stored in family and keys & wanted and not keys & keep_strong:
                m.events[seid] = (new_id, keys)
                moved.add(m.times[seid][0])
        new = m.live[self._new(new_id)]
        if cust.name is not None and cust.name[1] in moved:  # traits learnt from moved events move with them
            new.name, cust.name = cust.name, None
        new.strong, new.weak = cust.strong & wanted, cust.weak & wanted
        new.used = {k: at for k, at in cust.used.items() if k in wanted}
        cust.used = {k: at for k, at in cust.used.items() if k not in wanted}
        cust.strong -= wanted
        cust.weak -= wanted
        m.splits.add(frozenset({cust.id, new_id}))
        event(f"split moving {'some' if moved else 'no'} events")
        m.split_count += 1
        m.history["split", "two people"] += len(wanted)

    def _counts(self) -> tuple[int, ...]:
        with self.hub.sessions() as s:
            return tuple(s.scalar(select(func.count()).select_from(t)) or 0
                         for t in (EventRow, CustomerRow, IdentityRow, HistoryRow))

    # ------------------------------------------------------------------ invariants

    @invariant()
    def tables_match_the_model(self) -> None:
        m = self.model
        with self.hub.sessions() as s:
            customers = {c.id: c for c in s.scalars(select(CustomerRow))}
            rows = list(s.scalars(select(IdentityRow)))
            history = list(s.scalars(select(HistoryRow)))
            events = list(s.scalars(select(EventRow)))
        live = {cid for cid, c in customers.items() if c.merged_into is None}
        assert live == set(m.live)
        # Merged-away ids point straight at their survivor (chains flattened).
        assert {cid: c.merged_into for cid, c in customers.items() if c.merged_into is not None} == m.merged_into
        held: dict[uuid.UUID, set[Key]] = {cid: set() for cid in live}
        for r in rows:
            assert r.customer_id in live, (r.type, r.value)
            held[r.customer_id].add((r.type, r.value))
            kind = BY_KEY[(r.type, r.value)].kind
            many = sum(1 for c in m.live.values() if (r.type, r.value) in c.weak) > 1
            # Strong identifiers are never shared; a line held by several is (a merge may leave one holder of a
            # line that stays marked shared: harmless, since weak lines never link anybody).
            assert r.shared if kind == "shared" or many else (kind == "weak" or not r.shared), (r.type, r.value)
        assert held == {cid: c.strong | c.weak for cid, c in m.live.items()}
        # Exclusive identifiers: one holder each, and no customer over a per-type limit.
        exclusive = Counter((r.type, r.value) for r in rows if not r.shared)
        assert all(n == 1 for n in exclusive.values())
        for c in m.live.values():
            assert all(n <= limit(t) for t, n in Counter(t for t, _ in c.strong).items()), c
        # Split customers are never merged again.
        for pair in m.splits:
            assert len(pair) == 2 and pair <= live
        # Every decision has its history row; every merge and split its event.
        got = Counter((h.action, h.reason.split(":")[0]) for h in history)
        assert got == m.history, (got, m.history)
        merge_events = [e for e in events if e.type == "customer.merged"]
        assert len(merge_events) == len(m.merged_into)
        assert {uuid.UUID(e.data["properties"]["merged_customer_ids"][0]) for e in merge_events} == set(m.merged_into)
        split_events = {e.id for e in events if e.type == "customer.split"}
        assert len(split_events) == m.split_count
        assert {h.event_id for h in history if h.action == "split"} == split_events  # each names its evidence
        # Each entry names its evidence: the event (carrying the identity) that linked, refused or attached.
        by_id = {e.id: e for e in events}
        for h in history:
            evidence = by_id[h.event_id]
            idents = {(i["type"], i["value"]) for i in evidence.data["identities"]}
            if h.action == "split":
                assert evidence.type == "customer.split"
                idents = {(i["type"], i["value"]) for i in evidence.data["properties"]["identities"]}
            assert (h.identity_type, h.identity_value) in idents, (h.action, h.reason)
            if h.action == "merge":
                survivor, loser = (uuid.UUID(c) for c in h.customer_ids)
                assert m.surviving(loser) == m.surviving(survivor)
        # Every event is where the model says, and names a live customer once merges are resolved.
        stored = {e.source_event_id: e for e in events if e.source != "identity"}
        assert set(stored) == set(m.events)
        activity: dict[uuid.UUID, datetime] = {}
        for seid, (cid, _) in m.events.items():
            assert stored[seid].customer_id == cid, seid
            assert cid is None or m.surviving(cid) in live
            if cid is not None:
                at = m.times[seid][1]
                activity[m.surviving(cid)] = max(at, activity.get(m.surviving(cid), at))
        # Traits: the latest value wins and follows merges and splits; activity is the newest event's time.
        for cid, c in m.live.items():
            name = (customers[cid].traits or {}).get("name")
            assert (name["event_id"] if name else None) == (str(c.name[1]) if c.name else None), cid
            last = customers[cid].last_activity_at
            assert (last.replace(tzinfo=T0.tzinfo) if last else None) == activity.get(cid), cid

    @invariant()
    def api_agrees(self) -> None:
        m = self.model
        for p in PERSON:
            found = self.client.get("/v1/customers", params={"identity": f"{p.type}:{p.raw}"}, headers=ADMIN)
            items = found.json()["items"]
            if p.kind == "strong":
                holder = m.owner((p.type, p.value))
            else:  # a shared line: the customer who used it last
                holder = m.last_user((p.type, p.value))
            assert [uuid.UUID(c["id"]) for c in items] == ([holder] if holder else []), p
        for old, into in m.merged_into.items():
            got = self.client.get(f"/v1/customers/{old}", headers=ADMIN).json()
            assert got["id"] == str(into) and str(old) in got["merged_from"]
        feed = self.client.get("/v1/events", params={"limit": 500}, headers=ADMIN).json()["items"]
        for e in feed:
            if e["source"] != "identity":
                cid, _ = m.events[e["source_event_id"]]
                assert e["customer_id"] == (str(m.surviving(cid)) if cid else None)
        # Each customer's journey holds exactly the events the model gives it (merged-away customers' included).
        for cid in m.live:
            journey = self.client.get(f"/v1/customers/{cid}/events", params={"limit": 500}, headers=ADMIN).json()
            got = {e["source_event_id"] for e in journey["items"] if e["source"] != "identity"}
            assert got == {seid for seid, (c, _) in m.events.items() if c is not None and m.surviving(c) == cid}


def _norm(ident: Identity) -> str:
    return next(p.value for p in POOL if p.type == ident.type and p.raw == ident.value)


IdentityMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("CRMHUB_STATEFUL_EXAMPLES", "5")),
    stateful_step_count=int(os.environ.get("CRMHUB_STATEFUL_STEPS", "10")),
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_identity_state_machine = IdentityMachine.TestCase
