"""The baseline for bench/ingest.py: a bare Starlette endpoint that reads the body and answers 202."""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def hook(request: Request) -> Response:
    await request.body()
    return Response(b'{"accepted":1,"duplicates":0}', status_code=202, media_type="application/json")


app = Starlette(routes=[Route("/hooks/{source_id}/{path:path}", hook, methods=["POST"])])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
