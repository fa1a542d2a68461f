"""`read_limited`: the body limit, from Content-Length or from the bytes as they come."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from hub.bodies import read_limited
from hub.errors import PayloadTooLarge


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _read(declared: str | None, *parts: bytes, limit: int = 10) -> bytes:
    return asyncio.run(read_limited(declared, _chunks(*parts), limit))


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    with pytest.raises(PayloadTooLarge, match="body of 11 bytes exceeds the 10-byte limit"):
        _read("11", b"x")


def test_a_body_growing_over_the_limit_is_refused_whatever_was_declared() -> None:
    with pytest.raises(PayloadTooLarge, match="body exceeds the 10-byte limit"):
        _read(None, b"12345", b"678901")


@pytest.mark.parametrize("declared", ["\u00b2", "\u0661\u0662", "+5", " 5", ""])
def test_a_content_length_that_is_not_ascii_digits_leaves_the_limit_to_the_bytes(declared: str) -> None:
    """`Content-Length: ²` (latin-1 0xB2) passed `str.isdigit` and crashed int(): a 500 in place of a 200 or 413
    for a server that hands the header on unchecked (uvicorn's parsers refuse it first)."""
    assert _read(declared, b"12345") == b"12345"
    with pytest.raises(PayloadTooLarge):
        _read(declared, b"12345678901")
