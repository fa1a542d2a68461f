"""Outbound delivery: one message per (event, endpoint), signed, sent, recorded, retried.

Work goes per endpoint, in batches, so the database sees two short transactions per batch
rather than per message. `deliver_due` loops: `claim` leases up to `claim.BATCH` due
messages (webhooks/claim.py), `sender.send_batch` posts them concurrently with no
transaction open, and `_record` writes every attempt and each message's next state in
one transaction (Core executemany). A claimed message that is never recorded (the worker
died) is claimable again when its lease runs out, and the periodic `sweep` re-enqueues
anything due, so a crash or a lost countdown loses nothing.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from hub import metrics
from hub.db import after_commit
from hub.errors import RetryableError
from hub.ids import new_id
from hub.models import EventRow
from hub.pipeline import BATCH_CACHE
from hub.runtime import Hub, get_hub
from hub.schemas import EventDraft, UnifiedEvent, utcnow
from hub.tasks import enqueue, enqueue_after_commit, task
from webhooks import sender
from webhooks.claim import DUE_SLACK_S, Batch, Claimed, Wait, claim
from webhooks.follow import follow_customer_change
from webhooks.models import MSG_DELIVERED, MSG_FAILED, MSG_PENDING, AttemptRow, EndpointRow, MessageRow

log = logging.getLogger(__name__)

DELIVER_TASK = "webhooks.delivery.deliver"
DELIVER_DUE_TASK = "webhooks.delivery.deliver_due"
SWEEP_TASK = "webhooks.delivery.sweep"
SWEEP_EVERY_S = 30.0
SWEEP_GRACE_S = 10.0
MAX_ROUNDS = 64  # batches per task; then the task re-enqueues itself so other work gets a turn
# ... or fewer, once the task has run this long: a receiver that answers 2xx slowly (or trickles its answer) took
# 15 s a batch, and its pump held the deliver lane for all 64 (16 min) while every other endpoint waited. A batch
# also stops starting POSTs then (the rest stay due, `deferred`): 32 answers of 3 s each took 16.5 s at 8 in flight.
MAX_PUMP_S = 5.0
DEFERRED = "deferred"  # a message's outcome when its batch's turn ended before it was sent: still due
pump_clock = time.monotonic  # what MAX_PUMP_S is measured with (a test counts the receiver's time on its own clock)
RECORD_TRIES = 3
NOT_SENT_RETRY_S = 1.0
JITTER = 0.2
MAX_RETRY_AFTER_S = 86_400.0
_PUMPS = "webhooks.deliver_due"


# ---------------------------------------------------------------- creating messages


def create_messages(hub: Hub, event: UnifiedEvent, session: Session) -> int:
    """`event_stored`: one pending message per endpoint subscribed to the event's type.

    A disabled endpoint gets its messages too, held: nothing is claimed for it until it is re-enabled, and then
    what arrived meanwhile goes out in order (docs/operations.md). Deleting the endpoint drops them.
    """
    rows = session.info.get(BATCH_CACHE, {}).get(_ENDPOINTS_KEY)
    if rows is None:
        rows = _all_endpoints(session)
    follow_customer_change(session, event, [e.id for e in rows])
    wanted = [e for e in rows if e.subscribes(event.type)]
    if not wanted:
        return 0
    seq = session.scalar(select(EventRow.seq).where(EventRow.id == event.id)) or 0
    first_delay = _delays(hub)[0]
    now = utcnow()
    for endpoint in wanted:
        session.add(MessageRow(
            id=new_id(), endpoint_id=endpoint.id, event_id=event.id, event_seq=seq, event_type=event.type,
            customer_id=event.customer_id, occurred_at=event.occurred_at, status=MSG_PENDING,
            next_attempt_at=now + timedelta(seconds=first_delay), created_at=now,
        ))
        if endpoint.enabled:
            deliver_after_commit(session, endpoint.id, countdown=first_delay)
    return len(wanted)


_ENDPOINTS_KEY = "webhooks_endpoints"


def preload_endpoints(session: Session) -> None:
    """`events_prepared`: the endpoints once per batch rather than once per stored event."""
    session.info[BATCH_CACHE][_ENDPOINTS_KEY] = _all_endpoints(session)


def _all_endpoints(session: Session) -> list[EndpointRow]:
    return list(session.scalars(select(EndpointRow)))


def deliver_after_commit(session: Session, endpoint_id: uuid.UUID, countdown: float = 0.0) -> None:
    """One `deliver_due` per endpoint per transaction, however many messages the transaction queued."""
    wanted: dict[uuid.UUID, float] | None = session.info.get(_PUMPS)
    if wanted is None:
        wanted = session.info[_PUMPS] = {}
        after_commit(session, lambda: _enqueue_pumps(session.info.pop(_PUMPS, {})))
    wanted[endpoint_id] = min(countdown, wanted.get(endpoint_id, countdown))


def _enqueue_pumps(wanted: dict[uuid.UUID, float]) -> None:
    for endpoint_id, countdown in wanted.items():
        enqueue(DELIVER_DUE_TASK, str(endpoint_id), countdown=countdown or None)


def _delays(hub: Hub) -> list[float]:
    return hub.settings.retry_delays or [0.0]


# ---------------------------------------------------------------- the tasks


@task(DELIVER_TASK, queue="deliver", max_retries=5)
def deliver(message_id: str) -> str:
    """Deliver what is due on this message's endpoint (retry timers and older queued tasks name a message)."""
    hub = get_hub()
    try:
        with hub.sessions() as session:
            endpoint_id = session.scalar(select(MessageRow.endpoint_id).where(MessageRow.id == uuid.UUID(message_id)))
        return "missing" if endpoint_id is None else deliver_due(hub, endpoint_id)
    except OperationalError as exc:  # SQLite busy / PG deadlock: nothing was half-written
        raise RetryableError(f"database busy: {exc.__class__.__name__}") from exc


