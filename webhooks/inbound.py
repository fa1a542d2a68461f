"""The inbound edge `/hooks/{source_id}`: verify, store durably, enqueue, answer. Nothing else.

Everything slow (parsing, identity, delivery) happens after the answer, from the
stored raw request, so a platform's retry timer never fires because we were busy.

One read may follow the store: when a connector names its events' ids up front
(`Connector.event_keys`, POS and ERP), a *new* request is answered per event — one
indexed lookup finds which of them the source has seen. It runs for a lone event too:
an event first sent inside a batch and then re-sent alone has a new request key, and
only this lookup tells the sender it is a duplicate. A redelivered request needs no read.

Two entries share one core (`accept`): a raw ASGI app on the hot path for UUID source
ids (registered with `register_hot_routes`, it skips FastAPI's router and middleware
stack, which cost more than the work itself), and an API route that answers every other
`/hooks/...` path with a 404 naming the problem.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import bindparam, literal_column, select, union_all
from sqlalchemy.exc import SQLAlchemyError

from hub import metrics
from hub.bodies import read_limited
from hub.connector import InboundRequest, Reply
from hub.errors import (
    BodyTimeout,
    HubError,
    NotFound,
    PayloadError,
    PayloadTooLarge,
    ShuttingDown,
    UnreadableBody,
    VerificationError,
)
from hub.ingest import RawSubmission, Rejection, storable_key
from hub.models import RAW_PENDING, EventRow, RawEvent
from hub.outage_log import OutageLog
from hub.runtime import Hub
from hub.schemas import unstorable_text
from webhooks.health import HANDSHAKE

log = logging.getLogger(__name__)
router = APIRouter()

HOOK_METHODS = ["GET", "POST", "PUT", "OPTIONS"]
# Once the source cache expires, a database outage refuses every request here: logged once per outage.
_SOURCES_OUTAGE = OutageLog(log, "reading sources for inbound requests")
# Between two parts of a body, as nginx's client_body_timeout: uvicorn has none, so a sender that stopped midway (or
# announced more bytes than it sent) held its connection and what it had sent for ever (2,000 such: +26 MB, none
# closed after 75 s).
BODY_IDLE_TIMEOUT_S = 60.0
STORAGE_UNAVAILABLE = {"error": {"code": "storage_unavailable", "details": None,
                                 "message": "the request could not be stored; retry later"}}
INTERNAL_ERROR = {"error": {"code": "internal_error", "details": None,
                            "message": "unexpected error; the hub's log has the details"}}
# A browser's CORS preflight (analytics.js sends Authorization and X-Retry-Count from the visitor's page):
# answered without touching the source. It lets the browser send; the POST itself is verified as always.
PREFLIGHT_HEADERS = [(b"access-control-allow-origin", b"*"), (b"access-control-allow-methods", b"POST"),
                     (b"access-control-allow-headers", b"authorization, content-type, content-encoding, x-retry-count"),
                     (b"access-control-max-age", b"86400"), (b"content-length", b"0")]


async def accept(
    hub: Hub,
    *,
    method: str,
    source_id: str,
    path: str,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    body: AsyncIterator[bytes],
) -> Reply:
    """Verify, store durably, and build the platform's answer. `headers` names are lower-case."""
    started = time.perf_counter()
    try:
        source = hub.active_source(uuid.UUID(source_id))
    except (ValueError, NotFound):
        return Reply(404, NotFound(f"no enabled source {source_id!r}", code="source_not_found").to_body())
    except HubError:  # e.g. a config sealed with another key: the operator must act; the platform retries later
        log.exception("source %s cannot be loaded", source_id)
        return Reply(503, {"error": {"code": "source_unavailable", "details": None,
                                     "message": "this source's configuration cannot be read now; retry later"}})
    except SQLAlchemyError as exc:  # the database is down: a 503 the platform retries, as when storing fails
        _SOURCES_OUTAGE.failed(exc)
        return Reply(503, STORAGE_UNAVAILABLE)
    _SOURCES_OUTAGE.succeeded()
    connector, config = source.connector, source.config
    inbound: InboundRequest | None = None
    try:
        raw = await read_limited(headers.get("content-length"), body, hub.settings.max_body_bytes)
        inbound = InboundRequest(method=method, body=raw, path=path, headers=headers, query=query)
        try:
            connector.verify(inbound, config)
            handshake = connector.handshake(inbound, config)
            if handshake is not None:  # logged like a refusal, so source health counts every request it received
                hub.writer.reject(Rejection(source.id, handshake.status, HANDSHAKE))
                metrics.INGEST_REQUESTS.labels(connector.name, HANDSHAKE).inc()
                return handshake
            dedup_key, count, keys = _request_keys(connector, inbound, config)
        except RecursionError:  # json.loads of `[[[[…` well under the size limit: unreadable, not a 500
            raise UnreadableBody("the body nests too deeply to be read", code="body_too_deep") from None
    except HubError as err:
        if isinstance(err, VerificationError | PayloadError | PayloadTooLarge):
            hub.writer.reject(Rejection(source.id, err.status_code, err.code))
        metrics.INGEST_REQUESTS.labels(connector.name, err.code).inc()
        return connector.error_reply(inbound, err)
    submission = RawSubmission(source.id, storable_key(dedup_key), inbound.to_record(), inbound.body, count)
    try:
        raw_id, is_new = await hub.writer.submit(submission)
    except ShuttingDown as err:  # nothing was stored; answered now, not when the server gives up on the request
        metrics.INGEST_REQUESTS.labels(connector.name, err.code).inc()
        return Reply(503, err.to_body())
    except Exception as exc:  # nothing was stored: a 5xx makes the platform retry later
        # The writer has logged why (once per outage, hub.outage_log): not again for every refused request.
        log.debug("could not store an inbound request for source %s: %s", source.id, type(exc).__name__)
        metrics.INGEST_REQUESTS.labels(connector.name, "storage_unavailable").inc()
        return Reply(503, STORAGE_UNAVAILABLE)
    metrics.INGEST_REQUESTS.labels(connector.name, "accepted" if is_new else "duplicate").inc()
    accepted, duplicates = (count, 0) if is_new else (0, count)
    if is_new and keys and raw_id is not None:
        accepted, duplicates = await _count_per_event(hub, source.id, raw_id, keys, count)
    metrics.INGEST_LATENCY.labels(connector.name).observe(time.perf_counter() - started)
    return connector.ack(inbound, config, accepted=accepted, duplicates=duplicates)


