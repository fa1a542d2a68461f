"""One failure repeated many times is logged as one outage, not once per request.

A full disk or a database that is down refuses every inbound request. The writer logged each with a traceback and
the route logged it again: on a 3 MB disk filled in a test, 3,932 refused requests left 7,865 tracebacks, burying
the one line that mattered (and filling the log's disk in turn). An outage is now logged when it starts (with the
traceback), at most once a minute while it lasts (one line, with how many failed), and when it ends.

A database that flaps (backends killed every 0.3 s, a connection pool behind a failing proxy) ends and starts an
outage at every dropped connection: that logged 42 outages, each with its traceback, in 20 s. An outage that starts
within a minute of the last one logged is quiet; what the quiet ones added up to is logged once a minute.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

REMIND_EVERY_S = 60.0


class OutageLog:
    """Log a run of failures of one operation as one outage, and outages close together as one. Thread-safe."""

    def __init__(self, log: logging.Logger, what: str, remind_every_s: float = REMIND_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.what = what  # e.g. "storing inbound requests"
        self.remind_every_s = remind_every_s
        self.clock = clock
        self.failures = 0  # in the current outage
        self._quiet = False  # the current outage started too soon after a logged one to be logged itself
        self._reminded_at = 0.0
        self._since = 0.0
        self._logged_start_at: float | None = None  # when an outage's start was last logged
        self._flaps = self._flap_failures = 0  # quiet outages that ended, not yet reported
        self._flaps_since = 0.0
        self._lock = threading.Lock()

    def failed(self, exc: BaseException, count: int = 1) -> None:
        """`count` operations failed with `exc`."""
        now = self.clock()
        unreported = (0, 0)
        with self._lock:
            first = self.failures == 0
            self.failures += count
            remind = not first and now - self._reminded_at >= self.remind_every_s
            if first:
                self._since = self._reminded_at = now
                self._quiet = self._logged_start_at is not None and now - self._logged_start_at < self.remind_every_s
                if not self._quiet:
                    self._logged_start_at = now
                    unreported, self._flaps, self._flap_failures = (self._flaps, self._flap_failures), 0, 0
            elif remind:
                self._reminded_at = now
            failures, lasted, quiet = self.failures, now - self._since, self._quiet
        if first and not quiet:
            if unreported[0]:
                self._log_flaps(*unreported, now - self._flaps_since)
            self.log.error("%s failed: %s", self.what, reason(exc), exc_info=exc)
        elif remind:
            self.log.error("%s still failing after %.0f s (%d failed so far): %s", self.what, lasted, failures,
                           reason(exc))

    def succeeded(self) -> None:
        if not self.failures:  # the common case, without the lock
            return
        now = self.clock()
        report: tuple[int, int, float] | None = None
        with self._lock:
            failures, lasted, quiet, self.failures = self.failures, now - self._since, self._quiet, 0
            if failures and quiet:
                if not self._flaps:
                    self._flaps_since = self._since
                self._flaps += 1
                self._flap_failures += failures
                if now - self._flaps_since >= self.remind_every_s:
                    report = (self._flaps, self._flap_failures, now - self._flaps_since)
                    self._flaps = self._flap_failures = 0
        if failures and not quiet:
            self.log.warning("%s works again after %.0f s; %d failed meanwhile", self.what, lasted, failures)
        elif report:
            self._log_flaps(*report)

    def _log_flaps(self, outages: int, failures: int, lasted: float) -> None:
        self.log.warning("%s failed and recovered %d more times in %.0f s (%d failed): the service is flapping",
                         self.what, outages, lasted, failures)


def reason(exc: BaseException) -> str:
    """One line: the driver's own error for a database one (SQLAlchemy's message adds the statement)."""
    orig = getattr(exc, "orig", None)
    cause = orig if isinstance(orig, BaseException) else exc
    return f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
