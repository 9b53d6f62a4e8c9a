"""Short-lived logins kept fresh: fetched once, renewed early, waited on only within a deadline.

Cloud registries hand out logins that expire (an ECR token after 12 hours,
a Google access token after one, an ACR refresh token after three), fetched
through a provider's library whose calls block. Every source of such logins
needs the same three things, so they live here once:

- a login is fetched once per key (account and region, registry host) however
  many reviews ask at once, and kept until shortly before it expires;
- once it is past its renewal point (``RENEW_AT`` of its life) it is renewed in
  the background while reviews go on using it, so a review never meets an
  expired login when the provider is up;
- a review that must wait for a fetch waits at most what its deadline leaves;
  the fetch goes on in its own thread and serves the next review, so a slow
  identity endpoint costs one review its time, not a thread per review.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from webhook.core.deadline import Deadline
from webhook.core.errors import UpstreamError
from webhook.core.failures import describe

V = TypeVar("V")

#: Renew once this share of a login's life has passed.
RENEW_AT: Final = 0.75
#: A login is used until this long before it expires, at most.
EXPIRY_MARGIN: Final = 60.0
#: Fetches running at once, per renewal cache.
_THREADS: Final = 4
#: Distinct keys (registries, accounts) held or being fetched at once.
MAX_KEYS: Final = 256
#: After a failed fetch, the next one waits this long (unless the login is gone).
_RETRY_AFTER: Final = 5.0


@dataclass(frozen=True, slots=True)
class Expiring(Generic[V]):
    """A value and the ``time.time()`` instant it expires at."""

    value: V
    expires_at: float


@dataclass(slots=True)
class _Held(Generic[V]):
    value: V
    renew_at: float
    use_until: float


class Renewing(Generic[V]):
    """Expiring values by key, fetched by ``fetch(key)`` in worker threads.

    ``fetch`` blocks (a provider library's call) and returns an ``Expiring``;
    it raises any Exception when it cannot, and its message is shown to
    people, so it must hold no secret. ``name`` is what errors call the
    source. ``clock`` is ``time.time``: expiries are wall-clock instants.
    """

    def __init__(
        self,
        name: str,
        fetch: Callable[[Hashable], Expiring[V]],
        *,
        clock: Callable[[], float] = time.time,
        threads: int = _THREADS,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.name = name
        self._fetch = fetch
        self._clock = clock
        self._held: dict[Hashable, _Held[V]] = {}
        self._running: dict[Hashable, Future[V]] = {}
        self._failed: dict[Hashable, float] = {}
        self._lock = threading.Lock()
        self._threads = threads
        self._max_keys = max_keys
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0

    def get(self, key: Hashable, deadline: Deadline) -> V:
        """The live value for ``key``, fetched (within ``deadline``) when there is none.

        Raises:
            UpstreamError: no live value, and the fetch failed or did not end in time.
        """
        now = self._clock()
        with self._lock:
            held = self._held.get(key)
            if held is not None and now < held.use_until:
                if now >= held.renew_at:
                    self._start(key, now)  # renew behind the review's back
                return held.value
            if key not in self._running and len(self._held) + len(self._running) >= self._max_keys:
                # Each key is an identity call and a login kept: a workload naming
                # ever new registries (all matching a pattern) must not grow them.
                self._evict(now)
                if len(self._held) + len(self._running) >= self._max_keys:
                    raise UpstreamError(
                        f"{self.name}: logins for {self._max_keys} registries are held "
                        f"already; no more are fetched until some expire"
                    )
            future = self._start(key, now, even_after_failure=True)
        try:
            return future.result(timeout=deadline.remaining())
        except FutureTimeout:
            raise UpstreamError(
                f"{self.name}: the login was still being fetched when the review's deadline passed"
            ) from None
        except UpstreamError:
            raise
        except Exception as exc:
            raise UpstreamError(f"{self.name}: cannot get a login: {describe(exc)}") from None

    def _evict(self, now: float) -> None:
        """Drop the expired values and old failures; called with the lock held."""
        for key in [k for k, held in self._held.items() if held.use_until <= now]:
            del self._held[key]
        for key in [k for k, until in self._failed.items() if until <= now]:
            del self._failed[key]

    def forget(self, key: Hashable) -> None:
        """Drop ``key``'s value (a registry refused it): the next ``get`` fetches anew."""
        with self._lock:
            self._held.pop(key, None)

    def _start(self, key: Hashable, now: float, *, even_after_failure: bool = False) -> Future[V]:
        """The running fetch of ``key``, started if none is; called with the lock held."""
        running = self._running.get(key)
        if running is not None:
            return running
        if not even_after_failure and now < self._failed.get(key, 0.0):
            done: Future[V] = Future()
            done.set_result(self._held[key].value)
            return done
        future = self._executor().submit(self._run, key)
        self._running[key] = future
        return future

    def _run(self, key: Hashable) -> V:
        try:
            got = self._fetch(key)
        except BaseException:
            with self._lock:
                self._running.pop(key, None)
                now = self._clock()
                self._failed[key] = now + _RETRY_AFTER
                if len(self._failed) > self._max_keys:
                    # Failures count against no bound of ``get``: ever new keys that all
                    # fail (hosts that do not exist) must not grow them without end.
                    self._evict(now)
                    while len(self._failed) > self._max_keys:
                        del self._failed[next(iter(self._failed))]
            raise
        now = self._clock()
        life = max(0.0, got.expires_at - now)
        held = _Held(
            got.value,
            renew_at=now + life * RENEW_AT,
            use_until=got.expires_at - min(EXPIRY_MARGIN, life / 4),
        )
        with self._lock:
            self._held[key] = held
            self._running.pop(key, None)
            self._failed.pop(key, None)
        return got.value

    def _executor(self) -> ThreadPoolExecutor:
        # A forked worker must not share its parent's threads (they do not exist there).
        if self._pool is None or self._pid != os.getpid():
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix=self.name)
            self._pid = os.getpid()
            self._running.clear()
        return self._pool
