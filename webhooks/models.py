"""webhooks/'s tables: endpoints (CRM core subscriptions), messages (one per event × endpoint), attempts.

A message's id is its Standard Webhooks `webhook-id`: stable across retries, replays and
resends, so a receiver can deduplicate on it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, BigIntPK, BigIntRef, Timestamps, UUIDPk
from hub.schemas import utcnow

MSG_PENDING = "pending"
MSG_DELIVERED = "delivered"
MSG_FAILED = "failed"
MESSAGE_STATUSES = (MSG_PENDING, MSG_DELIVERED, MSG_FAILED)


class EndpointRow(UUIDPk, Timestamps, Base):
    """A subscription. Secrets are sealed with the hub's SecretBox; the previous one lives on during rotation."""

    __tablename__ = "endpoints"

    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    event_types: Mapped[list[Any]] = mapped_column(default=lambda: ["*"])
    enabled: Mapped[bool] = mapped_column(default=True)
    secret_sealed: Mapped[str] = mapped_column(Text)
    previous_secret_sealed: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column()
    rate_limit: Mapped[float | None] = mapped_column()  # messages per second; None = unthrottled
    throttle_next_at: Mapped[datetime | None] = mapped_column()  # the next free send slot when throttled
    failing_since: Mapped[datetime | None] = mapped_column()  # first failure after the last success
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    disabled_at: Mapped[datetime | None] = mapped_column()

    def subscribes(self, event_type: str) -> bool:
        types = self.event_types or []
        return "*" in types or event_type in types


class MessageRow(UUIDPk, Base):
    """One event to one endpoint. Deliverable when no earlier pending message of the same customer exists."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_order", "endpoint_id", "customer_id", "status", "occurred_at", "event_seq"),
        Index("ix_messages_due", "status", "next_attempt_at"),
        # claim.py's lease: one endpoint's due messages in due order, without a sort over every pending row
        Index("ix_messages_endpoint_due", "endpoint_id", "status", "next_attempt_at"),
        Index("ix_messages_endpoint_created", "endpoint_id", "created_at"),
    )

    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[uuid.UUID] = mapped_column()
    event_seq: Mapped[int] = mapped_column(BigIntRef, default=0)
    event_type: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[uuid.UUID | None] = mapped_column()
    occurred_at: Mapped[datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default=MSG_PENDING)
    attempt_count: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column()  # a worker is sending it until then
    last_status_code: Mapped[int | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()


class AttemptRow(Base):
    """One HTTP attempt: when, outcome, latency, and an excerpt of what the receiver said."""

    __tablename__ = "attempts"
    __table_args__ = (
        Index("ix_attempts_endpoint_at", "endpoint_id", "at"),
        # The newest success or failure of an endpoint, and the failures after it, in one short range (migration 0010):
        # health's last_success_at / consecutive_failures and retention's kept rows read no more than that.
        Index("ix_attempts_endpoint_success_at", "endpoint_id", "success", "at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    message_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    success: Mapped[bool] = mapped_column(default=False)
    status_code: Mapped[int | None] = mapped_column()
    latency_ms: Mapped[float | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)
    response_excerpt: Mapped[str | None] = mapped_column(Text)