@task(DELIVER_DUE_TASK, queue="deliver", max_retries=5)
def deliver_endpoint(endpoint_id: str) -> str:
    """Deliver every due message of one endpoint, batch by batch. Returns what happened, for logs and tests."""
    try:
        return deliver_due(get_hub(), uuid.UUID(endpoint_id))
    except OperationalError as exc:
        raise RetryableError(f"database busy: {exc.__class__.__name__}") from exc


def deliver_due(hub: Hub, endpoint_id: uuid.UUID) -> str:
    outcomes: Counter[str] = Counter()
    started = pump_clock()
    for _ in range(MAX_ROUNDS):
        batch = claim(hub, endpoint_id)
        if isinstance(batch, Wait):
            if batch.reason == "throttled":
                enqueue(DELIVER_DUE_TASK, str(endpoint_id), countdown=batch.retry_in)
            outcomes[batch.reason] += 1
            return _summary(outcomes)
        results = attempt(hub, batch, budget_s=MAX_PUMP_S - (pump_clock() - started))
        outcomes.update(results)
        if MSG_DELIVERED not in results:
            # Nothing went through (a receiver down or hanging: each batch can take the whole timeout). Yield
            # the deliver lane to other endpoints' pumps, queued behind them: one stuck receiver used to hold
            # it for up to MAX_ROUNDS batches while healthy endpoints waited (helper-24).
            break
        if pump_clock() - started >= MAX_PUMP_S or DEFERRED in results:  # a slow receiver: its turn is over,
            break  # even when it delivers; what its last batch did not start is still due, for the next turn
    enqueue(DELIVER_DUE_TASK, str(endpoint_id))
    return _summary(outcomes)


def _summary(outcomes: Counter[str]) -> str:
    return " ".join(f"{name}={n}" for name, n in sorted(outcomes.items()))


