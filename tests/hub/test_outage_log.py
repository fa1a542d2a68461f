"""OutageLog: one outage, and outages close together, each logged once, on a clock of the test's own."""

from __future__ import annotations

import logging

import pytest

from hub.outage_log import OutageLog


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _outage_log(clock: _Clock) -> OutageLog:
    return OutageLog(logging.getLogger("tests.outage"), "reaching the database", clock=clock)


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tests.outage"]


def test_one_outage_is_logged_when_it_starts_once_a_minute_and_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    clock = _Clock()
    outages = _outage_log(clock)
    caplog.set_level(logging.WARNING)
    for _ in range(130):  # one failure a second for 130 s
        outages.failed(OSError("disk full"))
        clock.now += 1.0
    outages.succeeded()
    outages.succeeded()
    assert _lines(caplog) == [
        "reaching the database failed: OSError: disk full",
        "reaching the database still failing after 60 s (61 failed so far): OSError: disk full",
        "reaching the database still failing after 120 s (121 failed so far): OSError: disk full",
        "reaching the database works again after 130 s; 130 failed meanwhile",
    ]
    assert caplog.records[0].exc_info is not None and all(r.exc_info is None for r in caplog.records[1:])


def test_a_flapping_database_is_logged_once_a_minute_not_once_per_dropped_connection(
        caplog: pytest.LogCaptureFixture) -> None:
    """Backends killed every 0.3 s for 20 s logged 42 outages from the API, each with a traceback."""
    clock = _Clock()
    outages = _outage_log(clock)
    caplog.set_level(logging.WARNING)
    for _ in range(360):  # 90 s: a failure, then a success 0.125 s later, every 0.25 s
        outages.failed(OSError("server closed the connection unexpectedly"))
        clock.now += 0.125
        outages.succeeded()
        clock.now += 0.125
    started = "reaching the database failed: OSError: server closed the connection unexpectedly"
    ended = "reaching the database works again after 0 s; 1 failed meanwhile"
    assert _lines(caplog) == [
        started, ended,  # at 0 s
        "reaching the database failed and recovered 239 more times in 60 s (239 failed): the service is flapping",
        started, ended,  # at 60 s
    ]
    assert sum(r.exc_info is not None for r in caplog.records) == 2
    caplog.clear()
    clock.now += 30.0  # quiet; then a new outage, more than a minute after the last one logged
    outages.failed(OSError("no space left on device"))
    outages.succeeded()
    assert _lines(caplog) == [  # the flaps not yet reported come first, then the new outage as usual
        "reaching the database failed and recovered 119 more times in 60 s (119 failed): the service is flapping",
        "reaching the database failed: OSError: no space left on device",
        "reaching the database works again after 0 s; 1 failed meanwhile",
    ]
