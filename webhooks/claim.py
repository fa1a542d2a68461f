"""Claiming a batch of due messages for one endpoint in one short transaction.

A message is claimable when it is pending, due, not leased (or its lease ran out: a worker
died after claiming it) and no earlier pending message of the same customer to the same
endpoint exists, so only the head of each customer's queue can go. One UPDATE … RETURNING
leases up to `limit` of them (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so concurrent
workers take disjoint batches). A throttled endpoint gets one message per send slot.
"""

from __future__ import annotations

import functools
import json
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, exists, or_, select, update
from sqlalchemy.orm import Session

from hub.errors import SecretUnreadable
from hub.models import EventRow
from hub.runtime import Hub
from hub.schemas import utcnow
from webhooks.models import MSG_FAILED, MSG_PENDING, EndpointRow, MessageRow
from webhooks.signing import Signer, SigningError

BATCH = 32
LEASE_S = 60.0
DUE_SLACK_S = 0.5
SIGNER_CACHE_MAX = 1024


@dataclass(frozen=True)
class Claimed:
    message_id: uuid.UUID
    attempt_count: int
    next_attempt_at: datetime
    lease_until: datetime
    body: str


@dataclass(frozen=True)
class Batch:
    endpoint_id: uuid.UUID
    url: str
    signer: Signer | None  # None: the endpoint's secret cannot be read, and `problem` says why
    messages: list[Claimed]
    problem: str | None = None


@dataclass(frozen=True)
class Wait:
    """Nothing was claimed: why, and (throttled) when the next send slot opens."""

    reason: str
    retry_in: float = 0.0


def claim(hub: Hub, endpoint_id: uuid.UUID, *, limit: int = BATCH) -> Batch | Wait:
    now = utcnow()
    with hub.transaction() as session:
        endpoint = session.execute(_ENDPOINT, {"endpoint_id": endpoint_id}).first()
        if endpoint is None or not endpoint.enabled:
            return Wait("missing" if endpoint is None else "endpoint_disabled")
        lease_until = now + timedelta(seconds=LEASE_S)
        throttled = bool(endpoint.rate_limit and endpoint.rate_limit > 0)
        params = {"b_endpoint": endpoint_id, "b_now": now, "b_due_by": now + timedelta(seconds=DUE_SLACK_S),
                  "b_lease": lease_until}
        leased = session.execute(_lease(1 if throttled else limit), params).all()
        if not leased:
            return Wait("idle")
        if throttled:
            wait = _throttle_wait(session, endpoint, now)
            if wait > 0:
                session.rollback()  # give the lease back
                return Wait("throttled", wait)
        data = _event_data(session, [row.event_id for row in leased])
        _fail_orphans(session, [row.id for row in leased if row.event_id not in data], now)
    messages = [Claimed(row.id, row.attempt_count, row.next_attempt_at, lease_until,
                        _body(row.event_type, data[row.event_id], row.customer_id))
                for row in leased if row.event_id in data]
    try:
        return Batch(endpoint_id, endpoint.url, _signer(hub, endpoint, now), messages)
    except (SecretUnreadable, SigningError) as exc:
        # Recorded as failed attempts (delivery.attempt): raising here left the batch leased, retried and
        # never attempted, forever, while the endpoint's health said `healthy`.
        return Batch(endpoint_id, endpoint.url, None, messages, f"the endpoint secret cannot be used: {exc}")


_ENDPOINTS = EndpointRow.__table__
_MESSAGES = MessageRow.__table__
_ENDPOINT = select(_ENDPOINTS.c.id, _ENDPOINTS.c.url, _ENDPOINTS.c.enabled, _ENDPOINTS.c.rate_limit,
                   _ENDPOINTS.c.throttle_next_at, _ENDPOINTS.c.secret_sealed, _ENDPOINTS.c.previous_secret_sealed,
                   _ENDPOINTS.c.previous_secret_expires_at).where(_ENDPOINTS.c.id == bindparam("endpoint_id"))


