"""identity/'s tables: customers, their identifiers, accounts (companies) and the history of every decision.

Why these shapes:
- `identities` is unique on (type, value, customer_id) plus a partial unique index on (type, value) for
  rows that are not `shared`: an ordinary identifier belongs to exactly one customer (so concurrent
  workers race on that index, and the loser retries), while a shared line (a 400 number, a household
  landline) may be held by several customers without linking them.
- a merged-away customer keeps its row with `merged_into` pointing at the survivor, so old ids resolve.
- history rows list every customer involved; `identity_history_customers` indexes them for lookups.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, Timestamps, UUIDPk
from hub.schemas import utcnow

__all__ = [
    "AccountIdentityRow",
    "AccountMemberRow",
    "AccountRow",
    "CustomerRow",
    "HistoryCustomerRow",
    "HistoryRow",
    "IdentityRow",
    "SplitPairRow",
]


class CustomerRow(UUIDPk, Timestamps, Base):
    """A person. `traits` maps name → {"value", "source", "at", "event_id"} (latest non-empty wins)."""

    __tablename__ = "customers"

    traits: Mapped[dict[str, Any]] = mapped_column(default=dict)
    merged_into: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("customers.id"), index=True)
    last_activity_at: Mapped[datetime | None] = mapped_column(index=True)
    last_source: Mapped[str | None] = mapped_column(String(64))
    silent_notified_at: Mapped[datetime | None] = mapped_column()


class IdentityRow(UUIDPk, Base):
    __tablename__ = "identities"
    __table_args__ = (
        UniqueConstraint("type", "value", "customer_id"),
        Index(
            "uq_identities_exclusive", "type", "value", unique=True,
            sqlite_where=text("shared = 0"), postgresql_where=text("NOT shared"),
        ),
    )

    type: Mapped[str] = mapped_column(String(40))
    value: Mapped[str] = mapped_column(String(300))
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), index=True)
    shared: Mapped[bool] = mapped_column(default=False)
    source: Mapped[str | None] = mapped_column(String(64))
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)


class AccountRow(UUIDPk, Timestamps, Base):
    """A company. `profile` is the latest `company.profile.updated` properties."""

    __tablename__ = "accounts"

    name: Mapped[str | None] = mapped_column(String(300))
    profile: Mapped[dict[str, Any] | None] = mapped_column()


class AccountIdentityRow(UUIDPk, Base):
    __tablename__ = "account_identities"
    __table_args__ = (UniqueConstraint("type", "value"),)

    type: Mapped[str] = mapped_column(String(40))
    value: Mapped[str] = mapped_column(String(300))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    source: Mapped[str | None] = mapped_column(String(64))
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)


class AccountMemberRow(Base):
    __tablename__ = "account_members"

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), primary_key=True, index=True)
    since: Mapped[datetime] = mapped_column(default=utcnow)


class HistoryRow(UUIDPk, Base):
    """One attach / merge / merge_refused / split decision with its evidence."""

    __tablename__ = "identity_history"
    __table_args__ = (Index("ix_identity_history_at", "at"),)

    action: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    customer_ids: Mapped[list[Any]] = mapped_column()
    identity_type: Mapped[str | None] = mapped_column(String(40))
    identity_value: Mapped[str | None] = mapped_column(String(300))
    event_id: Mapped[uuid.UUID | None] = mapped_column()


class HistoryCustomerRow(Base):
    __tablename__ = "identity_history_customers"

    # No foreign key: the two rows are inserted in one flush, in no guaranteed order.
    history_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(primary_key=True, index=True)


class SplitPairRow(Base):
    """Two customers an operator split apart: the resolver never merges them again."""

    __tablename__ = "customer_splits"

    customer_a: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    customer_b: Mapped[uuid.UUID] = mapped_column(primary_key=True, index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
