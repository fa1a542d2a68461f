"""Outbound delivery: one message per (event, endpoint), signed, sent, recorded, retried.

Three short steps per attempt, so no transaction is open while the network is used:
`_claim` (lease the message if it is due, not held back by an earlier message of the
same customer, and within the endpoint's throttle), `_send` (SSRF re-check, then one
POST with no redirects), `_record` (the attempt row, the message's next state, the
endpoint's failure streak). Every step is idempotent on the message id, and the
periodic `sweep` re-enqueues anything due, so a lost countdown loses nothing.
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from hub import metrics
from hub.errors import RetryableError
from hub.models import EventRow
from hub.runtime import Hub, get_hub
from hub.schemas import EventDraft, UnifiedEvent, utcnow
from hub.tasks import enqueue, enqueue_after_commit, task
from webhooks import sender
from webhooks.models import MSG_DELIVERED, MSG_FAILED, MSG_PENDING, AttemptRow, EndpointRow, MessageRow

log = logging.getLogger(__name__)

DELIVER_TASK = "webhooks.delivery.deliver"
SWEEP_TASK = "webhooks.delivery.sweep"
SWEEP_EVERY_S = 30.0
SWEEP_GRACE_S = 10.0
SWEEP_LIMIT = 2000
LEASE_S = 60.0
DUE_SLACK_S = 0.5
JITTER = 0.2
MAX_RETRY_AFTER_S = 86_400.0


# ---------------------------------------------------------------- creating messages


def create_messages(hub: Hub, event: UnifiedEvent, session: Session) -> int:
    """`event_stored`: one pending message per enabled endpoint subscribed to the event's type."""
    rows = session.scalars(select(EndpointRow).where(EndpointRow.enabled.is_(True))).all()
    wanted = [e for e in rows if e.subscribes(event.type)]
    if not wanted:
        return 0
    seq = session.scalar(select(EventRow.seq).where(EventRow.id == event.id)) or 0
    first_delay = _delays(hub)[0]
    now = utcnow()
    for endpoint in wanted:
        message = MessageRow(
            id=uuid.uuid4(), endpoint_id=endpoint.id, event_id=event.id, event_seq=seq, event_type=event.type,
            customer_id=event.customer_id, occurred_at=event.occurred_at, status=MSG_PENDING,
            next_attempt_at=now + timedelta(seconds=first_delay), created_at=now,
        )
        session.add(message)
        enqueue_after_commit(session, DELIVER_TASK, str(message.id), countdown=first_delay or None)
    return len(wanted)


def _delays(hub: Hub) -> list[float]:
    return hub.settings.retry_delays or [0.0]


# ---------------------------------------------------------------- the task


@task(DELIVER_TASK, queue="deliver", max_retries=5)
def deliver(message_id: str) -> str:
    """Attempt one message once (if due). Returns what happened, for logs and tests."""
    hub = get_hub()
    try:
        return deliver_once(hub, uuid.UUID(message_id))
    except OperationalError as exc:  # SQLite busy / PG deadlock: nothing was half-written
        raise RetryableError(f"database busy: {exc.__class__.__name__}") from exc


@dataclass
class Claimed:
    message_id: uuid.UUID
    endpoint_id: uuid.UUID
    url: str
    secrets: list[str]
    body: str


def deliver_once(hub: Hub, message_id: uuid.UUID) -> str:
    claimed = _claim(hub, message_id)
    if isinstance(claimed, str):
        return claimed
    try:
        headers = sender.signed_headers(claimed.secrets, str(claimed.message_id), claimed.body)
        result = sender.send(claimed.url, claimed.body, headers, allow_private=hub.settings.allow_private_endpoints)
    except Exception as exc:  # a bug must still end in a recorded, retried attempt
        log.exception("delivery of %s crashed", message_id)
        result = sender.SendResult(status_code=None, latency_ms=0.0, error=f"{exc.__class__.__name__}: {exc}")
    return _record(hub, claimed, result)


