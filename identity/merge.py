"""Merging two customers: the oldest survives; identifiers, memberships, traits and activity move to it."""

from __future__ import annotations

import uuid

from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from hub.schemas import EventDraft, Identity, utcnow
from identity.models import CustomerRow, SplitPairRow
from identity.pending import add_merge
from identity.sql import insert_ignore
from identity.store import (
    COUNTS_KEY,
    Held,
    batch_cache,
    defer_seen,
    emit_owned,
    merge_traits,
    move_deferred_memberships,
    record,
    row_cache,
    touch_activity,
)

__all__ = ["merge_into", "repoint_views"]


def merge_into(
    session: Session,
    survivor: CustomerRow,
    loser: CustomerRow,
    *,
    reason: str,
    identity: Identity | None,
    event_id: uuid.UUID | None,
) -> None:
    """Fold `loser` into `survivor` (both locked): identities, memberships, traits, activity, history.

    The rows move with set-based statements written with the batch (identity.pending); the batch's
    preload and counts are updated here to say what those statements will have done.
    """
    _merge_counts(session, survivor.id, loser.id)
    cache = row_cache(session)
    if cache is not None:
        for row in repoint_views(cache, loser.id, survivor.id):  # a use the loser's row had not written yet
            defer_seen(session, row, row.last_seen)
    add_merge(session, loser.id, survivor.id)
    move_deferred_memberships(session, loser.id, survivor.id)
    merge_traits(survivor, loser)
    if loser.last_activity_at is not None:
        touch_activity(survivor, loser.last_activity_at, loser.last_source or "")
    # Written by the merge's statements (identity.pending), in order with the re-pointing of customers merged
    # into the loser; an ORM flush after them would undo that re-pointing for a merge earlier in the batch.
    set_committed_value(loser, "merged_into", survivor.id)
    _inherit_splits(session, survivor.id, loser.id)
    record(session, "merge", reason, [survivor.id, loser.id], identity, event_id)
    draft = EventDraft(
        type="customer.merged", source_event_id=f"merged:{loser.id}", occurred_at=utcnow(),
        properties={
            "surviving_customer_id": str(survivor.id), "merged_customer_ids": [str(loser.id)], "reason": reason,
            "identity": identity.model_dump() if identity else None, "event_id": str(event_id) if event_id else None,
        },
    )
    emit_owned(session, draft, survivor.id)


def repoint_views(
    views_by_key: dict[tuple[str, str], list[Held]], loser: uuid.UUID, survivor: uuid.UUID
) -> list[Held]:
    """Rows of the loser now belong to the survivor; where both held an identifier (a shared line), the
    loser's row is dropped, as the merge deletes it, and the survivor's keeps the later `last_seen` of the two
    (a line's next event follows its latest user). For the batch's preload and for an event's own rows;
    returns the survivor's rows whose `last_seen` moved."""
    later = []
    for key, views in views_by_key.items():
        if not any(v.customer_id == loser for v in views):
            continue
        mine = next((v for v in views if v.customer_id == survivor), None)
        if mine is not None:
            latest = max(v.last_seen for v in views if v.customer_id in (loser, survivor))
            if latest > mine.last_seen:
                mine.last_seen = latest
                later.append(mine)
        views_by_key[key] = [v for v in views if not (mine is not None and v.customer_id == loser)]
        for view in views_by_key[key]:
            if view.customer_id == loser:
                view.customer_id = survivor
    return later


def _merge_counts(session: Session, survivor: uuid.UUID, loser: uuid.UUID) -> None:
    """The survivor's exclusive identifiers per type become the sum of both (an exclusive identifier has one
    holder, so none is counted twice); unknown counts are read from the database when next needed."""
    counts = batch_cache(session).get(COUNTS_KEY)
    if counts is None:
        return
    theirs = counts.pop(loser, None)
    if theirs is None or survivor not in counts:
        counts.pop(survivor, None)
        return
    for type_, n in theirs.items():
        counts[survivor][type_] = counts[survivor].get(type_, 0) + n


def _inherit_splits(session: Session, survivor: uuid.UUID, loser: uuid.UUID) -> None:
    """A customer split from the loser stays apart from the survivor too."""
    for pair in list(session.scalars(_SPLITS_OF, {"customer": loser})):
        other = pair.customer_b if pair.customer_a == loser else pair.customer_a
        session.delete(pair)
        if other != survivor:
            insert_ignore(session, SplitPairRow, {"customer_a": survivor, "customer_b": other, "at": pair.at})


_SPLITS_OF = select(SplitPairRow).where(  # built once: it runs at every merge
    or_(SplitPairRow.customer_a == bindparam("customer"), SplitPairRow.customer_b == bindparam("customer"))
)
