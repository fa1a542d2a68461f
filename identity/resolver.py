"""Identity resolution (contract §4): match, attach or merge, under the rules in identity.rules.

For one event:
1. Placeholders are dropped; person identifiers are split into strong ones and weak lines (400/800,
   fixed lines). Strong ones decide; weak ones match only when the event has nothing else.
2. The owners of the matching identifiers are locked (id order). If joining them would break a per-type
   limit or re-join customers an operator split, the event's lowest-priority identifier is left out of
   matching and the refusal recorded (`merge_refused`), Segment-style; repeat.
3. No owner: a new customer. Several: the oldest survives and the others are merged into it.
4. New identifiers are attached (claimed with INSERT … ON CONFLICT DO NOTHING, buffered and written with
   the batch by identity.pending: losing the race means a concurrent worker claimed it, so the whole
   transaction is retried). A weak line held by another customer becomes shared: both keep it and
   nothing is merged.
5. Account identifiers (uscc, erp_customer_code) go to identity.accounts: they never merge customers.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from hub.schemas import Identity, UnifiedEvent, utcnow
from identity import store
from identity.accounts import preload_accounts, resolve_account
from identity.merge import merge_into, repoint_views
from identity.models import CustomerRow
from identity.rules import Rules

__all__ = ["preload", "resolve"]

PERSON_KEY = "identity_person"  # batch cache: event id → its usable person identifiers


def preload(events: list[UnifiedEvent], session: Session, rules: Rules) -> None:
    """`events_prepared`: load every person identifier of the batch, and its owners, at once."""
    people = store.batch_cache(session).setdefault(PERSON_KEY, {})
    for event in events:
        people[event.id] = rules.person(event.identities)
    keys = [_key(i) for event in events if event.source != store.SOURCE for i in people[event.id]]
    if keys:
        store.preload(session, keys)
    account_keys = [_key(i) for event in events for i in rules.account(event.identities)]
    if account_keys:
        preload_accounts(session, account_keys)


@dataclass
class _Plan:
    active: list[Identity]
    owners: dict[tuple[str, str], uuid.UUID]
    refused: list[tuple[Identity, str, list[uuid.UUID]]] = field(default_factory=list)


def resolve(
    event: UnifiedEvent, session: Session, rules: Rules | None = None
) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    """(customer_id, account_id) for an event about to be stored; writes identity's tables only."""
    rules = rules or Rules()
    if event.source == store.SOURCE:
        owned = session.info.get(store.OWNER_KEY, {}).pop(event.source_event_id, None)
        if owned is not None:
            return owned  # type: ignore[no-any-return]
    known = store.batch_cache(session).get(PERSON_KEY, {}).get(event.id)
    person = rules.person(event.identities) if known is None else known
    accounts = rules.account(event.identities)
    # Our reads see what they need without a flush per event: new customers, claims, shared lines and
    # merges are buffered and written before anything reads those tables (identity.pending), and history,
    # traits, last_seen and memberships are written in bulk at commit (store.write_deferred).
    with session.no_autoflush:
        if person:
            customer_id: uuid.UUID | None = _resolve_person(session, event, person, rules)
        elif accounts:
            customer_id = None  # a company's event with no contact (contract §4: the only null customer_id)
        else:
            customer_id = _unidentified(session, event)
        account_id = resolve_account(session, event, accounts, customer_id) if accounts else None
    return customer_id, account_id


def _unidentified(session: Session, event: UnifiedEvent) -> uuid.UUID:
    """An event with no usable identifier (a masked call, a walk-in sale, only placeholders).

    It still belongs to someone: the customer of the event it was made from (`customer_hint`, followed
    through merges), else a customer of its own. That one holds no identifier, so nothing ever joins it.
    """
    now = utcnow()
    hinted = store.surviving(session, event.customer_id) if event.customer_id is not None else None
    if hinted is None:
        return store.new_customer(session, now, _with_activity(store.blank_customer(now), event)).id
    (customer,) = store.lock_customers(session, [hinted.id])
    _with_activity(customer, event).updated_at = now
    store.defer_activity(session, customer)
    return customer.id


def _key(ident: Identity) -> tuple[str, str]:
    return ident.type, ident.value


def _resolve_person(session: Session, event: UnifiedEvent, person: list[Identity], rules: Rules) -> uuid.UUID:
    rows = store.rows_for(session, person)
    strong = sorted((i for i in person if not rules.weak(i)), key=rules.rank)
    weak = [i for i in person if rules.weak(i)]
    if strong:
        owners = {_key(i): rows[_key(i)][0].customer_id for i in strong if rows[_key(i)]}
        # Lock every candidate before checking limits, so the counts cannot change under us.
        candidates = store.lock_customers(session, set(owners.values()))
        plan = _plan(session, _Plan(strong, owners), rules)
    else:
        plan = _weak_plan(weak, rows)
        candidates = store.lock_customers(session, set(plan.owners.values()))
    chosen = {plan.owners[_key(i)] for i in plan.active if _key(i) in plan.owners}
    locked = sorted((c for c in candidates if c.id in chosen), key=lambda c: (c.created_at, str(c.id)))
    now = utcnow()
    if locked:
        survivor = locked[0]
        for loser in locked[1:]:
            evidence = next((i for i in plan.active if plan.owners.get(_key(i)) == loser.id), None)
            reason = f"shared_identifier:{evidence.type}" if evidence else "shared_identifier"
            merge_into(session, survivor, loser, reason=reason, identity=evidence, event_id=event.id)
            repoint_views(rows, loser.id, survivor.id)
        created = False
    else:  # inserted with its traits and activity already set: no UPDATE right after the INSERT
        survivor = store.new_customer(session, now, _with_activity(store.blank_customer(now), event))
        created = True
    for ident, reason, involved in plan.refused:
        store.record(session, "merge_refused", reason, [survivor.id, *involved], ident, event.id)
    _attach_exclusive(session, survivor, plan.active if strong else [], rows, event, created)
    for ident in weak:
        _attach_weak(session, survivor, ident, rows[_key(ident)], event, rules, created)
    if not created:
        _with_activity(survivor, event).updated_at = now
        store.defer_activity(session, survivor)
    return survivor.id