def _request_keys(connector: Any, inbound: InboundRequest, config: Any) -> tuple[str, int, Any]:
    """(dedup key, event count, per-event keys) of a verified request.

    A body that is readable but no message the connector can normalise (a JSON object without the
    platform's fields) is still stored, under its digest and with no events, so the pipeline quarantines
    it with the reason and the platform gets 2xx (contract §3). Only an `UnreadableBody` is refused.
    """
    try:
        return (connector.dedup_key(inbound, config), connector.event_count(inbound, config),
                connector.event_keys(inbound, config))
    except UnreadableBody:
        raise
    except PayloadError as err:
        log.warning("%s: verified request kept for quarantine: %s (%s)", connector.name, err.message, err.code)
        return "unrecognised:sha256:" + hashlib.sha256(inbound.body).hexdigest(), 0, None


# ---------------------------------------------------------------- per-event duplicates of a new request

# Built once (its compiled form is cached). Rows: events this source already stored under one of the ids (kind 0),
# and pending requests that hold one of the events alone, not parsed into events yet (kind 1). One statement: one
# round trip and one snapshot, so a request handled meanwhile is seen in exactly one of the halves.
_SEEN = union_all(
    select(EventRow.source_event_id, EventRow.raw_event_id, literal_column("0")).where(
        EventRow.source_id == bindparam("source_id"), EventRow.source_event_id.in_(bindparam("ids", expanding=True))),
    select(RawEvent.dedup_key, RawEvent.id, literal_column("1")).where(
        RawEvent.source_id == bindparam("source_id"), RawEvent.dedup_key.in_(bindparam("keys", expanding=True)),
        RawEvent.status == RAW_PENDING),
)


