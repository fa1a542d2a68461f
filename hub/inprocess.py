"""The embedded runtime: tasks on background threads in the serving process, no broker.

A bounded queue feeds the workers; delayed tasks and periodic schedules sit in a
heap served by one timer thread. Nothing here is the source of truth: rows in
the database are, and `hub.pipeline.recover_on_startup` re-queues what a crash left pending.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import queue
import threading
import time
from typing import Any

from hub.errors import RetryableError
from hub.retry import retry_countdown_s
from hub.tasks import TASKS

log = logging.getLogger(__name__)

_STOP = object()
# While requests are arriving, background tasks give way to the request path (one process
# shares one GIL): each task waits up to this long for a gap in ingest before it runs anyway,
# so a burst is acknowledged at full speed and processing lag stays bounded under sustained load.
# (Scale-out deployments process on Celery workers in other processes and never defer.)
MAX_DEFER_S = 2.0
DEFER_STEP_S = 0.01
FEED_STEP_S = 0.05  # how often `feed` looks for room in a lane
# A schedule's first run comes this soon after start-up, then every period. Nothing remembers the last run across
# restarts here (Celery beat keeps a schedule file), so an hourly check (the daily quality report, the silence
# scan) never ran in a hub restarted more often than hourly. Every periodic task is a sweep that finds its own
# work, so an early run costs a read.
FIRST_RUN_S = 60.0


class InProcessRunner:
    """One lane (a queue and its `workers` threads) per task queue, as Celery workers listen per queue.

    Why lanes: a delivery to a receiver that never answers holds its thread for the whole HTTP timeout, and an
    ASR or registry call waits on the internet. Sharing one thread, they held back the processing of every
    inbound request behind them (helper-24 measured 81 of 120 accepted requests still unprocessed after a
    minute); in their own lanes, `ingest` keeps going.
    """

    def __init__(self, *, workers: int = 1, maxsize: int = 10_000) -> None:
        self._lanes: dict[str, queue.Queue[Any]] = {}
        self._lanes_lock = threading.Lock()
        self._maxsize = maxsize
        self._timers: list[tuple[float, int, str, tuple[Any, ...], int]] = []
        self._timer_lock = threading.Condition()
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._workers = workers
        self._running = False
        self._periodic: list[tuple[str, float]] = []
        self.dropped = 0
        self._stopping = False
        # (name, args) of every task waiting in a lane, or on its timer for a retry (see `enqueue`).
        self._waiting: set[tuple[str, tuple[Any, ...]]] = set()
        self._waiting_lock = threading.Lock()
        self._busy = 0
        self._busy_lock = threading.Lock()
        self.ingest_busy: Any = None  # callable() -> bool, set by the hub: is the request path busy?

    # ---------------------------------------------------------------- API
    def enqueue(self, name: str, args: tuple[Any, ...], countdown: float | None = None, attempt: int = 0) -> None:
        """Queue `name(*args)`, after `countdown` seconds when given.

        A copy of a task already waiting here, in its lane or on its timer for a retry, is not queued again: the
        waiting one runs after this call and re-reads the database, so a second run could only find its work done.
        (The requeue sweep used to queue a second copy of every row still queued behind a backlog.) A task that
        has started no longer counts: what changed since it read the database needs a run of its own.
        """
        key = (name, args)
        if countdown and countdown > 0:
            if attempt and not self._claim(key):
                return
            with self._timer_lock:
                heapq.heappush(self._timers, (time.monotonic() + countdown, next(self._seq), name, args, attempt))
                self._timer_lock.notify()
            return
        if self._claim(key):
            self._put(name, args, attempt)

    def feed(self, name: str, args: tuple[Any, ...]) -> bool:
        """`enqueue` once the task's lane is less than half full, waiting for that: a backlog of any length goes in
        as fast as the lane drains, and the other half stays free for new work. False once the runner stops.

        Never from a task of the same lane: with its only worker waiting here, the lane would not drain.
        """
        lane, room = self._lane(name), max(1, self._maxsize // 2)
        while self._running and not self._stopping and lane.qsize() >= room:
            time.sleep(FEED_STEP_S)
        if not self._running or self._stopping:
            return False
        self.enqueue(name, args)
        return True

    def _claim(self, key: tuple[str, tuple[Any, ...]]) -> bool:
        """Mark `key` waiting; False when it already is. Arguments that cannot be hashed (a list) are not tracked."""
        with self._waiting_lock:
            try:
                if key in self._waiting:
                    return False
                self._waiting.add(key)
            except TypeError:
                pass
            return True

    def _release(self, key: tuple[str, tuple[Any, ...]]) -> None:
        with self._waiting_lock, contextlib.suppress(TypeError):
            self._waiting.discard(key)

    def _put(self, name: str, args: tuple[Any, ...], attempt: int) -> None:
        """Into the lane; the caller has claimed (name, args)."""
        try:
            self._lane(name).put_nowait((name, args, attempt))
        except queue.Full:
            # The row stays pending in the database; the periodic sweep picks it up.
            self._release((name, args))
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("in-process queue full (%d tasks left to the recovery sweep so far)", self.dropped)

    def schedule(self, name: str, every_s: float) -> None:
        self._periodic.append((name, every_s))

    def _lane(self, task_name: str) -> queue.Queue[Any]:
        """The queue of the task's lane (`ingest` for a task it does not know), made on first use."""
        definition = TASKS.get(task_name)
        lane_name = definition.queue if definition is not None else "ingest"
        lane = self._lanes.get(lane_name)
        if lane is None:
            with self._lanes_lock:
                lane = self._lanes.get(lane_name)
                if lane is None:
                    lane = queue.Queue(maxsize=self._maxsize)
                    self._lanes[lane_name] = lane
                    if self._running:
                        self._start_lane(lane_name, lane)
        return lane

    def _start_lane(self, lane_name: str, lane: queue.Queue[Any]) -> None:
        for i in range(self._workers):
            t = threading.Thread(target=self._work, args=(lane,), name=f"crmhub-{lane_name}-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def start(self) -> None:
        if self._running:
            return
        with self._lanes_lock:
            self._running = True
            for lane_name in ("ingest", "deliver", "enrich"):
                self._lanes.setdefault(lane_name, queue.Queue(maxsize=self._maxsize))
            for lane_name, lane in self._lanes.items():
                self._start_lane(lane_name, lane)
        timer = threading.Thread(target=self._timer_loop, name="crmhub-timer", daemon=True)
        timer.start()
        self._threads.append(timer)
        for name, every in self._periodic:
            self.enqueue(name, (), countdown=min(every, FIRST_RUN_S))

    def stop(self, timeout: float = 10.0) -> None:
        """Drain what is queued (up to `timeout`), then stop the threads."""
        if not self._running:
            return
        self._stopping = True  # `feed` stops adding work to the drain
        self.join(timeout)
        with self._lanes_lock:
            self._running = False
            self._stopping = False
            for lane in self._lanes.values():
                for _ in range(self._workers):
                    lane.put(_STOP)
        with self._timer_lock:
            self._timer_lock.notify_all()
        for t in self._threads:
            t.join(timeout=2)
        self._threads.clear()

    def join(self, timeout: float = 30.0) -> bool:
        """Wait until the queue is empty and no task runs (delayed tasks excluded). True if idle."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # unfinished_tasks counts from put() to task_done(): no gap between a lane's get() and the task
            # starting, or a task enqueueing into another lane, in which every lane looks idle.
            idle = all(lane.unfinished_tasks == 0 for lane in list(self._lanes.values()))
            if idle:
                return True
            time.sleep(0.01)
        return False

    def run_due_timers(self) -> int:
        """Move every delayed task to the queue now (tests and `crmhub demo` use it to skip waiting).

        Periodic schedules stay on their timers. Returns how many tasks were moved.
        """
        periodic = {n for n, _ in self._periodic}
        with self._timer_lock:
            items = [t for t in self._timers if t[2] not in periodic]
            self._timers = [t for t in self._timers if t[2] in periodic]
            heapq.heapify(self._timers)
        for _, _, name, args, attempt in items:
            self._from_timer(name, args, attempt)
        return len(items)

    # ---------------------------------------------------------------- threads
    def _work(self, lane: queue.Queue[Any]) -> None:
        while True:
            item = lane.get()
            if item is _STOP:
                lane.task_done()
                return
            name, args, attempt = item
            self._release((name, args))  # taken: a copy queued from now on is a run of its own
            with self._busy_lock:
                self._busy += 1
            try:
                self._give_way_to_ingest()
                self._run(name, args, attempt)
            finally:
                with self._busy_lock:
                    self._busy -= 1
                lane.task_done()

    def _give_way_to_ingest(self) -> None:
        probe = self.ingest_busy
        if probe is None:
            return
        waited = 0.0
        while waited < MAX_DEFER_S and probe():
            time.sleep(DEFER_STEP_S)
            waited += DEFER_STEP_S

    def _run(self, name: str, args: tuple[Any, ...], attempt: int) -> None:
        definition = TASKS.get(name)
        if definition is None:  # a plugin not loaded in this process: said once per task, the lane lives on
            log.error("task %s%r: no such task in this process (is its plugin loaded?)", name, args)
            return
        try:
            definition.fn(*args)
        except RetryableError as exc:
            if attempt < definition.max_retries:
                delay = retry_countdown_s(attempt, exc.retry_after)
                log.info("task %s%r retrying in %.1fs: %s", name, args, delay, exc)
                self.enqueue(name, args, countdown=delay, attempt=attempt + 1)
            else:
                log.error("task %s%r gave up after %d retries: %s", name, args, attempt, exc)
        except Exception:
            log.exception("task %s%r failed", name, args)

    def _timer_loop(self) -> None:
        periodic = dict(self._periodic)
        while self._running:
            with self._timer_lock:
                now = time.monotonic()
                if not self._timers or self._timers[0][0] > now:
                    wait = (self._timers[0][0] - now) if self._timers else 1.0
                    self._timer_lock.wait(timeout=min(wait, 1.0))
                    continue
                _, _, name, args, attempt = heapq.heappop(self._timers)
            self._from_timer(name, args, attempt)
            if name in periodic and not args:
                self.enqueue(name, (), countdown=periodic[name])

    def _from_timer(self, name: str, args: tuple[Any, ...], attempt: int) -> None:
        """A due timer into its lane. A retry was claimed when it was scheduled; other delayed tasks claim now."""
        if attempt:
            self._put(name, args, attempt)
        else:
            self.enqueue(name, args)
