"""The outbound half of the admin API (contract §3): endpoints, their health, messages, replay; source health."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from hub.api import AdminDep, HubDep
from hub.cursors import cursor_time, cursor_uuid, decode_cursor, encode_cursor
from hub.errors import Conflict, InvalidRequest, NotFound
from hub.runtime import Hub
from hub.schemas import PatchBody, QueryTime, RequestBody, Schema, utcnow
from webhooks.delivery import requeue
from webhooks.event_types import event_type_warnings
from webhooks.health import endpoint_health, source_health
from webhooks.models import MESSAGE_STATUSES, MSG_FAILED, MSG_PENDING, AttemptRow, EndpointRow, MessageRow
from webhooks.signing import generate_secret
from webhooks.ssrf import check_url

router = APIRouter(prefix="/v1", dependencies=[AdminDep])

DEFAULT_ROTATION_OVERLAP_H = 24.0
MESSAGE_PAGE_MAX = 500


# An empty type ("" or spaces) matches no event: the endpoint would silently receive nothing.
EventType = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class EndpointCreate(RequestBody):
    # A misspelt field (`event_type`) would otherwise be dropped silently: the endpoint subscribed to "*".
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000)
    event_types: list[EventType] = Field(default_factory=lambda: ["*"], min_length=1)
    description: str = ""
    rate_limit: float | None = Field(default=None, gt=0, description="messages per second; null = unthrottled")


class EndpointUpdate(PatchBody):
    read_only = frozenset({"id", "created_at", "disabled_reason", "warnings"})
    # Only `rate_limit` can be cleared; a null elsewhere would unsubscribe everything or break the row.
    not_null = frozenset({"url", "event_types", "enabled", "description"})

    url: str | None = Field(default=None, max_length=2000)
    event_types: list[EventType] | None = Field(default=None, min_length=1)
    enabled: bool | None = None
    description: str | None = None
    rate_limit: float | None = Field(default=None, gt=0)  # null: unthrottled


class Endpoint(Schema):
    id: uuid.UUID
    url: str
    event_types: list[str]
    description: str
    enabled: bool
    rate_limit: float | None = None
    disabled_reason: str | None = None
    created_at: datetime
    secret: str | None = None  # only on create and rotate-secret


class RotateSecret(RequestBody):
    overlap_hours: float = Field(default=DEFAULT_ROTATION_OVERLAP_H, ge=0, le=24 * 30)
    # Only one old secret signs alongside the new one: rotating again during an overlap stops the oldest at once.
    force: bool = False


class Replay(RequestBody):
    since: QueryTime | None = None
    status: Literal["failed"] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Replay:
        if (self.since is None) == (self.status is None):
            raise ValueError("give exactly one of `since` or `status: \"failed\"`")
        if self.since is not None and self.since.tzinfo is None:
            raise ValueError("`since` needs a UTC offset")
        return self


def _view(row: EndpointRow, secret: str | None = None) -> Endpoint:
    return Endpoint(id=row.id, url=row.url, event_types=list(row.event_types or []), description=row.description,
                    enabled=row.enabled, rate_limit=row.rate_limit, created_at=row.created_at, secret=secret,
                    disabled_reason=None if row.enabled else row.disabled_reason)


def _get(session: Session, endpoint_id: uuid.UUID) -> EndpointRow:
    row = session.get(EndpointRow, endpoint_id)
    if row is None:
        raise NotFound(f"no endpoint {endpoint_id}", code="endpoint_not_found")
    return row


def _dump(model: Endpoint) -> dict[str, Any]:
    data = model.model_dump(mode="json")
    if data.get("secret") is None:
        data.pop("secret", None)
    return data


# ---------------------------------------------------------------- CRUD


@router.post("/endpoints", status_code=201)
def create_endpoint(body: EndpointCreate, hub: HubDep) -> dict[str, Any]:
    check_url(body.url, allow_private=hub.settings.allow_private_endpoints)
    secret = generate_secret()
    with hub.transaction() as session:
        row = EndpointRow(url=body.url, event_types=body.event_types, description=body.description,
                          enabled=True, rate_limit=body.rate_limit, secret_sealed=hub.box.seal_str(secret))
        session.add(row)
        session.flush()
        return {**_dump(_view(row, secret)), "warnings": event_type_warnings(session, body.event_types)}


@router.get("/endpoints")
def list_endpoints(hub: HubDep) -> dict[str, list[dict[str, Any]]]:
    with hub.sessions() as session:
        rows = session.scalars(select(EndpointRow).order_by(EndpointRow.created_at)).all()
        return {"items": [_dump(_view(r)) for r in rows]}


@router.get("/endpoints/{endpoint_id}")
def get_endpoint(endpoint_id: uuid.UUID, hub: HubDep) -> dict[str, Any]:
    with hub.sessions() as session:
        return _dump(_view(_get(session, endpoint_id)))


@router.patch("/endpoints/{endpoint_id}")
def patch_endpoint(endpoint_id: uuid.UUID, body: EndpointUpdate, hub: HubDep) -> dict[str, Any]:
    if body.url is not None:
        check_url(body.url, allow_private=hub.settings.allow_private_endpoints)
    with hub.transaction() as session:
        row = _get(session, endpoint_id)
        fields = body.model_dump(exclude_unset=True)
        for name in ("url", "event_types", "description", "rate_limit"):
            if name in fields:
                setattr(row, name, fields[name])
        if body.enabled is not None and body.enabled != row.enabled:
            row.enabled = body.enabled
            row.disabled_reason = None if body.enabled else "disabled by an operator"
            row.disabled_at = None if body.enabled else utcnow()
            if body.enabled:
                row.failing_since = None
                _resume(session, row)
        session.flush()
        return {**_dump(_view(row)), "warnings": event_type_warnings(session, body.event_types or [])}


def _resume(session: Session, row: EndpointRow) -> None:
    """Re-enabled: what waited while disabled is due again (order is still enforced per customer)."""
    from webhooks.delivery import deliver_after_commit

    deliver_after_commit(session, row.id)


@router.delete("/endpoints/{endpoint_id}", status_code=204)
def delete_endpoint(endpoint_id: uuid.UUID, hub: HubDep) -> Response:
    with hub.transaction() as session:
        row = _get(session, endpoint_id)
        session.query(AttemptRow).filter(AttemptRow.endpoint_id == row.id).delete(synchronize_session=False)
        session.query(MessageRow).filter(MessageRow.endpoint_id == row.id).delete(synchronize_session=False)
        session.delete(row)
    return Response(status_code=204)


@router.post("/endpoints/{endpoint_id}/rotate-secret")
def rotate_secret(endpoint_id: uuid.UUID, hub: HubDep, body: RotateSecret | None = None) -> dict[str, Any]:
    """New secret now; the old one keeps signing too (space-separated) for the overlap (default 24 h)."""
    body = body or RotateSecret()
    overlap = body.overlap_hours
    secret = generate_secret()
    with hub.transaction() as session:
        row = _get(session, endpoint_id)
        still = row.previous_secret_expires_at
        if row.previous_secret_sealed and still is not None and still > utcnow() and not body.force:
            raise Conflict(f"the secret from before the last rotation still signs until {still.isoformat()}; "
                           "rotating again would stop it now, breaking receivers that still verify with it. "
                           'Wait, or pass {"force": true} (crmhub endpoints rotate-secret --force)',
                           code="rotation_in_progress")
        row.previous_secret_sealed = row.secret_sealed
        row.previous_secret_expires_at = utcnow() + timedelta(hours=overlap)
        row.secret_sealed = hub.box.seal_str(secret)
        session.flush()
        data = _dump(_view(row, secret))
        data["previous_secret_expires_at"] = row.previous_secret_expires_at.isoformat()
        return data


# ---------------------------------------------------------------- health, messages, replay


@router.get("/endpoints/{endpoint_id}/health")
def get_endpoint_health(endpoint_id: uuid.UUID, hub: HubDep) -> dict[str, Any]:
    with hub.sessions() as session:
        return _jsonable(endpoint_health(session, _get(session, endpoint_id)))


def message_view(message: MessageRow, attempts: list[AttemptRow]) -> dict[str, Any]:
    return _jsonable({
        "id": message.id, "webhook_id": str(message.id), "event_id": message.event_id,
        "event_type": message.event_type, "customer_id": message.customer_id, "occurred_at": message.occurred_at,
        "status": message.status, "attempt_count": message.attempt_count, "created_at": message.created_at,
        "next_attempt_at": message.next_attempt_at if message.status == "pending" else None,
        "finished_at": message.finished_at,
        # The last attempt's outcome, kept on the message: its attempts may be gone (CRMHUB_ATTEMPTS_RETENTION_DAYS).
        "last_status_code": message.last_status_code, "last_error": message.last_error,
        "attempts": [{"at": a.at, "status_code": a.status_code, "latency_ms": a.latency_ms, "success": a.success,
                      "error": a.error, "response_excerpt": a.response_excerpt} for a in attempts],
    })


def list_messages(hub: Hub, endpoint_id: uuid.UUID, status: str | None, limit: int, *,
                  last_failed: bool = False, before: tuple[datetime, uuid.UUID] | None = None) -> list[dict[str, Any]]:
    """Newest first (then by id, so a page boundary never splits or repeats a tie). `last_failed`: only messages
    whose last attempt failed, still retrying or failed for good. `before`: the (created_at, id) of the last
    message of the previous page."""
    with hub.sessions() as session:
        _get(session, endpoint_id)
        stmt = select(MessageRow).where(MessageRow.endpoint_id == endpoint_id)
        if status:
            stmt = stmt.where(MessageRow.status == status)
        if last_failed:  # a pending message tried since it was (re)queued has only failed attempts since then
            stmt = stmt.where(or_(MessageRow.status == MSG_FAILED,
                                  and_(MessageRow.status == MSG_PENDING, MessageRow.attempt_count > 0)))
        if before is not None:
            at, message_id = before
            stmt = stmt.where(or_(MessageRow.created_at < at,
                                  and_(MessageRow.created_at == at, MessageRow.id < message_id)))
        stmt = stmt.order_by(MessageRow.created_at.desc(), MessageRow.id.desc()).limit(limit)
        messages = session.scalars(stmt).all()
        by_message: dict[uuid.UUID, list[AttemptRow]] = {}
        if messages:
            for attempt in session.scalars(select(AttemptRow).where(
                    AttemptRow.message_id.in_([m.id for m in messages])).order_by(AttemptRow.at)):
                by_message.setdefault(attempt.message_id, []).append(attempt)
        return [message_view(m, by_message.get(m.id, [])) for m in messages]


@router.get("/endpoints/{endpoint_id}/messages")
def get_messages(endpoint_id: uuid.UUID, hub: HubDep, status: str | None = None,
                 limit: int = Query(default=100, ge=1, le=MESSAGE_PAGE_MAX),
                 cursor: str | None = None) -> dict[str, Any]:
    """One page, newest first; `next_cursor` (null on the last page) fetches the next, as in contract §3's lists."""
    if status is not None and status not in MESSAGE_STATUSES:
        raise InvalidRequest(f"status must be one of {', '.join(MESSAGE_STATUSES)}",
                             details=[{"field": "status", "message": "unknown status"}])
    before = None
    if cursor:
        data = decode_cursor(cursor)
        before = cursor_time(data, "t", "cursor"), cursor_uuid(data, "m", "cursor")
    items = list_messages(hub, endpoint_id, status, limit + 1, before=before)
    more = len(items) > limit
    items = items[:limit]
    next_cursor = encode_cursor({"t": items[-1]["created_at"], "m": items[-1]["id"]}) if more else None
    return {"items": items, "next_cursor": next_cursor}


