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

from webhook.cache.singleflight import SingleFlight
from webhook.core.deadline import Deadline
from webhook.core.offline import needs_io

V = TypeVar("V")


def fingerprint(basis: object) -> str:
    """A short, stable key part for what a cached answer depends on (a policy section).

    The frozen policy dataclasses' ``repr`` names every field that matters (key
    PEMs, trusted-root digests, thresholds), so two bases with one fingerprint
    ask the same question.
    """
    return hashlib.sha256(repr(basis).encode()).hexdigest()[:32]


#: Called with (cache name, result) on every lookup, for metrics: "hit" or
#: "miss"; and for ``get_or_compute``'s waits: "coalesced" (the answer another
#: review of this worker computed), "awaited" (the answer another worker or
#: replica computed, through the shared tier) or "unawaited" (that worker did
#: not answer in time, so this one computed).
Observer = Callable[[str, str], None]

#: Polling the shared tier for another worker's answer: first and longest pause.
_FIRST_POLL = 0.005
_LONGEST_POLL = 0.05


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

    @property
    def wait_seconds(self) -> float:
        """How long a worker waits for another's computation of the same key (0: never)."""
        ...

    def claim(self, cache: str, key: Hashable, seconds: float) -> float:
        """Mark ``key`` as being computed here for ``seconds``, unless another worker has.

        Returns 0 when this worker should compute (it holds the mark, or the tier
        cannot tell), else the seconds the other worker's mark has left.
        """
        ...

    def release(self, cache: str, key: Hashable) -> None:
        """Drop the mark of ``key`` (its answer is stored, or its computation failed)."""
        ...

    def marked(self, cache: str, key: Hashable) -> bool:
        """Whether a (genuine, live) mark of ``key`` is there."""
        ...


@dataclass(frozen=True, slots=True)
class _Entry(Generic[V]):
    value: V
    expires: float  # time.monotonic()


def _entry_expiry(_key: Hashable, entry: _Entry[Any], _now: float) -> float:
    return entry.expires


