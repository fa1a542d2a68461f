"""The embedded runner's timers: `run_due_timers()` runs delayed work now and keeps periodic schedules."""

from __future__ import annotations

import time

from hub.inprocess import InProcessRunner
from hub.tasks import TASKS, TaskDef


def test_run_due_timers_moves_delayed_tasks_and_keeps_the_schedules() -> None:
    ran: list[str] = []
    TASKS["test.delayed"] = TaskDef("test.delayed", lambda tag: ran.append(tag), "ingest", 0)
    TASKS["test.periodic"] = TaskDef("test.periodic", lambda: ran.append("periodic"), "ingest", 0)
    runner = InProcessRunner()
    runner.schedule("test.periodic", 3600)
    try:
        runner.start()
        runner.enqueue("test.delayed", ("a",), countdown=3600)
        runner.enqueue("test.delayed", ("b",), countdown=7200)
        assert runner.run_due_timers() == 2
        assert runner.join(timeout=10) and sorted(ran) == ["a", "b"]
        assert runner.run_due_timers() == 0  # nothing left but the schedule ...
        assert [t[2] for t in runner._timers] == ["test.periodic"]  # ... which is still armed
    finally:
        runner.stop()
        del TASKS["test.delayed"], TASKS["test.periodic"]


def test_a_task_stuck_in_one_queue_does_not_hold_back_another_queue() -> None:
    """A delivery to a receiver that never answers held the only worker thread for its whole timeout, and
    the processing of inbound requests waited behind it (helper-24). Each queue now has its own lane."""
    import threading

    release = threading.Event()
    ran: list[str] = []
    TASKS["test.stuck_delivery"] = TaskDef("test.stuck_delivery", lambda: release.wait(30), "deliver", 0)
    TASKS["test.process"] = TaskDef("test.process", lambda tag: ran.append(tag), "ingest", 0)
    runner = InProcessRunner()
    try:
        runner.start()
        runner.enqueue("test.stuck_delivery", ())
        for tag in ("a", "b", "c"):
            runner.enqueue("test.process", (tag,))
        deadline = time.monotonic() + 10
        while len(ran) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ran == ["a", "b", "c"]  # processed while the delivery is still stuck
        assert not runner.join(timeout=0.2)  # and the runner knows it is not idle
        release.set()
        assert runner.join(timeout=10)
    finally:
        release.set()
        runner.stop()
        del TASKS["test.stuck_delivery"], TASKS["test.process"]


def test_an_unknown_task_is_logged_and_its_lane_keeps_working() -> None:
    """TASKS[name] outside the try: a KeyError killed the lane's only thread, and every later task of that
    queue waited forever (helper-26)."""
    ran: list[str] = []
    TASKS["test.after_unknown"] = TaskDef("test.after_unknown", lambda: ran.append("ok"), "ingest", 0)
    runner = InProcessRunner()
    try:
        runner.start()
        runner.enqueue("test.no_such_task", ())
        runner.enqueue("test.after_unknown", ())
        assert runner.join(timeout=10) and ran == ["ok"]
    finally:
        runner.stop()
        del TASKS["test.after_unknown"]


def test_a_task_waiting_in_its_lane_is_not_queued_twice_but_a_started_one_is() -> None:
    """The requeue sweep queued a second copy of every raw request still queued behind a backlog. A copy
    waiting in the lane runs after the enqueue and re-reads the database, so it is enough; a task that has
    started may have read the database before the change that queued it again, so that copy runs."""
    import threading

    release = threading.Event()
    ran: list[int] = []

    def process(raw_id: int) -> None:
        ran.append(raw_id)
        if raw_id == 3 and ran.count(3) == 1:
            runner.enqueue("test.dedup", (3,))  # queued again while running, as deliver_due re-queues itself

    TASKS["test.block"] = TaskDef("test.block", lambda: release.wait(30), "ingest", 0)
    TASKS["test.dedup"] = TaskDef("test.dedup", process, "ingest", 0)
    runner = InProcessRunner()
    try:
        runner.start()
        runner.enqueue("test.block", ())
        for raw_id in (1, 2, 1, 3, 1, 2):
            runner.enqueue("test.dedup", (raw_id,))
        release.set()
        assert runner.join(timeout=10)
        assert ran == [1, 2, 3, 3]
        runner.enqueue("test.dedup", (1,))  # done: a later enqueue is a run of its own
        assert runner.join(timeout=10) and ran == [1, 2, 3, 3, 1]
    finally:
        release.set()
        runner.stop()
        del TASKS["test.block"], TASKS["test.dedup"]


def test_a_retry_waiting_on_its_timer_stands_for_a_new_copy() -> None:
    """A raw request whose processing waits to be retried is pending, so the sweep queued it again: two runs
    now, the retry later, and a second chain of retries if the conflict lasted."""
    from hub.errors import RetryableError

    ran: list[str] = []

    def flaky(tag: str) -> None:
        ran.append(tag)
        if len(ran) == 1:
            raise RetryableError("deadlock", retry_after=3600)  # the retry stays on its timer

    TASKS["test.flaky"] = TaskDef("test.flaky", flaky, "ingest", 3)
    runner = InProcessRunner()
    try:
        runner.start()
        runner.enqueue("test.flaky", ("a",))
        assert runner.join(timeout=10) and ran == ["a"]
        runner.enqueue("test.flaky", ("a",))  # the sweep, while the retry waits
        assert runner.join(timeout=10) and ran == ["a"]
        assert runner.run_due_timers() == 1 and runner.join(timeout=10)
        assert ran == ["a", "a"]
    finally:
        runner.stop()
        del TASKS["test.flaky"]


def test_feed_waits_for_room_in_the_lane_instead_of_dropping() -> None:
    """`enqueue` drops a task when its lane is full (a sweep finds the row later); startup recovery feeds a
    backlog longer than the lane, so it waits for room instead, keeping half the lane free for new work."""
    ran: list[int] = []
    TASKS["test.fed"] = TaskDef("test.fed", ran.append, "ingest", 0)
    runner = InProcessRunner(maxsize=4)
    try:
        runner.start()
        assert all(runner.feed("test.fed", (n,)) for n in range(50))
        assert runner.join(timeout=10)
        assert ran == list(range(50)) and runner.dropped == 0
    finally:
        runner.stop()
        del TASKS["test.fed"]
    assert not runner.feed("test.fed", (99,))  # stopped: refused, nothing waits for a lane nobody drains


def test_an_hourly_schedule_first_runs_soon_after_start_then_every_hour(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The first run came one period after start-up: an hourly check (the daily quality report) never ran in a
    hub restarted more often than hourly (helper-56)."""
    import hub.inprocess as inprocess

    ran: list[float] = []
    TASKS["test.hourly"] = TaskDef("test.hourly", lambda: ran.append(time.monotonic()), "ingest", 0)
    runner = InProcessRunner()
    runner.schedule("test.hourly", 3600)
    try:
        runner.start()
        [(due, *_)] = runner._timers
        assert due <= time.monotonic() + inprocess.FIRST_RUN_S and inprocess.FIRST_RUN_S < 3600
        monkeypatch.setattr(inprocess, "FIRST_RUN_S", 0.05)
        runner.stop()
        runner = InProcessRunner()
        runner.schedule("test.hourly", 3600)
        runner.start()
        deadline = time.monotonic() + 10
        while not ran and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(ran) == 1 and runner.join(timeout=10)
        [(due, *_)] = runner._timers
        assert due - ran[0] > 3000  # then once an hour
    finally:
        runner.stop()
        del TASKS["test.hourly"]