def attempt(hub: Hub, batch: Batch, *, budget_s: float | None = None) -> list[str]:
    """Send a claimed batch and record the outcome of each message; no POST starts after `budget_s` (pump_clock)."""
    results = _send(hub, batch, budget_s)
    for result in (r for r in results if r.sent):
        metrics.DELIVERY_ATTEMPTS.labels(result.outcome()).inc()
        if result.latency_ms is not None:  # a refusal took no time on the wire: no latency to report
            metrics.DELIVERY_LATENCY.observe(result.latency_ms / 1000.0)
    for tries_left in range(RECORD_TRIES - 1, -1, -1):
        try:
            return _record(hub, batch, results)
        except (OperationalError, IntegrityError):  # busy database, or a message deleted meanwhile
            if not tries_left:
                raise
            time.sleep(0.05)
    return []


def _send(hub: Hub, batch: Batch, budget_s: float | None) -> list[sender.SendResult]:
    items = [sender.Outgoing(str(m.message_id), m.body) for m in batch.messages]
    if batch.signer is None:
        log.error("cannot sign for endpoint %s: %s", batch.endpoint_id, batch.problem)
        return [sender.SendResult(None, None, error=f"refused: {batch.problem}"[:500]) for _ in items]
    try:
        return sender.send_batch(batch.url, batch.signer, items, allow_private=hub.settings.allow_private_endpoints,
                                 budget_s=budget_s, clock=pump_clock)
    except Exception as exc:  # a bug must still end in recorded, retried attempts
        log.exception("delivery to endpoint %s crashed", batch.endpoint_id)
        return [sender.SendResult(None, None, error=f"{exc.__class__.__name__}: {exc}"[:500]) for _ in items]


# ---------------------------------------------------------------- recording the outcome


@dataclass(frozen=True)
class _Next:
    """A message's state after one attempt."""

    outcome: str
    status: str
    next_attempt_at: datetime
    finished_at: datetime | None = None
    retry_in: float | None = None


def _next(hub: Hub, claimed: Claimed, result: sender.SendResult, now: datetime) -> _Next:
    if result.deferred:  # the pump's turn ended first: still due, unleased; the pump queues itself again
        return _Next(DEFERRED, MSG_PENDING, claimed.next_attempt_at)
    if not result.sent:  # never left the process: not an attempt; the lease is given back
        return _Next("not_sent", MSG_PENDING, claimed.next_attempt_at, retry_in=NOT_SENT_RETRY_S)
    if result.ok:
        return _Next(MSG_DELIVERED, MSG_DELIVERED, claimed.next_attempt_at, now)
    if result.status_code == 410:
        return _Next("endpoint_gone", MSG_FAILED, claimed.next_attempt_at, now)
    if result.abort:
        return _Next("aborted", MSG_FAILED, claimed.next_attempt_at, now)
    delays = _delays(hub)
    attempts = claimed.attempt_count + 1
    if attempts >= len(delays):
        return _Next(MSG_FAILED, MSG_FAILED, claimed.next_attempt_at, now)
    delay = _jittered(delays[attempts])
    if result.retry_after is not None:  # plus the claim's slack, which may take a message that early
        delay = max(delay, min(result.retry_after, MAX_RETRY_AFTER_S) + DUE_SLACK_S)
    return _Next("retry_scheduled", MSG_PENDING, now + timedelta(seconds=delay), retry_in=delay)


def _jittered(delay: float) -> float:
    return delay * random.uniform(1 - JITTER, 1 + JITTER) if delay > 0 else 0.0


_MESSAGES = MessageRow.__table__
_SETTLE = (  # only while our lease holds: a message whose lease ran out belongs to whoever claimed it next
    update(_MESSAGES)
    .where(_MESSAGES.c.id == bindparam("m_id"), _MESSAGES.c.status == MSG_PENDING,
           _MESSAGES.c.lease_until == bindparam("m_lease"))
    .values(status=bindparam("m_status"), attempt_count=_MESSAGES.c.attempt_count + 1, lease_until=None,
            last_status_code=bindparam("m_code"), last_error=bindparam("m_error"),
            next_attempt_at=bindparam("m_next"), finished_at=bindparam("m_finished"))
)


