"""Counter increments of the request path, applied in batches.

A review increments a few labelled counters: its decision, each policy's
outcome, what was waived. Each ``inc()`` takes the child's lock and, with
several workers sharing their metrics, writes a memory-mapped file. Request
threads append the increment to a deque instead (no lock, no thread woken);
one background thread adds up what arrived every ``FLUSH_SECONDS`` and
increments each child once, and a scrape applies what is pending first. A
scrape so shows its own worker's counts at once and other workers' within
``FLUSH_SECONDS``; no increment is lost, since a worker applies what is left
when it exits.
"""

from __future__ import annotations

import atexit
import collections
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator
from itertools import islice, repeat
from typing import TypeVar

from prometheus_client import Counter

__all__ = ["FLUSH_SECONDS", "Tally", "take"]

#: How long an increment waits for the background thread at most, in seconds.
FLUSH_SECONDS = 0.1

_Key = tuple[Counter, tuple[str, ...]]


class Tally:
    """Increments waiting to be applied to their counters."""

    def __init__(self) -> None:
        self._pending: deque[_Key] = deque()
        self._children: dict[_Key, Counter] = {}
        self._lock = threading.Lock()  # one flush at a time
        _tallies.add(self)
        _start_flusher()

    def inc(self, counter: Counter, labels: tuple[str, ...], amount: int = 1) -> None:
        """``counter.labels(*labels).inc(amount)``, soon."""
        if amount == 1:
            self._pending.append((counter, labels))
        else:
            self._pending.extend(repeat((counter, labels), amount))

    def flush(self) -> None:
        """Apply what is pending: one increment per counter child.

        The pending increments are taken and counted in C (no bytecode per
        increment), so the thread holds the GIL for microseconds, not for a
        loop that request threads would wait out in 5 ms switch intervals.
        """
        with self._lock:
            sums = collections.Counter(take(self._pending))
            for key, amount in sums.items():
                child = self._children.get(key)
                if child is None:
                    child = self._children[key] = key[0].labels(*key[1])
                child.inc(amount)


T = TypeVar("T")


def take(items: deque[T]) -> Iterator[T]:
    """What ``items`` holds now, taken from its left end by C code alone.

    Safe while other threads append: each item is taken once, and items
    appended meanwhile stay for the next call. None must not be an item (it
    ends the taking).
    """
    return islice(iter(items.popleft, None), len(items))


_tallies: weakref.WeakSet[Tally] = weakref.WeakSet()
_flusher: threading.Thread | None = None
_flusher_lock = threading.Lock()


def _start_flusher() -> None:
    """Start the one thread that flushes every tally of this process, once.

    Started by the first tally, in the process that counts (a server's worker
    builds its app after the fork).
    """
    global _flusher
    with _flusher_lock:
        if _flusher is not None and _flusher.is_alive():
            return
        _flusher = threading.Thread(target=_run, name="trustgate-tally", daemon=True)
        _flusher.start()


def _run() -> None:
    while True:
        time.sleep(FLUSH_SECONDS)
        _flush_all()


def _flush_all() -> None:
    for tally in list(_tallies):
        tally.flush()


atexit.register(_flush_all)
