"""Reading a request body without trusting its size: refused before reading, or as soon as it grows too big."""

from __future__ import annotations

from collections.abc import AsyncIterator

from hub.errors import PayloadTooLarge


async def read_limited(declared: str | None, chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The body, or PayloadTooLarge (413) when Content-Length or the bytes received exceed `limit`."""
    # isascii: `²` and other Unicode digits pass isdigit, and int() failed on `²` (a 500) or read `١٢` as 12.
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes exceeds the {limit}-byte limit")
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds the {limit}-byte limit")
        parts.append(chunk)
    return b"".join(parts)