_RELEASE = (update(_MESSAGES)
            .where(_MESSAGES.c.id == bindparam("m_id"), _MESSAGES.c.lease_until == bindparam("m_lease"))
            .values(lease_until=None))
_ENDPOINTS = EndpointRow.__table__
_END_STREAK = (update(_ENDPOINTS)
               .where(_ENDPOINTS.c.id == bindparam("b_endpoint"), _ENDPOINTS.c.failing_since.is_not(None))
               .values(failing_since=None))


def _record(hub: Hub, batch: Batch, results: list[sender.SendResult]) -> list[str]:
    now, clock = utcnow(), time.monotonic()
    plans = [_next(hub, m, r, now) for m, r in zip(batch.messages, results, strict=True)]
    with hub.transaction() as session:
        ids = [m.message_id for m in batch.messages]
        alive = set(session.scalars(select(MessageRow.id).where(MessageRow.id.in_(ids))))  # not deleted meanwhile
        rows = [(m, r, p) for m, r, p in zip(batch.messages, results, plans, strict=True) if m.message_id in alive]
        sent = [row for row in rows if row[1].sent]
        if sent:
            # In finish order, each at its own finish time: the health streak counts failures after the last success.
            session.execute(AttemptRow.__table__.insert(), [
                _attempt_row(batch, m, r, _finished_at(r, now, clock))
                for m, r, _ in sorted(sent, key=lambda row: row[1].done)
            ])
            session.execute(_SETTLE, [_settle_row(m, r, p) for m, r, p in sent])
        if len(sent) < len(rows):
            session.execute(_RELEASE, [{"m_id": m.message_id, "m_lease": m.lease_until}
                                       for m, r, _ in rows if not r.sent])
        enabled = _endpoint_after(hub, session, batch.endpoint_id, [(r, p) for _, r, p in sent], now)
        for delay in {p.retry_in for _, _, p in rows if p.retry_in is not None}:
            if enabled:
                enqueue_after_commit(session, DELIVER_DUE_TASK, str(batch.endpoint_id), countdown=delay or None)
    return [plan.outcome if m.message_id in alive else "missing" for m, plan in zip(batch.messages, plans, strict=True)]


def _finished_at(result: sender.SendResult, now: datetime, clock: float) -> datetime:
    """When the attempt finished: `done` is monotonic (immune to clock steps), so place it back from now."""
    return now - timedelta(seconds=max(0.0, clock - result.done))


def _attempt_row(batch: Batch, claimed: Claimed, result: sender.SendResult, at: datetime) -> dict[str, Any]:
    return {"message_id": claimed.message_id, "endpoint_id": batch.endpoint_id, "at": at, "success": result.ok,
            "status_code": result.status_code, "latency_ms": result.latency_ms, "error": result.error,
            "response_excerpt": result.excerpt}


def _settle_row(claimed: Claimed, result: sender.SendResult, plan: _Next) -> dict[str, Any]:
    return {"m_id": claimed.message_id, "m_lease": claimed.lease_until, "m_status": plan.status,
            "m_code": result.status_code, "m_error": result.error, "m_next": plan.next_attempt_at,
            "m_finished": plan.finished_at}


