"""The embedded runner's timers: `run_due_timers()` runs delayed work now and keeps periodic schedules."""

from __future__ import annotations

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