def seen_counts(hub: Hub, source_id: uuid.UUID, raw_id: int, keys: list[tuple[str, str]]) -> tuple[int, int]:
    """(accepted, duplicates) of the newly stored request `raw_id`, counted per event (contract §3).

    Seen: stored for this source by another request, pending alone in another request, or repeated earlier in
    this body. The request's own row is left out: the pipeline may already have stored its events. Not seen:
    an event pending inside another *batch* (its key hashes all ids); the pipeline still stores it once.
    """
    # An id no database can hold (a NUL, a lone surrogate) was never stored, so it is not looked for: sent to
    # PostgreSQL it failed the lookup, and the whole answer fell back to "all new" with a traceback in the log.
    ids = list(dict.fromkeys(sei for sei, _ in keys if unstorable_text(sei) is None))
    lone = list(dict.fromkeys(storable_key(key) for _, key in keys))
    with hub.engine.connect() as conn:
        rows = conn.execute(_SEEN, {"source_id": source_id, "ids": ids, "keys": lone}).all()
    seen = {(kind, value) for value, row_raw_id, kind in rows if row_raw_id != raw_id}
    new = {sei for sei, key in keys if (0, sei) not in seen and (1, storable_key(key)) not in seen}
    return len(new), len(keys) - len(new)


async def _count_per_event(
    hub: Hub, source_id: uuid.UUID, raw_id: int, keys: list[tuple[str, str]], count: int
) -> tuple[int, int]:
    """`seen_counts` off the event loop; the request is stored already, so a failed lookup still answers 200."""
    try:
        return await asyncio.to_thread(seen_counts, hub, source_id, raw_id, keys)
    except Exception:
        log.exception("could not count already-seen events of raw event %s", raw_id)
        return count, 0


# ---------------------------------------------------------------- the hot path (raw ASGI)


async def hooks_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """`/hooks/{uuid}[/{path}]` as a bare ASGI app: no Request/Response objects on the way."""

    async def chunks() -> AsyncIterator[bytes]:
        while True:
            try:
                async with asyncio.timeout(BODY_IDLE_TIMEOUT_S):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(f"no part of the body arrived for {BODY_IDLE_TIMEOUT_S:g} s",
                                  code="body_timeout") from None
            if message["type"] == "http.disconnect":  # the sender is gone mid-body: what came is not its request
                raise UnreadableBody("the connection closed before the body ended", code="incomplete_body")
            yield message.get("body", b"")
            if not message.get("more_body", False):
                return

    if scope["method"] == "OPTIONS":
        await send({"type": "http.response.start", "status": 204, "headers": PREFLIGHT_HEADERS})
        await send({"type": "http.response.body", "body": b""})
        return
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
    params = scope.get("path_params", {})
    try:
        reply = await accept(
            scope["app"].state.hub, method=scope["method"], source_id=str(params["source_id"]),
            path=params.get("path", ""), headers=headers, query=query, body=chunks(),
        )
    except Exception:  # this path bypasses the app's error handlers: answer in the contract's shape all the same
        log.exception("inbound request for source %s failed", params.get("source_id"))
        reply = Reply(500, INTERNAL_ERROR)
    content = reply.content()
    response_headers = [(b"content-type", reply.media_type.encode()), (b"content-length", str(len(content)).encode())]
    response_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()]
    if reply.status == BodyTimeout.status_code:  # a stalled sender: free the connection now, not after keep-alive
        response_headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": reply.status, "headers": response_headers})
    await send({"type": "http.response.body", "body": content})


HOT_ROUTES = (
    ("/hooks/{source_id:uuid}", hooks_asgi),
    ("/hooks/{source_id:uuid}/{path:path}", hooks_asgi),
)


# ---------------------------------------------------------------- everything else under /hooks


async def receive_api(request: Request, source_id: str, path: str = "") -> Response:
    reply = await accept(
        request.app.state.hub, method=request.method, source_id=source_id, path=path,
        headers={k.lower(): v for k, v in request.headers.items()}, query=dict(request.query_params),
        body=request.stream(),
    )
    return Response(reply.content(), status_code=reply.status, media_type=reply.media_type, headers=reply.headers)


# Non-UUID ids reach these API routes (and get a 404 naming the problem); UUIDs take the hot path.
router.add_api_route("/hooks/{source_id}", receive_api, methods=HOOK_METHODS, include_in_schema=False)
router.add_api_route("/hooks/{source_id}/{path:path}", receive_api, methods=HOOK_METHODS, include_in_schema=False)