def _endpoint_after(hub: Hub, session: Session, endpoint_id: uuid.UUID,
                    outcomes: list[tuple[sender.SendResult, _Next]], now: datetime) -> bool:
    """Track the failure streak (`failing_since`); 410 or a 5-day streak disables. Returns: still enabled?"""
    if not outcomes:
        return True
    failed = [p for r, p in outcomes if not r.ok]
    streak = EndpointRow.failing_since
    if max(outcomes, key=lambda o: o[0].done)[0].ok:  # the batch ended in a success: no streak
        session.execute(_END_STREAK, {"b_endpoint": endpoint_id})
    elif len(failed) == len(outcomes):
        _update_endpoint(session, endpoint_id, streak.is_(None), failing_since=now)
    else:  # a success inside the batch interrupted the streak; it starts again now
        _update_endpoint(session, endpoint_id, failing_since=now)
    if not failed:
        return True
    endpoint = session.get(EndpointRow, endpoint_id)
    if endpoint is None or not endpoint.enabled:
        return False
    if any(p.outcome == "endpoint_gone" for p in failed):
        disable_endpoint(hub, session, endpoint, "the receiver answered 410 Gone")
    elif _failing_too_long(hub, endpoint, now):
        days = hub.settings.endpoint_disable_after_days
        disable_endpoint(hub, session, endpoint, f"failing continuously for {days:g} days")
    return endpoint.enabled


def _update_endpoint(session: Session, endpoint_id: uuid.UUID, *conds: Any, **values: Any) -> None:
    session.execute(update(EndpointRow).where(EndpointRow.id == endpoint_id, *conds).values(**values)
                    .execution_options(synchronize_session=False))


def _failing_too_long(hub: Hub, endpoint: EndpointRow, now: datetime) -> bool:
    since = endpoint.failing_since
    limit = timedelta(days=hub.settings.endpoint_disable_after_days)
    return endpoint.enabled and since is not None and now - since >= limit


def disable_endpoint(hub: Hub, session: Session, endpoint: EndpointRow, reason: str) -> None:
    """Disable and raise the `endpoint.disabled` operational event (delivered to other subscribers)."""
    from hub.pipeline import store_internal

    now = utcnow()
    endpoint.enabled, endpoint.disabled_reason, endpoint.disabled_at = False, reason, now
    session.flush()
    draft = EventDraft(
        type="endpoint.disabled", source_event_id=f"endpoint.disabled:{endpoint.id}:{now.isoformat()}",
        occurred_at=now, properties={"endpoint_id": str(endpoint.id), "url": endpoint.url, "reason": reason},
        about_a_person=False,
    )
    store_internal(hub, session, [draft], source="webhooks")
    log.warning("endpoint %s disabled: %s", endpoint.id, reason)


# ---------------------------------------------------------------- the sweep


@task(SWEEP_TASK, queue="deliver", max_retries=1)
def sweep() -> int:
    """Re-enqueue due messages whose countdown was lost (crash, restart, broker loss)."""
    return sweep_due(get_hub())


def sweep_due(hub: Hub, *, grace_s: float = SWEEP_GRACE_S) -> int:
    """Enqueue `deliver_due` for every endpoint with due, unleased messages; returns how many messages are due."""
    now = utcnow()
    with hub.sessions() as session:
        rows = session.execute(
            select(MessageRow.endpoint_id, func.count()).join(EndpointRow, EndpointRow.id == MessageRow.endpoint_id)
            .where(MessageRow.status == MSG_PENDING, EndpointRow.enabled.is_(True),
                   MessageRow.next_attempt_at <= now - timedelta(seconds=grace_s),
                   or_(MessageRow.lease_until.is_(None), MessageRow.lease_until < now))
            .group_by(MessageRow.endpoint_id)
        ).all()
    for endpoint_id, _ in rows:
        enqueue(DELIVER_DUE_TASK, str(endpoint_id))
    return sum(int(n) for _, n in rows)


def requeue(session: Session, messages: list[MessageRow]) -> int:
    """Replay / resend: back to pending with a fresh retry schedule; the webhook-id is kept."""
    now = utcnow()
    for message in messages:
        message.status, message.attempt_count, message.next_attempt_at = MSG_PENDING, 0, now
        message.lease_until, message.finished_at = None, None
        deliver_after_commit(session, message.endpoint_id)
    return len(messages)


def pending_counts(session: Session) -> dict[str, Any]:
    from sqlalchemy import func

    rows = session.execute(select(MessageRow.status, func.count()).group_by(MessageRow.status)).all()
    return {status: int(n) for status, n in rows}