def _with_activity(customer: CustomerRow, event: UnifiedEvent) -> CustomerRow:
    """The event's traits and time applied to the customer (identity's own events carry neither)."""
    if event.source != store.SOURCE:
        store.apply_traits(customer, event.traits, event.source, event.occurred_at, event.id)
        store.touch_activity(customer, event.occurred_at, event.source)
    return customer


def _plan(session: Session, plan: _Plan, rules: Rules) -> _Plan:
    """Drop the lowest-priority identifiers until joining their owners breaks no rule."""
    while len(plan.active) > 1:
        owners = list(dict.fromkeys(plan.owners[_key(i)] for i in plan.active if _key(i) in plan.owners))
        reason = _conflict(session, plan, owners, rules)
        if reason is None:
            break
        dropped = plan.active.pop()
        involved = owners + ([plan.owners[_key(dropped)]] if _key(dropped) in plan.owners else [])
        plan.refused.append((dropped, reason, involved))
    return plan


def _conflict(session: Session, plan: _Plan, owners: list[uuid.UUID], rules: Rules) -> str | None:
    if len(owners) > 1 and store.split_between(session, owners):
        return "split_previously"
    new = [i for i in plan.active if _key(i) not in plan.owners]
    if len(owners) < 2 and not new:
        return None  # matching one customer and adding nothing cannot break a limit
    counts = store.type_counts(session, owners) if owners else {}
    total: dict[str, int] = {}
    for per_type in counts.values():
        for type_, n in per_type.items():
            total[type_] = total.get(type_, 0) + n
    for ident in new:
        total[ident.type] = total.get(ident.type, 0) + 1
    for type_, n in sorted(total.items()):
        before = max((c.get(type_, 0) for c in counts.values()), default=0)
        if n > rules.limit(type_) and n > before:
            return f"limit_exceeded:{type_}"
    return None


def _weak_plan(weak: list[Identity], rows: dict[tuple[str, str], list[store.Held]]) -> _Plan:
    """Only shared-kind lines: follow the first one someone holds (its latest holder); never merge."""
    for ident in weak:
        holders = rows[_key(ident)]
        if holders:
            latest = max(holders, key=lambda r: r.last_seen)
            return _Plan(weak, {_key(ident): latest.customer_id})
    return _Plan(weak, {})


def _attach_exclusive(
    session: Session, customer: CustomerRow, idents: list[Identity],
    rows: dict[tuple[str, str], list[store.Held]], event: UnifiedEvent, created: bool,
) -> None:
    """Claim the new identifiers (losing a race to another worker is found when the claims are written)."""
    new = []
    for ident in idents:
        known = rows[_key(ident)]
        if known:  # rows of customers merged a moment ago point at `customer` (see repoint_views)
            _seen(session, [r for r in known if r.customer_id == customer.id], event)
        else:
            new.append(ident)
    store.claim(session, customer.id, new, event.source)
    if not created:
        for ident in new:
            store.record(session, "attach", f"seen_with_customer:{event.type}", [customer.id], ident, event.id)


def _attach_weak(
    session: Session, customer: CustomerRow, ident: Identity, rows: list[store.Held], event: UnifiedEvent,
    rules: Rules, created: bool,
) -> None:
    mine = [r for r in rows if r.customer_id == customer.id]
    if mine:  # every use counts, however soon after the last: an event with only this line follows its latest user
        now = utcnow()
        for row in mine:
            store.defer_seen(session, row, now)
        return
    others = sorted({r.customer_id for r in rows})
    if not others:
        _claim(session, customer, ident, event, shared=rules.always_shared(ident))
        if not created:  # as for any identifier: a line's next event may be routed by it alone
            store.record(session, "attach", f"seen_with_customer:{event.type}", [customer.id], ident, event.id)
        return
    store.share_line(session, ident.type, ident.value, rows)
    _claim(session, customer, ident, event, shared=True)
    store.record(session, "merge_refused", "shared_line", [customer.id, *others], ident, event.id)


def _claim(session: Session, customer: CustomerRow, ident: Identity, event: UnifiedEvent, *, shared: bool) -> None:
    store.claim(session, customer.id, [ident], event.source, shared=shared)


def _seen(session: Session, rows: list[store.Held], event: UnifiedEvent) -> None:
    """A strong identifier's `last_seen`, written at most once a second: nothing is routed by it."""
    now = utcnow()
    for row in rows:
        if (now - row.last_seen).total_seconds() > 1:
            store.defer_seen(session, row, now)
