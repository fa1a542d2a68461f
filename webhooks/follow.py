"""Messages follow their customer through merges and splits.

A message's `customer_id` decides two things: its place in the per-customer delivery order and the
`customer_id` its body carries (claim.py writes it into the event at send time). identity/ announces a
merge or a split with a `customer.merged` / `customer.split` event stored in the same transaction, so
re-pointing the messages there keeps both right: a message of the merged-away customer still waiting
(a disabled endpoint, a receiver retrying) joins the survivor's queue, ahead of `customer.merged`
(which occurs later), and goes out naming the survivor, as the event feed does. Delivered and failed
messages move too, so a replay names the customer as it is now.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hub.models import EventRow
from hub.schemas import UnifiedEvent
from webhooks.models import MessageRow

log = logging.getLogger(__name__)

MERGED, SPLIT = "customer.merged", "customer.split"


def follow_customer_change(session: Session, event: UnifiedEvent, endpoint_ids: Sequence[uuid.UUID]) -> int:
    """Re-point messages for a `customer.merged` or `customer.split` event; returns how many moved."""
    if event.type not in (MERGED, SPLIT) or not endpoint_ids:
        return 0
    props = event.properties or {}
    if event.type == MERGED:
        target, losers = _uuid(props.get("surviving_customer_id")), _uuids(props.get("merged_customer_ids"))
        if target is None or not losers:
            log.warning("customer.merged %s names no customers to follow: %r", event.id, props)
            return 0
        # The (endpoint_id, customer_id, …) index serves this: one probe per endpoint and loser.
        stmt = update(MessageRow).where(MessageRow.endpoint_id.in_(endpoint_ids), MessageRow.customer_id.in_(losers))
    else:
        target, original = _uuid(props.get("new_customer_id")), _uuid(props.get("customer_id"))
        if target is None or original is None:
            log.warning("customer.split %s names no customers to follow: %r", event.id, props)
            return 0
        # The split has already moved the events themselves; their messages go with them.
        moved = select(EventRow.id).where(EventRow.customer_id == target)
        stmt = update(MessageRow).where(MessageRow.endpoint_id.in_(endpoint_ids),
                                        MessageRow.customer_id == original, MessageRow.event_id.in_(moved))
    # Nothing in the transaction reads these rows again: no fetch of what moved (a long history made it cost).
    result: Any = session.execute(stmt.values(customer_id=target).execution_options(synchronize_session=False))
    return int(result.rowcount or 0)


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def _uuids(values: Any) -> list[uuid.UUID]:
    found = [_uuid(v) for v in values] if isinstance(values, list) else []
    return [v for v in found if v is not None]
