"""Task registry and dispatch: one decorator, two runtimes (in-process thread or Celery).

Tasks are thin: ids or JSON primitives in, then a call into a plain service
function that re-fetches what it needs. Every task is idempotent on its ids, which
is what makes `acks_late` and re-queuing after a crash safe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.orm import Session

from hub.db import after_commit

log = logging.getLogger(__name__)

QUEUES = ("ingest", "deliver", "enrich")


@dataclass(frozen=True)
class TaskDef:
    name: str
    fn: Callable[..., Any]
    queue: str
    max_retries: int


TASKS: dict[str, TaskDef] = {}


def task(
    name: str, *, queue: str = "ingest", max_retries: int = 5
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `fn` as task `name` on `queue`. The function stays directly callable (and unit-testable)."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        TASKS[name] = TaskDef(name, fn, queue, max_retries)
        return fn

    return decorate


class Runner(Protocol):
    def enqueue(self, name: str, args: tuple[Any, ...], countdown: float | None = None) -> None: ...

    def start(self) -> None: ...

    def stop(self, timeout: float = 10.0) -> None: ...


def enqueue(name: str, *args: Any, countdown: float | None = None) -> None:
    from hub.runtime import get_hub

    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}")
    get_hub().runner.enqueue(name, args, countdown)


def enqueue_after_commit(session: Session, name: str, *args: Any, countdown: float | None = None) -> None:
    """Enqueue once the caller's transaction commits: a worker must never see uncommitted rows."""
    after_commit(session, lambda: enqueue(name, *args, countdown=countdown))
