"""The Celery app for the scale-out runtime (`crmhub worker`, `crmhub beat`).

Settings follow the house rules: JSON only, acks_late (safe because every task is
idempotent), prefetch 1, no reject-on-worker-lost, retries only on RetryableError.
Two differences from Celery's defaults keep it doing what the in-process runner does:
retries wait `hub.retry`'s schedule (not autoretry's backoff), and no countdown outlasts
the broker's visibility timeout (`broker_countdown`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from celery import Celery, Task, signals

from hub.errors import RetryableError
from hub.retry import retry_countdown_s
from hub.settings import Settings
from hub.tasks import TASKS

log = logging.getLogger(__name__)


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
            # `expires`: a sweep still queued when the next one is sent is dropped by the worker that receives it, not
            # run. Beat sends on schedule whether or not a worker runs: after an hour without workers, 60 requeue
            # sweeps each queued copies of up to 10,000 pending requests, and every one of them ran.
            name: {"task": name, "schedule": every, "options": {"queue": TASKS[name].queue, "expires": every}}
            for name, every in (schedules or [])
            if name in TASKS
        },
    )
    visibility_s = settings.broker_visibility_timeout_s
    for definition in TASKS.values():
        app.task(
            name=definition.name,
            queue=definition.queue,
            bind=True,
            acks_late=True,
            ignore_result=True,
            max_retries=definition.max_retries,
            shared=False,  # this app's, with this app's visibility timeout; not handed to every later app
        )(_retrying(definition.fn, visibility_s))
    return app


def _retrying(fn: Callable[..., Any], visibility_s: float) -> Callable[..., Any]:
    """The task body, retried on RetryableError after `hub.retry.retry_countdown_s`, as the in-process runner does.

    Not `autoretry_for` (house rule 25): its backoff is 1 s doubling with full jitter, and it cannot see an
    upstream's `Retry-After`; one schedule for both runners is what `hub.retry` is for.
    """

    @functools.wraps(fn)
    def run(task: Task, *args: Any) -> Any:
        try:
            return fn(*args)
        except RetryableError as exc:
            countdown = broker_countdown(retry_countdown_s(task.request.retries, exc.retry_after), visibility_s)
            log.info("task %s%r retrying in %.1fs: %s", task.name, args, countdown, exc)
            raise task.retry(exc=exc, countdown=countdown) from exc

    return run


def broker_countdown(countdown: float | None, visibility_s: float) -> float | None:
    """`countdown`, at most half the broker's visibility timeout.

    Redis hands a delayed task to a worker at once, and the worker holds it unacknowledged until it runs; once
    that outlasts the visibility timeout Redis gives it out again, and again after every timeout (Celery's
    Redis guide): a delivery retry due in 10 h would run about ten times. Cut short, the task runs early, finds its
    work not due yet, and the periodic sweeps (delivery, ASR, requeue) start it when it is.
    """
    return None if countdown is None else min(countdown, visibility_s / 2)


class CeleryRunner:
    """Sends tasks to the broker by name; the worker processes run them."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.visibility_s = float((app.conf.broker_transport_options or {}).get("visibility_timeout", 3600.0))

    def enqueue(self, name: str, args: tuple[Any, ...], countdown: float | None = None) -> None:
        definition = TASKS[name]
        countdown = broker_countdown(countdown, self.visibility_s)
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
