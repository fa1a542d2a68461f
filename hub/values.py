"""Parsing the loosely typed values platforms send: times and money amounts.

Shared by connectors (which may not import each other): China platforms send epoch seconds,
epoch milliseconds, or local time without a zone, which the contract reads as Asia/Shanghai.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from hub.schemas import QualityIssue, whole_minute_offset

CHINA_TZ = ZoneInfo("Asia/Shanghai")
_EPOCH_MS_FROM = 10**11  # larger epoch values are milliseconds (10**11 s is the year 5138)
_AMOUNT_NOISE = re.compile(r"[\s,，_]|^(?:CNY|RMB|¥|￥)|(?:元|CNY|RMB)$", re.IGNORECASE)
_AMOUNT_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
MAX_AMOUNT = Decimal(10) ** 15
# A platform's time outside these bounds is residue ("0001-01-01", "9999-12-31"), not an instant it meant.
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(3000, 1, 1, tzinfo=UTC)


def from_epoch(value: float) -> datetime:
    """Unix seconds (or milliseconds, when that large) → an aware datetime in Asia/Shanghai."""
    seconds = value / 1000 if abs(value) >= _EPOCH_MS_FROM else value
    return datetime.fromtimestamp(seconds, UTC).astimezone(CHINA_TZ)


def plausible_time(when: datetime) -> bool:
    """True for an aware time between 1970 and 3000 that converts to UTC (what the database stores).

    Year-1 and year-9999 placeholders overflow that conversion; one such time must not fail a batch.
    """
    if when.tzinfo is None:
        return False
    try:
        return EARLIEST_TIME <= when.astimezone(UTC) < LATEST_TIME
    except (OverflowError, ValueError):
        return False


def parse_platform_time(value: object) -> datetime | None:
    """An epoch number, digit string or ISO/RFC 3339 text → aware datetime; naive text is Asia/Shanghai.

    Returns None for anything else (including out-of-range and implausible times), never raises.
    """
    parsed: datetime | None
    try:
        if isinstance(value, bool) or value is None:
            return None
        if isinstance(value, int | float):
            parsed = from_epoch(float(value)) if value > 0 else None
        elif not isinstance(value, str) or not value.strip():
            return None
        elif value.strip().isdigit():
            parsed = from_epoch(float(value)) if int(value) > 0 else None
        else:
            return parse_iso_time(value)
    except (ValueError, OverflowError, OSError):
        return None
    return parsed if parsed is not None and plausible_time(parsed) else None


def parse_iso_time(value: object) -> datetime | None:
    """ISO 8601 / RFC 3339 text → aware datetime, naive text read as Asia/Shanghai (contract: China platforms'
    local time); None for anything else or an implausible time. An offset RFC 3339 cannot write (`+08:00:30`)
    comes back in UTC (`whole_minute_offset`)."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("/", "-"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=CHINA_TZ)
    return whole_minute_offset(parsed) if plausible_time(parsed) else None


def time_or_received(value: object, field: str, received_at: datetime, issues: list[QualityIssue]) -> datetime:
    """The platform's time for `field`, or the received time with an `invalid_time` issue when it is unreadable.

    A missing value falls back silently: the platform did not claim a time.
    """
    parsed = parse_platform_time(value)
    if parsed is not None:
        return parsed
    if value is not None:
        issues.append(QualityIssue(field=field, code="invalid_time",
                                   detail=f"{str(value)[:40]!r} unreadable; received time used"))
    return received_at


def parse_amount(value: object) -> Decimal | None:
    """A money amount as sent (`1280`, `"1,280.00"`, `"¥1280"`, `"1280元"`) → Decimal, or None if unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | Decimal):
        amount = Decimal(value)
    elif isinstance(value, float):
        amount = Decimal(repr(value))
    elif isinstance(value, str):
        text = _AMOUNT_NOISE.sub("", value.strip())
        if not _AMOUNT_RE.fullmatch(text):
            return None
        try:
            amount = Decimal(text)
        except InvalidOperation:
            return None
    else:
        return None
    if not amount.is_finite() or abs(amount) >= MAX_AMOUNT:
        return None
    return amount


def amount_json(amount: Decimal | None) -> float | None:
    """An amount as a JSON number rounded to cents (what event properties carry)."""
    return None if amount is None else float(amount.quantize(Decimal("0.01")))


def platform_date(value: object) -> str | None:
    """`2026-03-10`, a datetime text or an epoch (s or ms) → ISO date in Asia/Shanghai, else None."""
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()[:10]).isoformat()
        except ValueError:
            pass
    when = parse_platform_time(value)
    return when.astimezone(CHINA_TZ).date().isoformat() if when else None
