"""One failure repeated many times is logged as one outage, not once per request.

A full disk or a database that is down refuses every inbound request. The writer logged each with a traceback and
the route logged it again: on a 3 MB disk filled in a test, 3,932 refused requests left 7,865 tracebacks, burying
the one line that mattered (and filling the log's disk in turn). An outage is now logged when it starts (with the
traceback), at most once a minute while it lasts (one line, with how many failed), and when it ends.
"""

from __future__ import annotations

import logging
import threading
import time

REMIND_EVERY_S = 60.0


class OutageLog:
    """Log a run of failures of one operation as one outage. Thread-safe."""

    def __init__(self, log: logging.Logger, what: str, remind_every_s: float = REMIND_EVERY_S) -> None:
        self.log = log
        self.what = what  # e.g. "storing inbound requests"
        self.remind_every_s = remind_every_s
        self.failures = 0  # in the current outage
        self._reminded_at = 0.0
        self._since = 0.0
        self._lock = threading.Lock()

    def failed(self, exc: BaseException, count: int = 1) -> None:
        """`count` operations failed with `exc`."""
        now = time.monotonic()
        with self._lock:
            first = self.failures == 0
            self.failures += count
            remind = not first and now - self._reminded_at >= self.remind_every_s
            if first:
                self._since = self._reminded_at = now
            elif remind:
                self._reminded_at = now
            failures, lasted = self.failures, now - self._since
        if first:
            self.log.error("%s failed: %s", self.what, reason(exc), exc_info=exc)
        elif remind:
            self.log.error("%s still failing after %.0f s (%d failed so far): %s", self.what, lasted, failures,
                           reason(exc))

    def succeeded(self) -> None:
        if not self.failures:  # the common case, without the lock
            return
        with self._lock:
            failures, lasted, self.failures = self.failures, time.monotonic() - self._since, 0
        if failures:
            self.log.warning("%s works again after %.0f s; %d failed meanwhile", self.what, lasted, failures)


def reason(exc: BaseException) -> str:
    """One line: the driver's own error for a database one (SQLAlchemy's message adds the statement)."""
    orig = getattr(exc, "orig", None)
    cause = orig if isinstance(orig, BaseException) else exc
    return f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