@functools.cache
def _lease(limit: int) -> Any:
    """UPDATE … RETURNING that leases up to `limit` claimable messages (built once, so it compiles once)."""
    cand, earlier = _MESSAGES.alias("cand"), _MESSAGES.alias("earlier")
    # OFFSET 0 keeps PostgreSQL from turning this into an anti-join over every pending row: as a
    # correlated subplan it is one index probe per candidate, and the scan stops at `limit` heads.
    blocked = exists(select(earlier.c.id).where(
        earlier.c.endpoint_id == cand.c.endpoint_id, earlier.c.customer_id == cand.c.customer_id,
        earlier.c.status == MSG_PENDING, earlier.c.id != cand.c.id,
        or_(earlier.c.occurred_at < cand.c.occurred_at,
            and_(earlier.c.occurred_at == cand.c.occurred_at, earlier.c.event_seq < cand.c.event_seq)),
    ).offset(0))
    picked = (
        select(cand.c.id)
        .where(cand.c.endpoint_id == bindparam("b_endpoint"), cand.c.status == MSG_PENDING,
               cand.c.next_attempt_at <= bindparam("b_due_by"),
               or_(cand.c.lease_until.is_(None), cand.c.lease_until < bindparam("b_now")), ~blocked)
        .order_by(cand.c.next_attempt_at).limit(limit).with_for_update(skip_locked=True, of=cand)
    )
    m = _MESSAGES.c
    return (update(_MESSAGES).where(m.id.in_(picked)).values(lease_until=bindparam("b_lease"))
            .returning(m.id, m.event_id, m.event_type, m.customer_id, m.attempt_count, m.next_attempt_at))


def _throttle_wait(session: Session, endpoint: Any, now: datetime) -> float:
    """Reserve the endpoint's next send slot (compare-and-swap, so it holds across workers)."""
    old = endpoint.throttle_next_at
    if old is not None and old > now:
        return float((old - now).total_seconds())
    new = now + timedelta(seconds=1.0 / endpoint.rate_limit)
    cond = EndpointRow.throttle_next_at.is_(None) if old is None else EndpointRow.throttle_next_at == old
    swapped = session.execute(
        update(EndpointRow).where(EndpointRow.id == endpoint.id, cond).values(throttle_next_at=new)
        .execution_options(synchronize_session=False)
    ).rowcount
    return 0.0 if swapped else 1.0 / endpoint.rate_limit


def _event_data(session: Session, event_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    rows = session.execute(select(EventRow.id, EventRow.data).where(EventRow.id.in_(event_ids)))
    return {event_id: data for event_id, data in rows if data is not None}


def _fail_orphans(session: Session, message_ids: list[uuid.UUID], now: datetime) -> None:
    if message_ids:
        session.execute(update(MessageRow).where(MessageRow.id.in_(message_ids))
                        .values(status=MSG_FAILED, last_error="event deleted", finished_at=now, lease_until=None)
                        .execution_options(synchronize_session=False))


def _body(event_type: str, data: dict[str, Any], customer_id: uuid.UUID | None) -> str:
    """The message's customer, not the one stored with the event: a merge or split since re-pointed it (follow.py)."""
    if customer_id is not None and data.get("customer_id") != str(customer_id):
        data = {**data, "customer_id": str(customer_id)}
    return json.dumps({"type": event_type, "timestamp": data.get("occurred_at"), "data": data},
                      ensure_ascii=False, separators=(",", ":"))


# ---------------------------------------------------------------- signing keys, decrypted once

_signers: dict[tuple[str, ...], Signer] = {}
_signers_lock = threading.Lock()


def _signer(hub: Hub, endpoint: Any, now: datetime) -> Signer:
    """Keyed by the sealed secrets themselves: a rotation or new secret is a new key, so nothing goes stale."""
    sealed: tuple[str, ...] = (endpoint.secret_sealed,)
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret_sealed and expires is not None and expires > now:
        sealed += (endpoint.previous_secret_sealed,)
    with _signers_lock:
        signer = _signers.get(sealed)
    if signer is None:
        signer = Signer([hub.box.open_str(s) for s in sealed])
        with _signers_lock:
            if len(_signers) >= SIGNER_CACHE_MAX:
                _signers.clear()
            _signers[sealed] = signer
    return signer
