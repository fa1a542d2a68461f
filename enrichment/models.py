"""enrichment/'s tables: asr_jobs (one row per recording sent to Tencent ASR) and company_profiles (registry cache).

An ASR job is keyed by the hub's own UUID, never by Tencent's TaskId: a TaskId is
only valid for 24 hours and may repeat across days (platforms.md §4.1), so it is
stored with the date it was issued on and is not unique.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, Timestamps, UUIDPk
from hub.schemas import utcnow

JOB_QUEUED = "queued"
JOB_SUBMITTED = "submitted"
JOB_DONE = "done"
JOB_FAILED = "failed"
JOB_QUARANTINED = "quarantined"
JOB_STATES = (JOB_QUEUED, JOB_SUBMITTED, JOB_DONE, JOB_FAILED, JOB_QUARANTINED)


def new_callback_token() -> str:
    """An unguessable path segment: the ASR callback is unsigned, so the URL itself is the secret."""
    return secrets.token_urlsafe(32)


class AsrJob(UUIDPk, Timestamps, Base):
    """One recording → transcript → `call.summarized` job."""

    __tablename__ = "asr_jobs"
    __table_args__ = (
        Index("ix_asr_jobs_state_next_poll", "state", "next_poll_at"),
        Index("ix_asr_jobs_task_day", "task_id", "submitted_on"),
    )

    call_event_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    customer_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    source_id: Mapped[uuid.UUID | None] = mapped_column()  # the call's source (channel_roles, lexicons)
    recording_url: Mapped[str] = mapped_column(Text)
    direction: Mapped[str | None] = mapped_column(String(20))  # "inbound" | "outbound"
    channel_roles: Mapped[list[Any] | None] = mapped_column()  # the call's own [role of ch 0, role of ch 1]
    engine: Mapped[str] = mapped_column(String(40), default="8k_zh")
    channel_num: Mapped[int] = mapped_column(default=2)
    task_id: Mapped[int | None] = mapped_column(BigInteger)  # Tencent TaskId (uint64; NOT unique)
    submitted_on: Mapped[date | None] = mapped_column()
    submitted_at: Mapped[datetime | None] = mapped_column()
    state: Mapped[str] = mapped_column(String(20), default=JOB_QUEUED)
    attempts: Mapped[int] = mapped_column(default=0)
    polls: Mapped[int] = mapped_column(default=0)
    next_poll_at: Mapped[datetime | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)
    failure_code: Mapped[int | None] = mapped_column()  # 10000–10007 from the callback, when known
    callback_token: Mapped[str] = mapped_column(String(64), unique=True, default=new_callback_token)
    callback_at: Mapped[datetime | None] = mapped_column()
    summary_event_id: Mapped[uuid.UUID | None] = mapped_column()


class CompanyProfile(Base):
    """The last registry answer for one USCC (lookups are paid per call, so they are cached)."""

    __tablename__ = "company_profiles"

    uscc: Mapped[str] = mapped_column(String(18), primary_key=True)
    account_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    properties: Mapped[dict[str, Any] | None] = mapped_column()
    fetched_at: Mapped[datetime | None] = mapped_column()
    requested_at: Mapped[datetime | None] = mapped_column()  # a lookup is queued (debounces bursts)
    source_id: Mapped[uuid.UUID | None] = mapped_column()  # the credit_registry source that answered
    error: Mapped[str | None] = mapped_column(Text)
    # Lookups in a row that failed transiently (registry down, throttled); the sweep retries with a backoff.
    # server_default as migration 0006 adds it, so a create_all database is the migrated one.
    lookup_failures: Mapped[int] = mapped_column(default=0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
