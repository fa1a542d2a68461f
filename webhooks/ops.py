"""`/metrics` (Prometheus) and `/ops` (server-rendered HTML, no JS build) for operators.

/ops accepts the admin token as a bearer token or as the HTTP Basic password (any user
name) so a plain browser can open it; the replay button is a form POST carrying a token
derived from the admin token, so another site cannot submit it with the browser's
cached Basic credentials.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select

from hub import metrics
from hub.api import HubDep, bearer_token, require_admin
from hub.errors import Unauthorized
from hub.models import RAW_FAILED, RAW_PENDING, RawEvent
from hub.schemas import utcnow
from webhooks.api import list_messages, replay_endpoint
from webhooks.health import STATUS_ORDER, endpoint_health, rate_percent, source_health
from webhooks.models import MSG_FAILED, MSG_PENDING, EndpointRow, MessageRow

router = APIRouter(include_in_schema=False)

_templates = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                         autoescape=select_autoescape(["html"]))
_templates.filters["percent"] = rate_percent  # as the CLI shows a rate
RECENT_FAILURES = 5
# What `/ops?notice=<key>&n=<count>` may show: fixed texts, so a crafted link cannot put its own words on the page.
NOTICES = {"replayed": "Queued {n} failed message(s) for replay."}


# ---------------------------------------------------------------- /metrics


def update_queue_depth(hub: Any) -> None:
    """Gauges are refreshed on scrape: rows waiting per stage, straight from the database."""
    with hub.sessions() as session:
        raw = dict(session.execute(select(RawEvent.status, func.count())
                                   .where(RawEvent.status.in_([RAW_PENDING, RAW_FAILED]))
                                   .group_by(RawEvent.status)).all())
        msgs = dict(session.execute(select(MessageRow.status, func.count())
                                    .where(MessageRow.status.in_([MSG_PENDING, MSG_FAILED]))
                                    .group_by(MessageRow.status)).all())
        others = [d for d in hub.pm.hook.queue_depths(session=session) if d]  # other packages' own work
    metrics.QUEUE_DEPTH.labels("ingest_pending").set(raw.get(RAW_PENDING, 0))
    metrics.QUEUE_DEPTH.labels("ingest_failed").set(raw.get(RAW_FAILED, 0))
    metrics.QUEUE_DEPTH.labels("deliver_pending").set(msgs.get(MSG_PENDING, 0))
    metrics.QUEUE_DEPTH.labels("deliver_failed").set(msgs.get(MSG_FAILED, 0))
    for depths in others:
        for stage, count in depths.items():
            metrics.QUEUE_DEPTH.labels(stage).set(count)


@router.get("/metrics")
def get_metrics(request: Request, hub: HubDep) -> Response:
    if not hub.settings.metrics_public:
        require_admin(request)
    update_queue_depth(hub)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


# ---------------------------------------------------------------- /ops


def _basic_password(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return decoded.partition(":")[2]


def require_ops(request: Request) -> None:
    expected = request.app.state.admin_token.encode()
    for given in (bearer_token(request), _basic_password(request)):
        if given and hmac.compare_digest(given.encode(), expected):
            return
    raise Unauthorized("the ops page needs the admin token (Bearer, or as the HTTP Basic password)")


def _unauthorized() -> Response:
    """The contract's error body (§3), with a Basic challenge so a browser asks for the token."""
    refused = Unauthorized("the ops page needs the admin token (use it as the HTTP Basic password, any user name)")
    return JSONResponse(refused.to_body(), status_code=401,
                        headers={"www-authenticate": 'Basic realm="crmhub ops", charset="UTF-8"'})


def _form_token(request: Request, endpoint_id: str) -> str:
    key = request.app.state.admin_token.encode()
    return hmac.new(key, f"ops-replay:{endpoint_id}".encode(), hashlib.sha256).hexdigest()


def dashboard(hub: Any) -> dict[str, Any]:
    """Every source and endpoint with its status, failing ones first."""
    with hub.sessions() as session:
        sources = source_health(session)
        endpoints = []
        for row in session.scalars(select(EndpointRow).order_by(EndpointRow.created_at)).all():
            endpoints.append({"id": str(row.id), "url": row.url, "event_types": row.event_types,
                              "health": endpoint_health(session, row)})
    sources.sort(key=lambda s: (STATUS_ORDER.get(s["status"], 9), s["name"]))
    endpoints.sort(key=lambda e: (STATUS_ORDER.get(e["health"]["status"], 9), e["url"]))
    for endpoint in endpoints:  # why it fails, before anything has failed for good (pending retries included)
        health = endpoint["health"]
        endpoint["failures"] = (list_messages(hub, uuid.UUID(endpoint["id"]), None, RECENT_FAILURES, last_failed=True)
                                if health["failed"] or health["consecutive_failures"] else [])
    return {"sources": sources, "endpoints": endpoints, "now": utcnow()}


def _notice(key: str | None, n: str | None) -> str | None:
    text = NOTICES.get(key or "")
    count = int(n) if n and len(n) <= 9 and n.isascii() and n.isdigit() else 0
    return None if text is None else text.format(n=count)


@router.get("/ops")
def ops_page(request: Request, hub: HubDep, notice: str | None = None, n: str | None = None) -> Response:
    try:
        require_ops(request)
    except Unauthorized:
        return _unauthorized()
    context = dashboard(hub)
    for endpoint in context["endpoints"]:
        endpoint["form_token"] = _form_token(request, endpoint["id"])
    html = _templates.get_template("ops.html").render(**context, notice=_notice(notice, n))
    return HTMLResponse(html, headers={"cache-control": "no-store", "x-frame-options": "DENY"})


@router.post("/ops/endpoints/{endpoint_id}/replay")
async def ops_replay(request: Request, endpoint_id: uuid.UUID, hub: HubDep) -> Response:
    try:
        require_ops(request)
    except Unauthorized:
        return _unauthorized()
    # A urlencoded form parsed by hand: no python-multipart dependency for one hidden field.
    form = parse_qs((await request.body())[:4096].decode("utf-8", errors="replace"))
    token = (form.get("token") or [""])[0]
    if not hmac.compare_digest(token.encode(), _form_token(request, str(endpoint_id)).encode()):
        return JSONResponse({"error": {"code": "stale_form", "message": "stale or forged form; reload /ops",
                                       "details": None}}, status_code=403)
    queued = await run_in_threadpool(replay_endpoint, hub, endpoint_id, failed_only=True)
    return RedirectResponse(f"/ops?notice=replayed&n={queued}", status_code=303)
