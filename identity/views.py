"""Read models for the API: Customer, Account and history entries (contract §3), built from identity's rows."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.errors import InvalidRequest, NotFound
from hub.identifiers import normalize_identity
from hub.schemas import (
    ACCOUNT_IDENTITY_TYPES,
    IDENTITY_TYPES,
    AccountRef,
    Customer,
    CustomerIdentity,
    Identity,
    Schema,
)
from identity import store
from identity.models import AccountIdentityRow, AccountMemberRow, AccountRow, CustomerRow, HistoryRow, IdentityRow

__all__ = [
    "AccountView",
    "CustomerView",
    "HistoryEntry",
    "TraitSource",
    "account_view",
    "checked_identity",
    "customer_view",
    "find_customer",
    "history_entry",
    "parse_identity",
]


class TraitSource(Schema):
    source: str | None = None
    at: datetime | None = None
    event_id: uuid.UUID | None = None


class CustomerView(Customer):
    """The contract's Customer; `traits` holds values, `trait_sources` where and when each came from."""

    trait_sources: dict[str, TraitSource] = Field(default_factory=dict)
    last_source: str | None = None


class AccountView(Schema):
    id: uuid.UUID
    name: str | None = None
    identities: list[CustomerIdentity] = Field(default_factory=list)
    members: list[uuid.UUID] = Field(default_factory=list)
    profile: dict[str, Any] | None = None


class HistoryEntry(Schema):
    action: str
    reason: str
    at: datetime
    customer_ids: list[uuid.UUID]
    identity: Identity | None = None
    event_id: uuid.UUID | None = None


def parse_identity(text: str) -> Identity:
    """`type:value` from a query string, normalised exactly as ingest normalises it."""
    type_, sep, value = text.partition(":")
    if not sep or type_.strip() not in IDENTITY_TYPES:
        raise InvalidRequest(f"identity must be <type>:<value> with a known type, got {text[:80]!r}",
                             code="invalid_identity", details=[{"field": "identity", "message": "bad format"}])
    return checked_identity(type_, value, type_field="identity", value_field="identity")


def checked_identity(type_: str, value: str, *, type_field: str, value_field: str) -> Identity:
    """A type and value normalised as ingest does; a 422 `invalid_identity` names the field that is wrong (in a
    JSON body its path, `identities.0.value`, as a validation error would)."""
    type_ = type_.strip()
    if type_ not in IDENTITY_TYPES:
        raise InvalidRequest(f"unknown identity type {type_[:80]!r}", code="invalid_identity",
                             details=[{"field": type_field, "message": "unknown type"}])
    result = normalize_identity(type_, value)
    if result.value is None:
        raise InvalidRequest(f"{type_} value is not usable: {result.reason}", code="invalid_identity",
                             details=[{"field": value_field, "message": result.reason}])
    return Identity(type=type_, value=result.value)


def find_customer(session: Session, ident: Identity) -> CustomerRow | None:
    """The customer holding an identifier (for a shared line: the one who used it last)."""
    stmt = select(IdentityRow).where(IdentityRow.type == ident.type, IdentityRow.value == ident.value)
    rows = list(session.scalars(stmt))
    if not rows:
        return None
    latest = max(rows, key=lambda r: r.last_seen)
    return store.surviving(session, latest.customer_id)


def get_customer(session: Session, customer_id: uuid.UUID) -> CustomerRow:
    row = store.surviving(session, customer_id)
    if row is None:
        raise NotFound(f"no customer {customer_id}", code="customer_not_found")
    return row


def customer_view(session: Session, row: CustomerRow) -> CustomerView:
    idents = session.scalars(
        select(IdentityRow).where(IdentityRow.customer_id == row.id).order_by(IdentityRow.first_seen, IdentityRow.type)
    )
    accounts = []
    for account in session.scalars(
        select(AccountRow).join(AccountMemberRow, AccountMemberRow.account_id == AccountRow.id)
        .where(AccountMemberRow.customer_id == row.id).order_by(AccountRow.created_at)
    ):
        uscc = session.scalars(select(AccountIdentityRow.value).where(
            AccountIdentityRow.account_id == account.id, AccountIdentityRow.type == "uscc")).first()
        accounts.append(AccountRef(id=account.id, name=account.name, uscc=uscc))
    traits = row.traits or {}
    return CustomerView(
        id=row.id, created_at=row.created_at, updated_at=row.updated_at,
        identities=[CustomerIdentity(type=i.type, value=i.value, source=i.source, first_seen=i.first_seen,
                                     last_seen=i.last_seen) for i in idents],
        traits={k: v.get("value") for k, v in traits.items() if isinstance(v, dict)},
        trait_sources={k: TraitSource(source=v.get("source"), at=v.get("at"), event_id=v.get("event_id"))
                       for k, v in traits.items() if isinstance(v, dict)},
        accounts=accounts, merged_from=store.merged_from(session, row.id),
        last_activity_at=row.last_activity_at, last_source=row.last_source,
    )


def find_account(session: Session, ident: Identity) -> AccountRow | None:
    if ident.type not in ACCOUNT_IDENTITY_TYPES:
        raise InvalidRequest(f"{ident.type} is not an account identifier", code="invalid_identity",
                             details=[{"field": "identity", "message": "use uscc or erp_customer_code"}])
    stmt = select(AccountIdentityRow.account_id).where(
        AccountIdentityRow.type == ident.type, AccountIdentityRow.value == ident.value)
    account_id = session.scalars(stmt).first()
    return None if account_id is None else session.get(AccountRow, account_id)


def account_view(session: Session, row: AccountRow) -> AccountView:
    idents = session.scalars(select(AccountIdentityRow).where(AccountIdentityRow.account_id == row.id)
                             .order_by(AccountIdentityRow.first_seen))
    members = session.scalars(select(AccountMemberRow.customer_id).where(AccountMemberRow.account_id == row.id)
                              .order_by(AccountMemberRow.since))
    return AccountView(
        id=row.id, name=row.name, profile=row.profile, members=list(members),
        identities=[CustomerIdentity(type=i.type, value=i.value, source=i.source, first_seen=i.first_seen,
                                     last_seen=i.last_seen) for i in idents],
    )


def history_entry(row: HistoryRow) -> HistoryEntry:
    ident = Identity(type=row.identity_type, value=row.identity_value or "") if row.identity_type else None
    return HistoryEntry(action=row.action, reason=row.reason, at=row.at, identity=ident, event_id=row.event_id,
                        customer_ids=[uuid.UUID(c) for c in row.customer_ids])