#: Marks a key as one review partition's (``webhook.core.scope``): no other key is a
#: tuple starting with it.
_PARTITION = "\x00partition"


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
        self._flights: SingleFlight[V] = SingleFlight()

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
        needs_io("the shared cache")  # an offline pass stops here (see webhook.core.offline)
        found = self._shared.get(self.name, key)
        if found is None:
            return None
        value, left = found
        self._remember(key, value, min(left, self.ttl))
        return cast(V, value)

    def get_or_compute(
        self,
        key: Hashable,
        compute: Callable[[Deadline], V],
        deadline: Deadline,
        *,
        failures: Cache[V] | None = None,
        passed: Callable[[V], bool] | None = None,
        lifetime: Callable[[V], float | None] | None = None,
    ) -> V:
        """The cached value of ``key``, else ``compute(deadline)``'s, computed once for all askers.

        ``failures`` is the cache denials are kept in: it is looked up too, and
        a value for which ``passed`` is false is put there instead of here.
        ``lifetime(value)`` is how many seconds a value stays true (None: as long
        as the cache keeps anything): it is kept no longer, and not at all when
        that is not positive.
        Concurrent askers in this worker wait for one computation
        (``singleflight``); with a shared tier, askers in other workers and
        replicas wait for it too, for at most the tier's ``wait_seconds``. Any
        wait takes at most half of what the asker's deadline has left; then it
        computes itself.
        Waiting never denies: it ends in an answer or in computing one.

        Raises:
            Whatever ``compute`` raises (nothing is cached then).
        """
        # What a review with pull secrets fetched failing, or still fetching, is its
        # own: it waits for and learns from flights and failures in its partition
        # only. A value that passed is a fact about the key and serves everyone.
        partition = deadline.scope.key if deadline.scope is not None else None
        failed_key = key if partition is None else (_PARTITION, partition, key)
        found = self.get(key)
        if found is None and failures is not None:
            found = failures.get(failed_key)
        if found is not None:
            return found
        # An offline pass stops before it could lead or join a flight (see webhook.core.offline).
        needs_io(f"computing a {self.name} entry")

        def lead(limit: Deadline) -> V:
            return self._lead(key, failed_key, compute, limit, failures, passed, lifetime)

        def alone(limit: Deadline) -> V:
            return self._store(key, failed_key, compute(limit), failures, passed, lifetime)

        value, coalesced = self._flights.run(failed_key, lead, deadline, alone=alone)
        if coalesced and self._observer is not None:
            self._observer(self.name, "coalesced")
        return value

    def _lead(
        self,
        key: Hashable,
        failed_key: Hashable,
        compute: Callable[[Deadline], V],
        deadline: Deadline,
        failures: Cache[V] | None,
        passed: Callable[[V], bool] | None,
        lifetime: Callable[[V], float | None] | None,
    ) -> V:
        """Compute (or await another worker's answer) as this worker's one asker of ``key``."""
        # A flight that ended between the caller's miss and this one's start left its answer.
        found = self._local(key, failed_key, failures)
        if found is not None:
            return found
        shared = self._shared
        marked = False
        if shared is not None and shared.wait_seconds > 0:
            wait = min(shared.wait_seconds, deadline.remaining() / 2)
            held = shared.claim(self.name, failed_key, wait) if wait > 0 else 0.0
            if held > 0:
                found = self._await(key, failed_key, failures, min(held, wait))
                if found is not None:
                    return found
            else:
                marked = wait > 0
        try:
            # Stored before the mark goes, so those it made wait find the answer.
            value = compute(deadline)
            return self._store(key, failed_key, value, failures, passed, lifetime)
        finally:
            if marked and shared is not None:
                shared.release(self.name, failed_key)

    def _store(
        self,
        key: Hashable,
        failed_key: Hashable,
        value: V,
        failures: Cache[V] | None,
        passed: Callable[[V], bool] | None,
        lifetime: Callable[[V], float | None] | None = None,
    ) -> V:
        ttl = lifetime(value) if lifetime is not None else None
        if passed is None or passed(value) or failures is None:
            self.put(key, value, ttl=ttl)
        else:
            failures.put(failed_key, value, ttl=ttl)
        return value

    def _await(
        self, key: Hashable, failed_key: Hashable, failures: Cache[V] | None, seconds: float
    ) -> V | None:
        """Another worker's answer for ``key`` through the shared tier, within ``seconds``."""
        assert self._shared is not None
        end = time.monotonic() + seconds
        pause = _FIRST_POLL
        while True:
            time.sleep(min(pause, max(0.0, end - time.monotonic())))
            found = self._shared_answer(key, failed_key, failures)
            if found is not None:
                if self._observer is not None:
                    self._observer(self.name, "awaited")
                return found
            if time.monotonic() >= end or not self._shared.marked(self.name, failed_key):
                # The other worker gave up (or its mark expired); check once more.
                found = self._shared_answer(key, failed_key, failures)
                if self._observer is not None:
                    self._observer(self.name, "unawaited" if found is None else "awaited")
                return found
            pause = min(pause * 2, _LONGEST_POLL)

    def _shared_answer(
        self, key: Hashable, failed_key: Hashable, failures: Cache[V] | None
    ) -> V | None:
        for cache, wanted in ((self, key), (failures, failed_key)):
            if cache is not None and cache._shared is not None:
                found = cache._shared.get(cache.name, wanted)
                if found is not None:
                    value, left = found
                    cache._remember(wanted, value, min(left, cache.ttl))
                    return cast(V, value)
        return None

    def _local(self, key: Hashable, failed_key: Hashable, failures: Cache[V] | None) -> V | None:
        for cache, wanted in ((self, key), (failures, failed_key)):
            if cache is not None:
                with cache._lock:
                    entry = cache._data.get(wanted)
                if entry is not None:
                    return entry.value
        return None

    def put(self, key: Hashable, value: V, *, ttl: float | None = None) -> None:
        """Remember ``value`` for the cache's lifetime, or ``ttl`` seconds if shorter, and
        share it when a tier is set. A ``ttl`` that is not positive keeps nothing."""
        if ttl is not None and ttl <= 0:
            return
        if self._shared is not None:
            needs_io("the shared cache")  # an offline pass stops here (see webhook.core.offline)
        local = self.ttl if ttl is None else min(ttl, self.ttl)
        self._remember(key, value, local)
        if self._shared is not None:
            self._shared.put(self.name, key, value, min(local, self._shared_ttl))

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
