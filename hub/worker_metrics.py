"""`crmhub worker --metrics-port`: the processing and delivery metrics of a Celery worker, scraped from the worker.

Why here and not at the API's /metrics: those counters move inside the worker's pool processes (each prefork
child has its own memory), which no `crmhub serve` can read. prometheus_client's multiprocess mode has every
process write its values to files in one directory, and the worker's main process sums those files when
scraped. The mode is chosen when prometheus_client is imported, which the command line has done by the time
a command runs, so the worker starts itself again (same process id, `exec`) with the directory set.
"""

from __future__ import annotations

import atexit
import hmac
import json
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app, multiprocess, values
from prometheus_client.exposition import ThreadingWSGIServer

__all__ = ["DIR_OPTION", "in_multiprocess_mode", "restart_in_multiprocess_mode", "serve", "use_dir"]

DIR_OPTION = "--metrics-dir"  # hidden: how the restarted worker learns the directory it owns
_PREFIX = "crmhub-worker-metrics-"


def in_multiprocess_mode() -> bool:
    return values.ValueClass is not values.MutexValue


def restart_in_multiprocess_mode(argv: list[str]) -> NoReturn:
    """Replace this process with the same command, metrics written to a new directory of its own."""
    directory = tempfile.mkdtemp(prefix=_PREFIX)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory}
    os.execve(sys.executable, [sys.executable, "-m", "hub.cli", *argv, DIR_OPTION, directory], env)


def use_dir(directory: Path) -> None:
    """Remove the directory when the worker's main process exits (its pool children inherit the hook, not the job)."""
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:
            shutil.rmtree(directory, ignore_errors=True)

    atexit.register(remove)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        return None


def serve(host: str, port: int, directory: Path, token: str | None) -> WSGIServer:
    """Serve the sum of every process's metrics at http://host:port/metrics on a daemon thread.

    `token`: the admin token the scrape must send as a bearer token (as the API's /metrics), or None for public.
    """
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    app = _require_token(make_wsgi_app(registry), token)
    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="crmhub-worker-metrics", daemon=True).start()
    return server


_REFUSED = json.dumps({"error": {"code": "unauthorized", "message": (
    "missing or wrong admin token (Authorization: Bearer <CRMHUB_ADMIN_TOKEN>)"), "details": None}}).encode()


def _require_token(app: Any, token: str | None) -> Any:
    if token is None:
        return app
    expected = f"Bearer {token}".encode()

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        given = environ.get("HTTP_AUTHORIZATION", "").encode()
        if hmac.compare_digest(given, expected):
            return app(environ, start_response)  # type: ignore[no-any-return]
        # The API's error shape (contract §3), so one client handles a refusal from either port.
        start_response("401 Unauthorized", [("Content-Type", "application/json"), ("WWW-Authenticate", "Bearer")])
        return [_REFUSED]

    return guarded
