"""The kernel's tables: sources, source_cursors, raw_events, events, quarantine."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint, text
from sqlalchemy.event import listen
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.schema import DDL

from hub.db import Base, BigIntPK, BigIntRef, Timestamps, UUIDPk
from hub.ids import new_id
from hub.schemas import utcnow


class SourceRow(UUIDPk, Timestamps, Base):
    """An enabled connector instance. `config_sealed` is the whole config, encrypted."""

    __tablename__ = "sources"

    connector: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    enabled: Mapped[bool] = mapped_column(default=True)
    config_sealed: Mapped[str] = mapped_column(Text)
    config_public: Mapped[dict[str, Any]] = mapped_column(default=dict)


class SourceCursor(Base):
    """Keyed durable state per source: pull cursors, last-seen versions (see ParseContext.state)."""

    __tablename__ = "source_cursors"

    source_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


RAW_PENDING = "pending"
RAW_HANDLED = "handled"
RAW_FAILED = "failed"
RAW_QUARANTINED = "quarantined"


class RawEvent(Base):
    """An inbound request exactly as received. Unique on (source, dedup_key): redeliveries collapse."""

    __tablename__ = "raw_events"
    __table_args__ = (
        UniqueConstraint("source_id", "dedup_key"),
        Index("ix_raw_events_status_received", "status", "received_at"),
        Index("ix_raw_events_source_received", "source_id", "received_at"),  # source health, per source
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    source_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    dedup_key: Mapped[str] = mapped_column(String(300))
    request: Mapped[dict[str, Any]] = mapped_column()
    body: Mapped[bytes] = mapped_column(LargeBinary)
    event_count: Mapped[int] = mapped_column(default=1)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(20), default=RAW_PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    handled_at: Mapped[datetime | None] = mapped_column()
    events_stored: Mapped[int] = mapped_column(default=0)
    events_duplicate: Mapped[int] = mapped_column(default=0)
    # Runs started on this row (counted only once it is older than the requeue delay) that never finished: their
    # process died. See hub.pipeline.process_raw; server_default as migration 0012 adds it.
    unfinished_runs: Mapped[int] = mapped_column(default=0, server_default="0")


class EventRow(Base):
    """A stored UnifiedEvent. `seq` orders the feed; `data` is the event as JSON.

    `txid` (PostgreSQL only; NULL on SQLite) is the id of the transaction that stored the row. On
    PostgreSQL `seq` values are handed out before commit, so a later `seq` can be visible while an earlier
    one is still uncommitted; the feed orders by (txid, seq) and only reads rows of transactions older than
    every running one (identity/api_events.py). SQLite runs one writer at a time, so `seq` alone is safe.
    The pipeline inserts `txid_current()`, and it is also the column default (migration 0008): a PostgreSQL
    row with NULL would never appear in the feed.
    """

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("source_id", "source_event_id"),
        Index("ix_events_customer_occurred", "customer_id", "occurred_at"),
        Index("ix_events_type_seq", "type", "seq"),
        # Partial: SQLite never sets txid, so there the index stays empty and costs inserts nothing.
        Index("ix_events_txid_seq", "txid", "seq", postgresql_where=text("txid IS NOT NULL"),
              sqlite_where=text("txid IS NOT NULL")),
    )

    seq: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
    type: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(64))
    source_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"))
    source_event_id: Mapped[str] = mapped_column(String(300))
    raw_event_id: Mapped[int | None] = mapped_column(BigIntRef, index=True)
    occurred_at: Mapped[datetime] = mapped_column()
    received_at: Mapped[datetime] = mapped_column()
    stored_at: Mapped[datetime] = mapped_column(default=utcnow)
    # No index of its own: ix_events_customer_occurred serves every lookup by customer, and a second one
    # cost every stored event another insert at a random place in an index (migration 0003).
    customer_id: Mapped[uuid.UUID | None] = mapped_column()
    account_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    data: Mapped[dict[str, Any]] = mapped_column()
    txid: Mapped[int | None] = mapped_column(BigInteger)


# The default only PostgreSQL has (SQLite has no txid_current()): the same as migration 0008, for create_all.
listen(EventRow.__table__, "after_create", DDL(
    "ALTER TABLE events ALTER COLUMN txid SET DEFAULT txid_current()").execute_if(dialect="postgresql"))


class QuarantineRow(UUIDPk, Base):
    """Input kept aside with the reason it could not be used (never silently dropped)."""

    __tablename__ = "quarantine"
    __table_args__ = (Index("ix_quarantine_source_item", "source_id", "item_key"),)

    source_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"), index=True)
    raw_event_id: Mapped[int | None] = mapped_column(BigIntRef, index=True)
    reason: Mapped[str] = mapped_column(String(100), index=True)
    detail: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # The item's stable id when its connector gives one (`ParseContext.quarantine(key=…)`): set aside once per
    # source, however many requests bring it back.
    item_key: Mapped[str | None] = mapped_column(String(300))


class InboundRejection(Base):
    """A refused inbound request (bad signature, bad body): counted in source health, body not kept."""

    __tablename__ = "inbound_rejections"
    __table_args__ = (Index("ix_inbound_rejections_source_at", "source_id", "at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    source_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    status_code: Mapped[int] = mapped_column()
    code: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)