def replay_endpoint(hub: Hub, endpoint_id: uuid.UUID, *, since: datetime | None = None,
                    failed_only: bool = False) -> int:
    """Re-send (keeping each webhook-id) the endpoint's failed messages, or all its messages since a time."""
    with hub.transaction() as session:
        row = _get(session, endpoint_id)
        if not row.enabled:
            raise Conflict(f"endpoint {endpoint_id} is disabled; enable it before replaying",
                           code="endpoint_disabled")
        stmt = select(MessageRow).where(MessageRow.endpoint_id == endpoint_id, MessageRow.status != "pending")
        if failed_only:
            stmt = stmt.where(MessageRow.status == MSG_FAILED)
        if since is not None:
            stmt = stmt.where(MessageRow.created_at >= since)
        return requeue(session, list(session.scalars(stmt.order_by(MessageRow.occurred_at))))


@router.post("/endpoints/{endpoint_id}/replay", status_code=202)
def post_replay(endpoint_id: uuid.UUID, body: Replay, hub: HubDep) -> dict[str, int]:
    return {"queued": replay_endpoint(hub, endpoint_id, since=body.since, failed_only=body.status == "failed")}


@router.post("/endpoints/{endpoint_id}/messages/{message_id}/resend", status_code=202)
def resend(endpoint_id: uuid.UUID, message_id: uuid.UUID, hub: HubDep) -> dict[str, int]:
    with hub.transaction() as session:
        row = _get(session, endpoint_id)
        message = session.get(MessageRow, message_id)
        if message is None or message.endpoint_id != row.id:
            raise NotFound(f"no message {message_id} for endpoint {endpoint_id}", code="message_not_found")
        if not row.enabled:
            raise Conflict(f"endpoint {endpoint_id} is disabled; enable it before resending", code="endpoint_disabled")
        if message.status == "pending":
            return {"queued": 0}
        return {"queued": requeue(session, [message])}


@router.get("/health/sources")
def get_source_health(hub: HubDep) -> dict[str, Any]:
    with hub.sessions() as session:
        return {"items": [_jsonable(item) for item in source_health(session)]}


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    """Times as `isoformat()` (`+00:00`, like every other time the API shows), ids as text, nested too."""
    return {key: _json_value(value) for key, value in data.items()}


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return _jsonable(value)
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value
