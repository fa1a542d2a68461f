"""Accounts (companies): account identifiers link a customer to an account and never merge customers.

Two contacts of one company stay two customers who are both members of that company's account.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.errors import RetryableError
from hub.schemas import Identity, UnifiedEvent, utcnow
from identity import store
from identity.models import AccountIdentityRow, AccountMemberRow, AccountRow

__all__ = ["account_name", "resolve_account"]

PROFILE_EVENT = "company.profile.updated"
_NAME_KEYS = ("company_name", "company", "customer_name", "account_name")


def account_name(event: UnifiedEvent) -> str | None:
    """The company name an event carries, if any (ERP `customer_name`, form `company` …)."""
    if event.type == PROFILE_EVENT and isinstance(event.properties.get("name"), str):
        return str(event.properties["name"]).strip() or None
    for bag in (event.traits, event.properties):
        for key in _NAME_KEYS:
            value = bag.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
    return None


def resolve_account(
    session: Session, event: UnifiedEvent, identities: list[Identity], customer_id: uuid.UUID | None
) -> uuid.UUID:
    """The account these identifiers point at (the oldest, if they point at several), created if new."""
    keys = [(i.type, i.value) for i in identities]
    rows = list(session.scalars(
        select(AccountIdentityRow).where(store.by_type_and_value(AccountIdentityRow, keys))
    ))
    held = {(r.type, r.value) for r in rows}
    now = utcnow()
    if rows:
        candidates = session.scalars(select(AccountRow).where(AccountRow.id.in_({r.account_id for r in rows})))
        account = min(candidates, key=lambda a: (a.created_at, str(a.id)))
    else:
        account = store.insert_attached(session, AccountRow(id=uuid.uuid4(), created_at=now, updated_at=now,
                                                            name=None, profile=None))
    for row in rows:
        if (now - row.last_seen).total_seconds() > 1:
            row.last_seen = now
    for ident in identities:
        if (ident.type, ident.value) in held:
            continue
        values: dict[str, Any] = {"id": uuid.uuid4(), "type": ident.type, "value": ident.value,
                                  "account_id": account.id, "source": event.source, "first_seen": now, "last_seen": now}
        if not store.insert_ignore(session, AccountIdentityRow, values):
            raise RetryableError(f"{ident.type} claimed by a concurrent worker; retrying")
    _update(account, event)
    if customer_id is not None:
        store.insert_ignore(session, AccountMemberRow, {"account_id": account.id, "customer_id": customer_id,
                                                        "since": now})
    return account.id


def _update(account: AccountRow, event: UnifiedEvent) -> None:
    name = account_name(event)
    if event.type == PROFILE_EVENT:
        account.profile = dict(event.properties)
        account.name = name or account.name
    elif name and not account.name:
        account.name = name
