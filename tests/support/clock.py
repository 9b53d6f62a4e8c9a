"""A wall clock tests drive: ``clock()`` is the instant, ``advance(seconds)`` moves it."""

from __future__ import annotations

import threading


class Clock:
    """Stands for ``time.time``; thread-safe, so background renewals read it too."""

    def __init__(self, start: float) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
