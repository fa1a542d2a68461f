"""Platform times (hub.values) and how times leave the hub (hub.schemas.rfc3339): contract §4's RFC 3339."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from hub.schemas import rfc3339
from hub.values import parse_iso_time, parse_platform_time

Parse = Callable[[object], datetime | None]

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$")


@pytest.mark.parametrize("parse", [parse_iso_time, parse_platform_time])
def test_an_offset_with_seconds_comes_back_as_the_same_instant_in_utc(parse: Parse) -> None:
    parsed = parse("2026-03-02T20:16:00+08:00:30")
    assert parsed == datetime(2026, 3, 2, 12, 15, 30, tzinfo=UTC)
    assert parsed is not None and parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize("parse", [parse_iso_time, parse_platform_time])
def test_local_time_without_a_zone_is_shanghai(parse: Parse) -> None:
    parsed = parse("2026-03-05 12:03:41")
    assert parsed is not None and parsed.isoformat() == "2026-03-05T12:03:41+08:00"


@pytest.mark.parametrize("text", ["", "yesterday", "1969-12-31T23:59:59Z", "3000-01-01T00:00:00Z", "0000"])
def test_what_is_not_a_plausible_iso_time_is_none(text: str) -> None:
    assert parse_iso_time(text) is None


def test_epoch_stays_the_platform_parsers_business() -> None:
    assert parse_iso_time("1772451600") is None
    assert parse_platform_time("1772451600") == datetime(2026, 3, 2, 11, 40, tzinfo=UTC)


@pytest.mark.parametrize("offset", [timedelta(hours=8, seconds=30), timedelta(hours=8, minutes=5, seconds=43),
                                    timedelta(hours=-3, microseconds=-1)])
def test_times_leave_in_rfc3339_even_with_an_offset_it_cannot_write(offset: timedelta) -> None:
    when = datetime(2026, 3, 2, 20, 16, tzinfo=timezone(offset))
    text = rfc3339(when)
    assert text is not None and RFC3339.match(text) and datetime.fromisoformat(text) == when


def test_whole_minute_offsets_are_kept() -> None:
    assert rfc3339(datetime(2026, 3, 2, 20, 16, tzinfo=timezone(timedelta(hours=5, minutes=45)))) == (
        "2026-03-02T20:16:00+05:45")
