"""Accounts (companies): account identifiers link a customer to an account and never merge customers.

Two contacts of one company stay two customers who are both members of that company's account.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.errors import RetryableError
from hub.ids import new_id
from hub.schemas import Identity, UnifiedEvent, utcnow
from identity import sql, store
from identity.models import AccountIdentityRow, AccountRow

__all__ = ["account_name", "preload_accounts", "resolve_account"]

PROFILE_EVENT = "company.profile.updated"
_NAME_KEYS = ("company_name", "company", "customer_name", "account_name")
NAME_MAX = 300  # accounts.name is VARCHAR(300)


def account_name(event: UnifiedEvent) -> str | None:
    """The company name an event carries, if any (ERP `customer_name`, form `company` …).

    Cut to NAME_MAX characters: a longer one (an ERP sending a whole address as the name) failed the event's
    request on PostgreSQL; the event keeps it whole in its properties.
    """
    if event.type == PROFILE_EVENT and isinstance(event.properties.get("name"), str):
        return str(event.properties["name"]).strip()[:NAME_MAX] or None
    for bag in (event.traits, event.properties):
        for key in _NAME_KEYS:
            value = bag.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()[:NAME_MAX]
    return None


def resolve_account(
    session: Session, event: UnifiedEvent, identities: list[Identity], customer_id: uuid.UUID | None
) -> uuid.UUID:
    """The account these identifiers point at (the oldest, if they point at several), created if new."""
    keys = [(i.type, i.value) for i in identities]
    found = _rows(session, keys)
    rows = [row for key in keys if (row := found.get(key)) is not None]
    now = utcnow()
    if rows:
        candidates = [a for a in (session.get(AccountRow, aid) for aid in {r.account_id for r in rows}) if a]
        account = min(candidates, key=lambda a: (a.created_at, str(a.id)))
    else:
        account = sql.insert_attached(session, AccountRow(id=new_id(), created_at=now, updated_at=now,
                                                          name=None, profile=None))
        store.keep_alive(session, account)
    for row in rows:
        if (now - row.last_seen).total_seconds() > 1:
            row.last_seen = now
    for ident in identities:
        if (ident.type, ident.value) in found:
            continue
        values: dict[str, Any] = {"id": new_id(), "type": ident.type, "value": ident.value,
                                  "account_id": account.id, "source": event.source, "first_seen": now, "last_seen": now}
        inserted = sql.insert_ignore(session, AccountIdentityRow, values)
        _cache(session).pop((ident.type, ident.value), None)
        if not inserted:
            raise RetryableError(f"{ident.type} claimed by a concurrent worker; retrying")
    _update(account, event)
    if customer_id is not None:
        store.defer_membership(session, account.id, customer_id, now)
    return account.id


def preload_accounts(session: Session, keys: list[tuple[str, str]]) -> None:
    """`events_prepared`: a batch's account identifiers and their accounts, in two queries."""
    cache = store.batch_cache(session).setdefault(ROWS_KEY, {})
    loaded = _load(session, [k for k in dict.fromkeys(keys) if k not in cache])
    cache.update(loaded)
    ids = sorted({r.account_id for r in loaded.values() if r is not None})
    for i in range(0, len(ids), 400):
        for account in session.scalars(select(AccountRow).where(AccountRow.id.in_(ids[i : i + 400]))):
            store.keep_alive(session, account)


ROWS_KEY = "identity_account_rows"


def _cache(session: Session) -> dict[tuple[str, str], AccountIdentityRow | None]:
    return store.batch_cache(session).get(ROWS_KEY, {})  # type: ignore[no-any-return]


def _rows(session: Session, keys: list[tuple[str, str]]) -> dict[tuple[str, str], AccountIdentityRow]:
    """The rows holding these identifiers (account identifiers are unique), from the batch's preload if there."""
    cache = _cache(session)  # a throwaway dict outside a batch
    cache.update(_load(session, [k for k in keys if k not in cache]))
    return {k: row for k in keys if (row := cache.get(k)) is not None}


def _load(session: Session, keys: list[tuple[str, str]]) -> dict[tuple[str, str], AccountIdentityRow | None]:
    out: dict[tuple[str, str], AccountIdentityRow | None] = dict.fromkeys(keys)
    for i in range(0, len(keys), 400):
        stmt, params = sql.by_type_and_value(_ACCOUNT_IDENTITIES, AccountIdentityRow, keys[i : i + 400])
        for row in session.scalars(stmt, params):
            out[(row.type, row.value)] = row
    return out


_ACCOUNT_IDENTITIES = select(AccountIdentityRow)


def _update(account: AccountRow, event: UnifiedEvent) -> None:
    name = account_name(event)
    if event.type == PROFILE_EVENT:
        account.profile = dict(event.properties)
        account.name = name or account.name
    elif name and not account.name:
        account.name = name