def _claim(hub: Hub, message_id: uuid.UUID) -> Claimed | str:
    now = utcnow()
    with hub.transaction() as session:
        leased = session.execute(
            update(MessageRow)
            .where(MessageRow.id == message_id, MessageRow.status == MSG_PENDING,
                   MessageRow.next_attempt_at <= now + timedelta(seconds=DUE_SLACK_S),
                   or_(MessageRow.lease_until.is_(None), MessageRow.lease_until < now))
            .values(lease_until=now + timedelta(seconds=LEASE_S))
        ).rowcount
        message = session.get(MessageRow, message_id)
        if message is None:
            return "missing"
        if not leased:
            return message.status if message.status != MSG_PENDING else "not_due"
        endpoint = session.get(EndpointRow, message.endpoint_id)
        if endpoint is None or not endpoint.enabled:
            session.rollback()
            return "endpoint_disabled"
        if _held_back(session, message):
            session.rollback()
            return "held_back"
        wait = _throttle_wait(session, endpoint, now)
        if wait > 0:
            session.rollback()
            enqueue(DELIVER_TASK, str(message_id), countdown=wait)
            return "throttled"
        data = session.scalar(select(EventRow.data).where(EventRow.id == message.event_id))
        if data is None:
            message.status, message.last_error, message.finished_at = MSG_FAILED, "event deleted", now
            return "event_missing"
        body = json.dumps({"type": message.event_type, "timestamp": data.get("occurred_at"), "data": data},
                          ensure_ascii=False, separators=(",", ":"))
        return Claimed(message.id, endpoint.id, endpoint.url, _secrets(hub, endpoint, now), body)


def _held_back(session: Session, message: MessageRow) -> bool:
    """An earlier undelivered message for the same (endpoint, customer) goes first."""
    if message.customer_id is None:
        return False
    earlier = or_(MessageRow.occurred_at < message.occurred_at,
                  and_(MessageRow.occurred_at == message.occurred_at, MessageRow.event_seq < message.event_seq))
    stmt = select(MessageRow.id).where(
        MessageRow.endpoint_id == message.endpoint_id, MessageRow.customer_id == message.customer_id,
        MessageRow.status == MSG_PENDING, MessageRow.id != message.id, earlier,
    )
    return session.scalars(stmt.limit(1)).first() is not None


def _throttle_wait(session: Session, endpoint: EndpointRow, now: datetime) -> float:
    """Reserve the endpoint's next send slot (compare-and-swap, so it holds across workers)."""
    if not endpoint.rate_limit or endpoint.rate_limit <= 0:
        return 0.0
    old = endpoint.throttle_next_at
    if old is not None and old > now:
        return (old - now).total_seconds()
    new = now + timedelta(seconds=1.0 / endpoint.rate_limit)
    cond = EndpointRow.throttle_next_at.is_(None) if old is None else EndpointRow.throttle_next_at == old
    swapped = session.execute(
        update(EndpointRow).where(EndpointRow.id == endpoint.id, cond).values(throttle_next_at=new)
        .execution_options(synchronize_session=False)
    ).rowcount
    return 0.0 if swapped else 1.0 / endpoint.rate_limit


def _secrets(hub: Hub, endpoint: EndpointRow, now: datetime) -> list[str]:
    out = [hub.box.open_str(endpoint.secret_sealed)]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret_sealed and expires is not None and expires > now:
        out.append(hub.box.open_str(endpoint.previous_secret_sealed))
    return out


# ---------------------------------------------------------------- recording the outcome


def _record(hub: Hub, claimed: Claimed, result: sender.SendResult) -> str:
    now = utcnow()
    outcome = result.outcome()
    metrics.DELIVERY_ATTEMPTS.labels(outcome).inc()
    metrics.DELIVERY_LATENCY.observe(result.latency_ms / 1000.0)
    with hub.transaction() as session:
        message = session.get(MessageRow, claimed.message_id)
        endpoint = session.get(EndpointRow, claimed.endpoint_id)
        if message is None or endpoint is None:
            return "missing"
        session.add(AttemptRow(message_id=message.id, endpoint_id=endpoint.id, at=now, success=result.ok,
                               status_code=result.status_code, latency_ms=result.latency_ms,
                               error=result.error, response_excerpt=result.excerpt))
        message.attempt_count += 1
        message.lease_until = None
        message.last_status_code, message.last_error = result.status_code, result.error
        if result.ok:
            message.status, message.finished_at = MSG_DELIVERED, now
            endpoint.failing_since = None
            _release_next(session, message, now)
            return MSG_DELIVERED
        endpoint.failing_since = endpoint.failing_since or now
        if result.status_code == 410:
            message.status, message.finished_at = MSG_FAILED, now
            disable_endpoint(hub, session, endpoint, "the receiver answered 410 Gone")
            return "endpoint_gone"
        if _failing_too_long(hub, endpoint, now):
            days = hub.settings.endpoint_disable_after_days
            disable_endpoint(hub, session, endpoint, f"failing continuously for {days:g} days")
        if result.abort:
            message.status, message.finished_at = MSG_FAILED, now
            _release_next(session, message, now)
            return "aborted"
        delays = _delays(hub)
        if message.attempt_count >= len(delays):
            message.status, message.finished_at = MSG_FAILED, now
            _release_next(session, message, now)
            return MSG_FAILED
        delay = _jittered(delays[message.attempt_count])
        if result.retry_after is not None:
            delay = max(delay, min(result.retry_after, MAX_RETRY_AFTER_S))
        message.next_attempt_at = now + timedelta(seconds=delay)
        if endpoint.enabled:
            enqueue_after_commit(session, DELIVER_TASK, str(message.id), countdown=delay or None)
        return "retry_scheduled"


