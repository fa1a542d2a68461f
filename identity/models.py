"""identity/'s tables: customers and the identifiers that point at them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, Timestamps, UUIDPk
from hub.schemas import utcnow


class CustomerRow(UUIDPk, Timestamps, Base):
    __tablename__ = "customers"

    traits: Mapped[dict[str, Any]] = mapped_column(default=dict)
    merged_into: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("customers.id"), index=True)
    last_activity_at: Mapped[datetime | None] = mapped_column()


class IdentityRow(UUIDPk, Base):
    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("type", "value"),)

    type: Mapped[str] = mapped_column(String(40))
    value: Mapped[str] = mapped_column(String(300))
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), index=True)
    source: Mapped[str | None] = mapped_column(String(64))
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
