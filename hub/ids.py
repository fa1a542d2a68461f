"""Row and event ids: time-ordered UUIDs (version 7, RFC 9562).

Random (version 4) keys scatter every insert across the whole primary-key and unique indexes, so
on a table of a few hundred thousand rows each insert touches cold pages; measured on SQLite,
inserting the last 350,000 of 400,000 rows took 8.8 s with uuid4 keys and 3.2 s with uuid7.
A uuid7 is still a UUID to every consumer; it also sorts by creation time.
"""

from __future__ import annotations

import uuid

from uuid6 import uuid7

__all__ = ["new_id"]


def new_id() -> uuid.UUID:
    return uuid7()
