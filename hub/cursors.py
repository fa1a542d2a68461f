"""Opaque cursors for the admin API's paginated lists (contract §3: `limit=&cursor=` → `next_cursor`).

Kept in the kernel so every package's list endpoints issue and check cursors alike: base64url JSON of the
last row's position, refused with 422 `invalid_cursor` naming the parameter when it was not issued by us.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from hub.errors import InvalidRequest

__all__ = ["cursor_int", "cursor_time", "cursor_uuid", "decode_cursor", "encode_cursor", "invalid_cursor"]


def encode_cursor(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def invalid_cursor(param: str) -> InvalidRequest:
    return InvalidRequest("invalid cursor", code="invalid_cursor",
                          details=[{"field": param, "message": "pass back a next_cursor unchanged"}])


def decode_cursor(cursor: str, param: str = "cursor") -> dict[str, Any]:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(data, dict):
            raise ValueError("not an object")
        return data
    except (ValueError, TypeError) as exc:
        raise invalid_cursor(param) from exc


def cursor_int(data: dict[str, Any], key: str, param: str, default: int | None = None) -> int:
    """A position number from a cursor: an integer the database can compare (0 … 2**63-1), else 422."""
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise invalid_cursor(param)
    return value


def cursor_time(data: dict[str, Any], key: str, param: str) -> datetime:
    """A time from a cursor: ISO text with its offset (as next_cursor carries it), else 422."""
    value = data.get(key)
    try:
        at = datetime.fromisoformat(value) if isinstance(value, str) else None
        if at is None or at.tzinfo is None:
            raise ValueError("not an aware time")
        at.astimezone(UTC)  # a time the database can store; year 1 at +08:00 cannot
    except (ValueError, OverflowError) as exc:
        raise invalid_cursor(param) from exc
    return at


def cursor_uuid(data: dict[str, Any], key: str, param: str) -> uuid.UUID:
    """A row id from a cursor (a tie-breaker between rows of one time), else 422."""
    value = data.get(key)
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise invalid_cursor(param)
