"""Which worker accepts the next connection: the one holding the fewest.

gunicorn's workers share one listening socket. When a connection arrives,
every idle worker wakes and the first to call ``accept()`` gets it; a worker
that is already awake (serving) is often first. A client that opens a few
long-lived connections at once, as the API server does with its keep-alive
pool, can so find all of them on one worker: measured with 2 workers and 4
connections, that worker's threads then contend for its one GIL and the
server answers 2,000 reviews/s instead of 6,000, at twice the CPU per review.

Here the workers publish how many connections each holds, in memory they
share (made before the fork), and a worker that holds more than another live
worker leaves the connection to it for a moment. It never waits long: after
``max_defer`` seconds it accepts anyway, so a stuck or busy sibling cannot
keep connections waiting, and a worker whose entry went stale (it died or
hangs) no longer counts.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AcceptBalance"]

#: How old a worker's entry may be and still count; workers refresh it at
#: least every sweep (0.25 s).
_STALE_SECONDS = 1.0
_LOCK_SECONDS = 1.0
#: A deferral streak ends when the worker is not asked again within this many
#: ``max_defer``: a worker that left a connection is asked again every few
#: milliseconds (webhook.serving.worker's _DEFER_SECONDS) while the connection waits.
_STREAK_GAP = 5


@dataclass
class AcceptBalance:
    """Connection counts of a server's workers, in shared memory.

    Make it in the master before the workers fork; each worker then calls
    :meth:`join` once, :meth:`publish` when its count changes (and regularly,
    as a heartbeat) and :meth:`should_accept` before accepting.
    """

    slots: int = 64
    max_defer: float = 0.01
    _pids: Any = field(init=False, repr=False)
    _counts: Any = field(init=False, repr=False)
    _beats: Any = field(init=False, repr=False)
    _lock: Any = field(init=False, repr=False)
    _slot: int = field(default=-1, init=False)
    _pid: int = field(default=0, init=False)
    _deferred_since: float = field(default=0.0, init=False)
    _deferred_last: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._pids = multiprocessing.RawArray(ctypes.c_int64, self.slots)
        self._counts = multiprocessing.RawArray(ctypes.c_int64, self.slots)
        self._beats = multiprocessing.RawArray(ctypes.c_double, self.slots)
        self._lock = multiprocessing.Lock()

    def join(self) -> bool:
        """Take a slot for this process (after the fork); False when none is free.

        A worker without a slot accepts as gunicorn would and is not counted.
        """
        now = time.monotonic()
        # A worker killed while holding the lock must not stall the others.
        locked = self._lock.acquire(timeout=_LOCK_SECONDS)
        try:
            for slot in range(self.slots):
                if self._pids[slot] == 0 or now - self._beats[slot] > _STALE_SECONDS:
                    self._pid = os.getpid()
                    self._pids[slot] = self._pid
                    self._counts[slot] = 0
                    self._beats[slot] = now
                    self._slot = slot
                    return True
        finally:
            if locked:
                self._lock.release()
        return False

    def leave(self) -> None:
        """Give the slot back (the worker is stopping)."""
        if self._slot >= 0 and self._pids[self._slot] == os.getpid():
            self._pids[self._slot] = 0
        self._slot = -1

    def publish(self, connections: int) -> None:
        """Record this worker's open connections, and that it is alive."""
        slot = self._slot
        if slot >= 0 and self._pids[slot] != self._pid:
            # This worker stalled past the staleness bound and a new worker
            # took its slot: sharing it, each would skip the other as itself.
            self._slot = -1
            if not self.join():
                return
            slot = self._slot
        if slot >= 0:
            self._counts[slot] = connections
            self._beats[slot] = time.monotonic()

    def should_accept(self, connections: int) -> bool:
        """Whether this worker, holding ``connections``, should take the next one now.

        Yes when no live sibling holds fewer, or when this worker has left
        connections waiting for ``max_defer`` seconds already.
        """
        slot = self._slot
        if slot < 0:
            return True
        now = time.monotonic()
        fewer = False
        for other in range(self.slots):
            if (
                other != slot
                and self._pids[other] != 0
                and self._counts[other] < connections
                and now - self._beats[other] <= _STALE_SECONDS
            ):
                fewer = True
                break
        if not fewer:
            self._deferred_since = 0.0
            return True
        last, self._deferred_last = self._deferred_last, now
        if self._deferred_since == 0.0 or now - last > _STREAK_GAP * self.max_defer:
            # A new streak. Asked again soon, this worker still sees the
            # connection it left; not asked for a while, a sibling took that
            # one and this is another, which the old streak's start must not
            # make this worker accept at once.
            self._deferred_since = now
            return False
        if now - self._deferred_since >= self.max_defer:
            self._deferred_since = 0.0
            return True
        return False
