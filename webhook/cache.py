"""The TTL caches, in one place.

Every cache is bounded, expires its entries, is safe to share between request
threads, and is owned by the objects ``create_app`` builds (no module state).
Verification results are keyed by digest and by everything they depend on, so
a moved tag, a changed policy or a rotated key never meets a stale answer.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from cachetools import TTLCache

V = TypeVar("V")


def fingerprint(basis: object) -> str:
    """A short, stable key part for what a cached answer depends on (a policy section).

    The frozen policy dataclasses' ``repr`` names every field that matters (key
    PEMs, trusted-root digests, thresholds), so two bases with one fingerprint
    ask the same question.
    """
    return hashlib.sha256(repr(basis).encode()).hexdigest()[:32]


#: Called with (cache name, "hit" | "miss") on every lookup, for metrics.
Observer = Callable[[str, str], None]


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """Sizes (entries) and lifetimes (seconds) of the caches; ``cache:`` in trustgate.yaml."""

    digest_ttl: float = 60.0
    digest_size: int = 4096
    verified_ttl: float = 600.0
    verified_size: int = 4096
    failure_ttl: float = 30.0
    failure_size: int = 1024
    grade_ttl: float = 3600.0
    grade_size: int = 4096

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> CacheSettings:
        """Read ``cache:`` (camelCase keys: digestTTL, digestSize, verifiedTTL, ...)."""
        names = {
            "digestTTL": "digest_ttl",
            "digestSize": "digest_size",
            "verifiedTTL": "verified_ttl",
            "verifiedSize": "verified_size",
            "failureTTL": "failure_ttl",
            "failureSize": "failure_size",
            "gradeTTL": "grade_ttl",
            "gradeSize": "grade_size",
        }
        return cls(**{names[k]: v for k, v in data.items() if k in names})


class Cache(Generic[V]):
    """A named, locked TTL cache that reports hits and misses."""

    def __init__(self, name: str, size: int, ttl: float, observer: Observer | None = None):
        self.name = name
        self._data: TTLCache[Hashable, V] = TTLCache(maxsize=size, ttl=ttl)
        self._lock = threading.Lock()
        self._observer = observer

    def get(self, key: Hashable) -> V | None:
        """The live value for ``key``, or None."""
        with self._lock:
            value = self._data.get(key)
        if self._observer is not None:
            self._observer(self.name, "miss" if value is None else "hit")
        return value

    def put(self, key: Hashable, value: V) -> None:
        """Remember ``value`` for the cache's lifetime."""
        with self._lock:
            self._data[key] = value

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)


class Caches:
    """The caches one app uses: tag -> digest, verification outcomes, recent failures, grades."""

    def __init__(self, settings: CacheSettings | None = None, observer: Observer | None = None):
        s = settings or CacheSettings()
        self.digests: Cache[str] = Cache("digest", s.digest_size, s.digest_ttl, observer)
        self.verified: Cache[Any] = Cache("verified", s.verified_size, s.verified_ttl, observer)
        self.failures: Cache[Any] = Cache("failure", s.failure_size, s.failure_ttl, observer)
        # Freshness answers by digest; under a day, so a new advisory shows the next day.
        self.grades: Cache[Any] = Cache("grade", s.grade_size, s.grade_ttl, observer)
