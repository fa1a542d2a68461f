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
