"""Which event types exist, so a subscription to a misspelt one is flagged instead of silently never firing.

Contract §4 lists the types and says more may be added, so an unknown type is a warning, not an error: it is
accepted when the hub has stored such an event, when a connector namespaces it (`douyin.<event>`), or when
it is simply new. The warning only says that no event of that type exists yet, with the closest known type.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.models import EventRow

DOCUMENTED_TYPES = frozenset({
    "message.received", "message.sent", "conversation.opened", "lead.submitted", "contact.added",
    "contact.updated", "contact.removed", "call.completed", "call.summarized", "purchase.completed",
    "order.created", "order.updated", "company.profile.updated", "record.imported", "track", "identify",
    "customer.merged", "customer.split", "customer.silent",
    # the hub's own, beyond the contract's list
    "call.recording_available", "quality.report", "endpoint.disabled", "page", "screen", "group", "alias",
    "purchase.refunded",  # POS refunds (docs/connectors/pos.md)
})
# Connectors that pass unknown platform events through under their own prefix (docs/connectors/*.md).
OPEN_NAMESPACES = ("douyin.", "wecom.", "xiaohongshu.", "callcenter.", "web.")


def event_type_warnings(session: Session, event_types: Iterable[str]) -> list[dict[str, Any]]:
    """One `{field, message}` per subscribed type that names nothing known or stored."""
    out = []
    for wanted in dict.fromkeys(event_types):
        if wanted == "*" or wanted in DOCUMENTED_TYPES or wanted.startswith(OPEN_NAMESPACES):
            continue
        if session.scalar(select(EventRow.seq).where(EventRow.type == wanted).limit(1)) is not None:
            continue
        near = difflib.get_close_matches(wanted, sorted(DOCUMENTED_TYPES), n=1, cutoff=0.75)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        out.append({"field": "event_types",
                    "message": f"no {wanted!r} event has been stored and the hub documents no such type{hint}"})
    return out
