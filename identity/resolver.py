"""Minimal resolver: exact match on (type, value), else a new customer. Replaced by full resolution."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.schemas import PERSON_IDENTITY_TYPES, UnifiedEvent, utcnow
from identity.models import CustomerRow, IdentityRow


def resolve(event: UnifiedEvent, session: Session) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    person = [i for i in event.identities if i.type in PERSON_IDENTITY_TYPES]
    if not person:
        return None, None
    customer_id: uuid.UUID | None = None
    for ident in person:
        row = session.scalars(
            select(IdentityRow).where(IdentityRow.type == ident.type, IdentityRow.value == ident.value)
        ).first()
        if row is not None:
            customer_id = row.customer_id
            break
    now = utcnow()
    if customer_id is None:
        customer = CustomerRow(last_activity_at=event.occurred_at)
        session.add(customer)
        session.flush()
        customer_id = customer.id
    for ident in person:
        existing = session.scalars(
            select(IdentityRow).where(IdentityRow.type == ident.type, IdentityRow.value == ident.value)
        ).first()
        if existing is None:
            session.add(IdentityRow(type=ident.type, value=ident.value, customer_id=customer_id, source=event.source,
                                    first_seen=now, last_seen=now))
        else:
            existing.last_seen = now
    session.flush()
    return customer_id, None
