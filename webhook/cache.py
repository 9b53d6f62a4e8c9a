"""The TTL caches, in one place.

Every cache is bounded, expires its entries, is safe to share between request
threads, and is owned by the objects ``create_app`` builds (no module state).
Verification results are keyed by digest and by everything they depend on, so
a moved tag, a changed policy or a rotated key never meets a stale answer.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, cast

from cachetools import TLRUCache

from webhook.offline import needs_io

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


class SharedTier(Protocol):
    """The tier behind the local caches that every worker of every replica reads.

    ``sharedcache.SharedCache`` implements it over Redis. Both calls are
    bounded by a small time budget and never raise: a shared tier that fails
    is a miss, never a failed review.
    """

    def get(self, cache: str, key: Hashable) -> tuple[Any, float] | None:
        """The value stored for ``key`` in ``cache`` and its seconds left, or None."""
        ...

    def put(self, cache: str, key: Hashable, value: Any, ttl: float) -> None:
        """Share ``value`` for ``ttl`` seconds (best effort)."""
        ...

    def status(self) -> dict[str, Any]:
        """Where the tier is and whether it is used, for /readyz."""
        ...


@dataclass(frozen=True, slots=True)
class _Entry(Generic[V]):
    value: V
    expires: float  # time.monotonic()


def _entry_expiry(_key: Hashable, entry: _Entry[Any], _now: float) -> float:
    return entry.expires


class Cache(Generic[V]):
    """A named, locked TTL cache that reports hits and misses.

    With a ``shared`` tier, a local miss asks the shared tier, and what is
    put is shared for ``shared_ttl`` seconds. An entry found there is kept
    locally only for the time it has left, so a TTL holds across the tiers.
    """

    def __init__(
        self,
        name: str,
        size: int,
        ttl: float,
        observer: Observer | None = None,
        *,
        shared: SharedTier | None = None,
        shared_ttl: float | None = None,
    ):
        self.name = name
        self.ttl = ttl
        self._data: TLRUCache[Hashable, _Entry[V]] = TLRUCache(
            maxsize=size, ttu=_entry_expiry, timer=time.monotonic
        )
        self._lock = threading.Lock()
        self._observer = observer
        self._shared = shared
        self._shared_ttl = ttl if shared_ttl is None else min(ttl, shared_ttl)

    def get(self, key: Hashable) -> V | None:
        """The live value for ``key``, or None; a local miss asks the shared tier."""
        with self._lock:
            entry = self._data.get(key)
        if self._observer is not None:
            self._observer(self.name, "miss" if entry is None else "hit")
        if entry is not None:
            return entry.value
        if self._shared is None:
            return None
        needs_io("the shared cache")  # an offline pass stops here (see webhook.offline)
        found = self._shared.get(self.name, key)
        if found is None:
            return None
        value, left = found
        self._remember(key, value, min(left, self.ttl))
        return cast(V, value)

    def put(self, key: Hashable, value: V) -> None:
        """Remember ``value`` for the cache's lifetime, and share it when a tier is set."""
        if self._shared is not None:
            needs_io("the shared cache")  # an offline pass stops here (see webhook.offline)
        self._remember(key, value, self.ttl)
        if self._shared is not None:
            self._shared.put(self.name, key, value, self._shared_ttl)

    def _remember(self, key: Hashable, value: V, ttl: float) -> None:
        entry = _Entry(value, time.monotonic() + ttl)
        with self._lock:
            self._data[key] = entry

    def clear(self) -> None:
        """Forget everything (locally)."""
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)


#: Denials (failed verifications, failing grade sources) are shared at most
#: this long, so a transient failure seen by one worker does not stick.
MAX_SHARED_FAILURE_TTL = 60.0


class Caches:
    """The caches one app uses: tag -> digest, verification outcomes, recent failures, grades.

    ``shared``, when given, is the tier every worker of every replica reads
    behind these local caches (``cache.shared`` in trustgate.yaml).
    """

    def __init__(
        self,
        settings: CacheSettings | None = None,
        observer: Observer | None = None,
        shared: SharedTier | None = None,
    ):
        s = settings or CacheSettings()
        self.shared = shared
        self.digests: Cache[str] = Cache(
            "digest", s.digest_size, s.digest_ttl, observer, shared=shared
        )
        self.verified: Cache[Any] = Cache(
            "verified", s.verified_size, s.verified_ttl, observer, shared=shared
        )
        self.failures: Cache[Any] = Cache(
            "failure",
            s.failure_size,
            s.failure_ttl,
            observer,
            shared=shared,
            shared_ttl=MAX_SHARED_FAILURE_TTL,
        )
        # Freshness answers by digest; under a day, so a new advisory shows the next day.
        self.grades: Cache[Any] = Cache("grade", s.grade_size, s.grade_ttl, observer, shared=shared)
