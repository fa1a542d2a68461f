"""`POST /hooks/asr/{token}`: Tencent ASR's result callback (platforms.md §4.3).

The callback is form-encoded and unsigned, so the token in the URL (unguessable, one
per job) is its only credential, and its content is not trusted: it only queues a
DescribeTaskStatus, which reads the result with the hub's own credentials.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from enrichment.jobs import accept_callback
from hub.bodies import read_limited
from hub.errors import NotFound, PayloadTooLarge
from hub.runtime import Hub

router = APIRouter()

ACK = {"code": 0, "message": "success"}
# A long call's resultDetail is large, but not this large. A bigger body is refused unread (413); nothing is
# lost, because the callback's content is never used: the job's poll reads the result itself.
MAX_CALLBACK_BYTES = 4 * 1024 * 1024


@router.post("/hooks/asr/{token}", include_in_schema=False)
async def asr_callback(token: str, request: Request) -> JSONResponse:
    hub: Hub = request.app.state.hub
    try:
        body = await read_limited(request.headers.get("content-length"), request.stream(), MAX_CALLBACK_BYTES)
    except PayloadTooLarge as err:
        return JSONResponse(err.to_body(), status_code=err.status_code)
    form = dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
    if not await run_in_threadpool(accept_callback, hub, token, form):
        err = NotFound("unknown ASR callback token", code="asr_job_not_found")
        return JSONResponse(err.to_body(), status_code=404)
    return JSONResponse(ACK)