def _jittered(delay: float) -> float:
    return delay * random.uniform(1 - JITTER, 1 + JITTER) if delay > 0 else 0.0


def _failing_too_long(hub: Hub, endpoint: EndpointRow, now: datetime) -> bool:
    since = endpoint.failing_since
    limit = timedelta(days=hub.settings.endpoint_disable_after_days)
    return endpoint.enabled and since is not None and now - since >= limit


def _release_next(session: Session, message: MessageRow, now: datetime) -> None:
    """The message is settled: the same customer's next pending message may go now."""
    if message.customer_id is None:
        return
    nxt = session.scalars(
        select(MessageRow).where(MessageRow.endpoint_id == message.endpoint_id,
                                 MessageRow.customer_id == message.customer_id,
                                 MessageRow.status == MSG_PENDING, MessageRow.id != message.id)
        .order_by(MessageRow.occurred_at, MessageRow.event_seq).limit(1)
    ).first()
    if nxt is not None:
        wait = max(0.0, (nxt.next_attempt_at - now).total_seconds())
        enqueue_after_commit(session, DELIVER_TASK, str(nxt.id), countdown=wait or None)


def disable_endpoint(hub: Hub, session: Session, endpoint: EndpointRow, reason: str) -> None:
    """Disable and raise the `endpoint.disabled` operational event (delivered to other subscribers)."""
    from hub.pipeline import store_internal

    now = utcnow()
    endpoint.enabled, endpoint.disabled_reason, endpoint.disabled_at = False, reason, now
    session.flush()
    draft = EventDraft(
        type="endpoint.disabled", source_event_id=f"endpoint.disabled:{endpoint.id}:{now.isoformat()}",
        occurred_at=now, properties={"endpoint_id": str(endpoint.id), "url": endpoint.url, "reason": reason},
    )
    store_internal(hub, session, [draft], source="webhooks")
    log.warning("endpoint %s disabled: %s", endpoint.id, reason)


# ---------------------------------------------------------------- the sweep


@task(SWEEP_TASK, queue="deliver", max_retries=1)
def sweep() -> int:
    """Re-enqueue due messages whose countdown was lost (crash, restart, broker loss)."""
    return sweep_due(get_hub())


def sweep_due(hub: Hub, *, grace_s: float = SWEEP_GRACE_S) -> int:
    now = utcnow()
    with hub.sessions() as session:
        ids = session.scalars(
            select(MessageRow.id).join(EndpointRow, EndpointRow.id == MessageRow.endpoint_id)
            .where(MessageRow.status == MSG_PENDING, EndpointRow.enabled.is_(True),
                   MessageRow.next_attempt_at <= now - timedelta(seconds=grace_s),
                   or_(MessageRow.lease_until.is_(None), MessageRow.lease_until < now))
            .order_by(MessageRow.occurred_at, MessageRow.event_seq).limit(SWEEP_LIMIT)
        ).all()
    for message_id in ids:
        enqueue(DELIVER_TASK, str(message_id))
    return len(ids)


def requeue(session: Session, messages: list[MessageRow]) -> int:
    """Replay / resend: back to pending with a fresh retry schedule; the webhook-id is kept."""
    now = utcnow()
    for message in messages:
        message.status, message.attempt_count, message.next_attempt_at = MSG_PENDING, 0, now
        message.lease_until, message.finished_at = None, None
        enqueue_after_commit(session, DELIVER_TASK, str(message.id))
    return len(messages)


def pending_counts(session: Session) -> dict[str, Any]:
    from sqlalchemy import func

    rows = session.execute(select(MessageRow.status, func.count()).group_by(MessageRow.status)).all()
    return {status: int(n) for status, n in rows}
