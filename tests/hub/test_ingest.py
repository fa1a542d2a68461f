"""The raw writer: what was submitted before `stop()` is stored and answered; what comes after is refused at once."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from hub.errors import ShuttingDown
from hub.ingest import RawSubmission
from hub.runtime import Hub
from tests.helpers import add_source, client_for, raw_rows


def _submission(source_id: str, key: str) -> RawSubmission:
    return RawSubmission(uuid.UUID(source_id), key, {"method": "POST", "headers": {}, "query": {}, "path": ""}, b"{}")


def test_stop_answers_every_earlier_submission_and_refuses_later_ones_at_once(hub: Hub) -> None:
    """A submission handed to a stopped writer sat behind its stop marker, and its sender waited for an
    answer that never came (a request until the server's own timeout, `submit_sync` for 60 s)."""
    sid = add_source(client_for(hub), "web", "site", {"write_key": "write-key-ingest"})
    writer = hub.writer

    async def scenario() -> list[tuple[int | None, bool]]:
        early = [asyncio.ensure_future(writer.submit(_submission(sid, f"early-{n}"))) for n in range(5)]
        await asyncio.sleep(0)  # each has handed its row to the writer
        await asyncio.to_thread(writer.stop)
        with pytest.raises(ShuttingDown):
            await asyncio.wait_for(writer.submit(_submission(sid, "late")), timeout=10)
        return await asyncio.wait_for(asyncio.gather(*early), timeout=10)

    results = asyncio.run(scenario())
    assert all(raw_id is not None and is_new for raw_id, is_new in results)
    with pytest.raises(ShuttingDown):
        writer.submit_sync(_submission(sid, "late-sync"))
    assert sorted(row.dedup_key for row in raw_rows(hub)) == [f"early-{n}" for n in range(5)]
