"""The Celery app for the scale-out runtime (`crmhub worker`, `crmhub beat`).

Settings follow the house rules: JSON only, acks_late (safe because every task is
idempotent), prefetch 1, no reject-on-worker-lost, narrow autoretry on RetryableError.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from celery import Celery, Task, signals

from hub.errors import RetryableError
from hub.retry import BACKOFF_MAX_S, retry_delay_s
from hub.settings import Settings
from hub.tasks import TASKS

log = logging.getLogger(__name__)

RETRY_BACKOFF_MAX_S = int(BACKOFF_MAX_S)


def make_celery(settings: Settings, schedules: list[tuple[str, float]] | None = None) -> Celery:
    app = Celery("crmhub", broker=settings.broker_url, set_as_current=True)
    transport: dict[str, Any] = {"visibility_timeout": settings.broker_visibility_timeout_s}
    if settings.broker_key_prefix:
        transport["global_keyprefix"] = settings.broker_key_prefix
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=False,
        worker_prefetch_multiplier=1,
        task_default_queue="ingest",
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport,
        worker_hijack_root_logger=False,
        beat_schedule={
            name: {"task": name, "schedule": every, "options": {"queue": TASKS[name].queue}}
            for name, every in (schedules or [])
            if name in TASKS
        },
    )
    for definition in TASKS.values():
        app.task(
            name=definition.name,
            queue=definition.queue,
            bind=True,
            acks_late=True,
            ignore_result=True,
            autoretry_for=(RetryableError,),
            retry_backoff=True,
            retry_backoff_max=RETRY_BACKOFF_MAX_S,
            retry_jitter=True,
            max_retries=definition.max_retries,
        )(_honouring_retry_after(definition.fn))
    return app


def _honouring_retry_after(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The task body, retried no sooner than the upstream's `Retry-After` when the error carries one.

    Celery's autoretry backoff (kept for every other RetryableError) cannot see the error's own delay.
    """

    @functools.wraps(fn)
    def run(task: Task, *args: Any) -> Any:
        try:
            return fn(*args)
        except RetryableError as exc:
            if exc.retry_after is None:
                raise  # autoretry: exponential backoff with jitter
            countdown = retry_delay_s(task.request.retries, exc.retry_after)
            log.info("task %s%r retrying in %.1fs (Retry-After): %s", task.name, args, countdown, exc)
            raise task.retry(exc=exc, countdown=countdown) from exc

    return run


class CeleryRunner:
    """Sends tasks to the broker by name; the worker processes run them."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def enqueue(self, name: str, args: tuple[Any, ...], countdown: float | None = None) -> None:
        definition = TASKS[name]
        self.app.send_task(name, args=list(args), queue=definition.queue, countdown=countdown)

    def start(self) -> None:
        return None

    def stop(self, timeout: float = 10.0) -> None:
        return None

    def join(self, timeout: float = 30.0) -> bool:
        return True


@signals.worker_process_init.connect
def _fresh_engine_after_fork(**_: Any) -> None:
    """A forked worker must not reuse the parent's database connections."""
    from hub.runtime import current_hub

    hub = current_hub()
    if hub is not None:
        hub.engine.dispose(close=False)
