"""The inbound edge `/hooks/{source_id}`: verify, store durably, enqueue, answer. Nothing else.

Everything slow (parsing, identity, delivery) happens after the answer, from the
stored raw request, so a platform's retry timer never fires because we were busy.
"""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import Response

from hub import metrics
from hub.connector import InboundRequest, Reply
from hub.errors import HubError, NotFound, PayloadError, PayloadTooLarge, VerificationError
from hub.ingest import RawSubmission, Rejection
from hub.runtime import Hub

router = APIRouter()

HOOK_METHODS = ["GET", "POST", "PUT"]


def _respond(reply: Reply) -> Response:
    return Response(reply.content(), status_code=reply.status, media_type=reply.media_type, headers=reply.headers)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes exceeds the {limit}-byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def receive(request: Request, source_id: str, path: str = "") -> Response:
    hub: Hub = request.app.state.hub
    started = time.perf_counter()
    try:
        sid = uuid.UUID(source_id)
    except ValueError:
        err = NotFound(f"no source {source_id!r}", code="source_not_found")
        return _respond(Reply(404, err.to_body()))
    try:
        source = hub.active_source(sid)
    except NotFound as err:
        return _respond(Reply(404, err.to_body()))
    connector, config = source.connector, source.config
    inbound: InboundRequest | None = None
    try:
        body = await _read_body(request, hub.settings.max_body_bytes)
        inbound = InboundRequest(
            method=request.method, body=body, path=path,
            headers={k.lower(): v for k, v in request.headers.items()},
            query=dict(request.query_params),
        )
        connector.verify(inbound, config)
        handshake = connector.handshake(inbound, config)
        if handshake is not None:
            return _respond(handshake)
        dedup_key = connector.dedup_key(inbound, config)
        count = connector.event_count(inbound, config)
    except HubError as err:
        if isinstance(err, VerificationError | PayloadError | PayloadTooLarge):
            hub.writer.reject(Rejection(sid, err.status_code, err.code))
        metrics.INGEST_REQUESTS.labels(connector.name, err.code).inc()
        return _respond(connector.error_reply(inbound, err))
    submission = RawSubmission(sid, dedup_key[:300], inbound.to_record(), inbound.body, count)
    _, is_new = await hub.writer.submit(submission)
    metrics.INGEST_REQUESTS.labels(connector.name, "accepted" if is_new else "duplicate").inc()
    metrics.INGEST_LATENCY.labels(connector.name).observe(time.perf_counter() - started)
    reply = connector.ack(inbound, config, accepted=count if is_new else 0, duplicates=0 if is_new else count)
    return _respond(reply)


router.add_api_route("/hooks/{source_id}", receive, methods=HOOK_METHODS, include_in_schema=False)
router.add_api_route("/hooks/{source_id}/{path:path}", receive, methods=HOOK_METHODS, include_in_schema=False)
