"""Ids are version 7 UUIDs whose time is the clock's, in order, unique across a fork."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from hub import ids


@pytest.fixture(autouse=True)
def _fresh_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ids, "_last_ms", -1)  # what other tests made stays out of these ones


def _ms(value: uuid.UUID) -> int:
    return value.int >> 80


def test_an_id_is_a_version_7_uuid_of_the_current_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    value = ids.uuid7()
    after = time.time_ns() // 1_000_000
    assert value.version == 7 and value.variant == uuid.RFC_4122
    assert before <= _ms(value) <= after


def test_ids_made_faster_than_one_a_millisecond_keep_the_clocks_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """uuid6's uuid7() added a millisecond per id within one: 200,000 ids in 0.5 s were 200 s ahead."""
    now = [1_765_000_000_000 * 1_000_000]
    monkeypatch.setattr(ids, "clock_ns", lambda: now[0])
    made = []
    for _ in range(5):  # five milliseconds of 2,000 ids each
        made += [ids.uuid7() for _ in range(2_000)]
        now[0] += 1_000_000
    assert made == sorted(made) and len(set(made)) == len(made)
    assert {_ms(v) for v in made} == {1_765_000_000_000 + n for n in range(5)}


def test_a_clock_stepping_back_keeps_ids_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_765_000_000_000 * 1_000_000]
    monkeypatch.setattr(ids, "clock_ns", lambda: now[0])
    first = ids.uuid7()
    now[0] -= 5_000 * 1_000_000  # NTP steps the clock back 5 s
    second = ids.uuid7()
    assert second > first and _ms(second) == _ms(first)


def test_a_forked_process_makes_ids_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same millisecond in parent and child (a fixed clock): the child seeds its own counter."""
    monkeypatch.setattr(ids, "clock_ns", lambda: 1_765_000_000_000 * 1_000_000)
    ids.uuid7()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        os.write(write, "\n".join(str(ids.uuid7()) for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = {uuid.UUID(line) for line in pipe.read().split()}
    os.waitpid(pid, 0)
    parent = {ids.uuid7() for _ in range(100)}
    assert len(child) == 100 and not child & parent
    counter_bits = (1 << 80) - (1 << 32)
    assert min(v.int & counter_bits for v in child) != min(v.int & counter_bits for v in parent)


def test_new_id_is_time_ordered_and_unique() -> None:
    made = [ids.new_id() for _ in range(10_000)]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert _ms(made[-1]) <= time.time_ns() // 1_000_000
