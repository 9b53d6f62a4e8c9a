"""Fair scheduling of check tasks: each review gets a lane, and lanes take turns.

All reviews of a worker share one set of check threads. Served first in,
first out, a review of thousands of images would queue its checks ahead of
every review that arrives after it, and an unrelated signed image would wait
seconds for a thread. So each review submits into a :class:`Lane` of its own:

- a lane runs at most ``share`` tasks at once, however many it has queued, so
  one review never holds more than its share of the threads;
- lanes with work take turns (round robin): a thread that comes free takes the
  next task of the next lane, so a review with one image waits for at most one
  task per other busy lane, not for all of their tasks.

Threads are daemons started as work arrives (see :class:`FairPool`), so one
stuck where no deadline reaches (a DNS lookup) never keeps a CLI command from
exiting after it has answered, as a ThreadPoolExecutor's would.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

__all__ = ["FairPool", "Lane", "default_share"]

T = TypeVar("T")

_Task = tuple[Future[T], Callable[[], T]]


def default_share(threads: int) -> int:
    """A review's share of ``threads``: a quarter, at least one.

    Four reviews stuck on hanging registries then hold every thread at most
    until their deadline, while any smaller number leaves threads free for
    everyone else.
    """
    return max(1, threads // 4)


class Lane(Generic[T]):
    """The queued tasks of one review; made by :meth:`FairPool.lane`."""

    def __init__(self, pool: FairPool[T], share: int) -> None:
        self._pool = pool
        self.share = share
        self.tasks: deque[_Task[T]] = deque()
        #: Tasks of this lane running now.
        self.running = 0
        #: Whether the lane is in the pool's turn order.
        self.ready = False
        self.closed = False

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Queue ``fn``; its future holds what it returns or raises."""
        return self._pool.submit(self, fn)

    def close(self) -> None:
        """Drop the tasks not yet started (their futures are cancelled).

        A review closes its lane once it has its answer: checks it no longer
        waits for (after its deadline) must not hold threads others need.
        """
        self._pool.close_lane(self)


class FairPool(Generic[T]):
    """Up to ``size`` daemon threads that run the tasks of lanes in turn.

    Invariants, under ``_lock``: a lane is in ``_turns`` exactly when it has
    tasks queued, runs fewer than its share, and is not closed; ``_idle``
    threads wait on ``_work`` and have not been woken.
    """

    def __init__(self, size: int, share: int | None = None, *, threads: bool = True) -> None:
        self.size = max(1, size)
        self.share = max(1, min(self.size, share if share is not None else default_share(size)))
        #: Whether submitting starts threads; without, tasks run only by :meth:`run_one`.
        self._threaded = threads
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._turns: deque[Lane[T]] = deque()
        self._threads = 0
        self._idle = 0
        self._stopping = False

    def lane(self) -> Lane[T]:
        """A new lane for one review's tasks."""
        return Lane(self, self.share)

    def submit(self, lane: Lane[T], fn: Callable[[], T]) -> Future[T]:
        """Queue ``fn`` in ``lane`` and wake or start a thread for it."""
        future: Future[T] = Future()
        start = False
        with self._lock:
            if lane.closed or self._stopping:
                future.cancel()
                future.set_running_or_notify_cancel()
                return future
            lane.tasks.append((future, fn))
            self._enqueue(lane)
            if not lane.ready:
                pass  # at its share: a thread of the lane takes it when one of its tasks ends
            elif self._idle > 0:
                self._idle -= 1  # this one is spoken for: the next submit starts another
                self._work.notify()
            elif self._threads < self.size and self._threaded:
                self._threads += 1
                start = True
        if start:
            threading.Thread(target=self._loop, name="trustgate-check", daemon=True).start()
        return future

    def close_lane(self, lane: Lane[T]) -> None:
        """Cancel ``lane``'s queued tasks and take it out of the turns."""
        with self._lock:
            lane.closed = True
            dropped = list(lane.tasks)
            lane.tasks.clear()
            if lane.ready:
                self._turns.remove(lane)
                lane.ready = False
        for future, _ in dropped:
            future.cancel()

    def close(self) -> None:
        """Stop the threads once they are idle; queued tasks still run first."""
        with self._lock:
            self._stopping = True
            self._work.notify_all()

    def _enqueue(self, lane: Lane[T]) -> None:
        if not lane.ready and lane.tasks and lane.running < lane.share and not lane.closed:
            lane.ready = True
            self._turns.append(lane)

    def take(self) -> tuple[Lane[T], _Task[T]] | None:
        """The next lane's next task, counted as running (None: nothing runnable).

        What a thread does between tasks; public so that tests can take turns
        by hand on a pool without threads. Hand the lane to :meth:`done` after.
        """
        with self._lock:
            return self._next_task()

    def done(self, lane: Lane[T]) -> None:
        """Count one task of ``lane`` (taken by :meth:`take`) as ended."""
        with self._lock:
            self._finished(lane)

    def run_one(self) -> bool:
        """Take and run the next task in this thread; False when none was runnable."""
        taken = self.take()
        if taken is None:
            return False
        lane, task = taken
        _run(task)
        self.done(lane)
        return True

    def _next_task(self) -> tuple[Lane[T], _Task[T]] | None:
        if not self._turns:
            return None
        lane = self._turns.popleft()
        lane.ready = False
        task = lane.tasks.popleft()
        lane.running += 1
        self._enqueue(lane)  # to the back of the turns: the others go first
        return lane, task

    def _finished(self, lane: Lane[T]) -> None:
        lane.running -= 1
        self._enqueue(lane)

    def _loop(self) -> None:
        lane: Lane[T] | None = None
        while True:
            with self._lock:
                if lane is not None:
                    self._finished(lane)
                taken = self._next_task()
                while taken is None:
                    if self._stopping:
                        self._threads -= 1
                        return
                    self._idle += 1  # the waker takes it off
                    self._work.wait()
                    taken = self._next_task()
            lane, task = taken
            _run(task)


def _run(task: _Task[T]) -> None:
    future, fn = task
    if not future.set_running_or_notify_cancel():
        return
    # The boundary of a worker thread: whatever a task raises goes to the
    # caller through the future, as ThreadPoolExecutor does.
    try:
        future.set_result(fn())
    except BaseException as exc:
        future.set_exception(exc)
