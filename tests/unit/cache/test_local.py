"""Cache.get_or_compute: one computation per key in a worker, and across workers through Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from tests.support.redisserver import RedisServer
from webhook.cache.local import Cache, Caches, CacheSettings
from webhook.cache.shared import SharedCache, SharedSettings, canonical_key, mark_key, seal
from webhook.core.deadline import Deadline
from webhook.core.offline import NeedsNetwork, offline
from webhook.services import SHARED_TYPES
from webhook.signatures.check import SignatureOutcome

KEY = b"k" * 32
DIGEST = "sha256:" + "ab" * 32
OUTCOME_KEY = ("quay.io/acme/api", DIGEST, "f" * 32)
PASSED = SignatureOutcome(("release",), (), 1)
FAILED = SignatureOutcome((), (("release", "no signature found"),), 1)


@dataclass
class Lookups:
    """A cache Observer that remembers every result."""

    seen: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, cache: str, result: str) -> None:
        self.seen.append((cache, result))

    def count(self, result: str) -> int:
        return sum(1 for _, r in self.seen if r == result)


def passed(outcome: SignatureOutcome) -> bool:
    return outcome.passed


def slow(
    value: SignatureOutcome, seconds: float, calls: list[str], name: str
) -> Callable[[Deadline], SignatureOutcome]:
    def compute(_: Deadline) -> SignatureOutcome:
        calls.append(name)
        time.sleep(seconds)
        return value

    return compute


def worker(redis_server: RedisServer, lookups: Lookups, wait: float = 2.0) -> Caches:
    """The caches of one worker sharing ``redis_server``."""
    settings = SharedSettings(url=redis_server.url, key=KEY, timeout_seconds=0.2, wait_seconds=wait)
    return Caches(CacheSettings(), lookups, SharedCache(settings, SHARED_TYPES))


@pytest.fixture(autouse=True)
def empty(redis_server: RedisServer) -> None:
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()
    redis_server.client().flushall()


def test_one_computation_for_a_burst_and_denials_go_to_the_failures_cache() -> None:
    lookups = Lookups()
    caches = Caches(CacheSettings(), lookups)
    calls: list[str] = []
    results: list[SignatureOutcome] = []
    start = threading.Barrier(16)

    def review() -> None:
        start.wait()
        results.append(
            caches.verified.get_or_compute(
                OUTCOME_KEY,
                slow(FAILED, 0.2, calls, "verify"),
                Deadline(5),
                failures=caches.failures,
                passed=passed,
            )
        )

    threads = [threading.Thread(target=review) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert calls == ["verify"]
    assert results == [FAILED] * 16
    assert lookups.count("coalesced") == 15
    assert caches.verified.get(OUTCOME_KEY) is None
    assert caches.failures.get(OUTCOME_KEY) == FAILED
    # Cached now: no computation, no wait.
    assert (
        caches.verified.get_or_compute(
            OUTCOME_KEY, slow(PASSED, 0, calls, "again"), Deadline(5), failures=caches.failures
        )
        == FAILED
    )
    assert calls == ["verify"]


def test_a_plain_cache_computes_once_per_key() -> None:
    cache: Cache[str] = Cache("digest", 16, 60)
    assert cache.get_or_compute(("r", "v1"), lambda _: "sha256:1", Deadline(1)) == "sha256:1"
    assert cache.get_or_compute(("r", "v1"), lambda _: "sha256:2", Deadline(1)) == "sha256:1"
    assert cache.get(("r", "v1")) == "sha256:1"


def test_a_value_is_kept_no_longer_than_its_lifetime_in_either_tier(
    redis_server: RedisServer,
) -> None:
    """An outcome that stops holding (a certificate's end) is not cached past it."""
    lookups = Lookups()
    first, second = worker(redis_server, lookups), worker(redis_server, lookups)
    calls: list[str] = []

    def ask(caches: Caches, seconds: float | None) -> SignatureOutcome:
        return caches.verified.get_or_compute(
            OUTCOME_KEY,
            slow(PASSED, 0, calls, "verify"),
            Deadline(5),
            failures=caches.failures,
            passed=passed,
            lifetime=lambda _outcome: seconds,
        )

    assert ask(first, 0.3) == PASSED
    assert ask(first, 0.3) == PASSED and ask(second, 0.3) == PASSED
    assert calls == ["verify"]
    time.sleep(0.4)
    # Gone from both tiers: a miss in a worker's own cache asks the shared one.
    assert first.verified.get(OUTCOME_KEY) is None and second.verified.get(OUTCOME_KEY) is None
    # A value that no longer holds is not kept at all.
    assert ask(first, -1.0) == PASSED and ask(first, 0.0) == PASSED
    assert calls == ["verify"] * 3
    # Without a lifetime, the cache's own.
    assert ask(first, None) == PASSED and ask(first, None) == PASSED
    assert calls == ["verify"] * 4


def test_another_worker_waits_for_the_answer_instead_of_verifying(
    redis_server: RedisServer,
) -> None:
    seen_a, seen_b = Lookups(), Lookups()
    a, b = worker(redis_server, seen_a), worker(redis_server, seen_b)
    calls: list[str] = []
    leader = threading.Thread(
        target=a.verified.get_or_compute,
        args=(OUTCOME_KEY, slow(PASSED, 0.5, calls, "a"), Deadline(5)),
        kwargs={"failures": a.failures, "passed": passed},
    )
    leader.start()
    while calls != ["a"]:
        time.sleep(0.005)
    time.sleep(0.05)  # a has marked the key by now
    got = b.verified.get_or_compute(
        OUTCOME_KEY, slow(PASSED, 0, calls, "b"), Deadline(5), failures=b.failures, passed=passed
    )
    leader.join(5)
    assert got == PASSED
    assert calls == ["a"]
    assert seen_b.count("awaited") == 1
    assert redis_server.client().exists(mark_key("verified", OUTCOME_KEY) or "") == 0


def test_a_forged_mark_makes_no_one_wait(redis_server: RedisServer) -> None:
    """Whoever can write to Redis plants a mark for a key: ignored, the worker verifies now."""
    name = canonical_key("verified", OUTCOME_KEY)
    where = mark_key("verified", OUTCOME_KEY)
    assert name is not None and where is not None
    forged = seal(b"guessed-key".ljust(32, b"!"), "in-flight:verified", name, 2**42, b"")
    redis_server.client().set(where, forged)
    lookups = Lookups()
    caches = worker(redis_server, lookups, wait=5.0)
    calls: list[str] = []
    started = time.monotonic()
    got = caches.verified.get_or_compute(
        OUTCOME_KEY, slow(PASSED, 0, calls, "b"), Deadline(8), failures=caches.failures
    )
    assert got == PASSED and calls == ["b"]
    assert time.monotonic() - started < 2.5  # far below the 5 s a genuine mark could hold it
    assert lookups.count("awaited") == 0


def test_a_mark_whose_holder_died_holds_others_only_briefly(redis_server: RedisServer) -> None:
    """A worker marked the key and died: others wait at most waitMilliseconds, never deny."""
    gone = worker(redis_server, Lookups(), wait=0.4)
    assert gone.shared is not None
    assert gone.shared.claim("verified", OUTCOME_KEY, 0.4) == 0  # marked, then nothing
    lookups = Lookups()
    caches = worker(redis_server, lookups, wait=0.4)
    calls: list[str] = []
    started = time.monotonic()
    got = caches.verified.get_or_compute(
        OUTCOME_KEY, slow(PASSED, 0, calls, "b"), Deadline(8), failures=caches.failures
    )
    took = time.monotonic() - started
    assert got == PASSED and calls == ["b"]
    assert 0.2 < took < 3
    assert lookups.count("unawaited") == 1


def test_waiting_takes_at_most_half_of_what_the_deadline_has_left(
    redis_server: RedisServer,
) -> None:
    holder = worker(redis_server, Lookups(), wait=30)
    assert holder.shared is not None
    assert holder.shared.claim("verified", OUTCOME_KEY, 30) == 0
    caches = worker(redis_server, Lookups(), wait=30)
    calls: list[str] = []
    started = time.monotonic()
    got = caches.verified.get_or_compute(
        OUTCOME_KEY, slow(PASSED, 0, calls, "b"), Deadline(4.0), failures=caches.failures
    )
    assert got == PASSED and calls == ["b"]
    assert 1.5 < time.monotonic() - started < 3.9  # about 2 s: it kept time to verify itself


def test_an_offline_pass_stops_before_it_could_lead_a_flight() -> None:
    """The engine's offline pass judges from what is cached; a miss goes to a check thread,
    and no flight (which other reviews would wait on) is started for it."""
    cache: Cache[str] = Cache("digest", 16, 60)
    calls: list[str] = []

    def resolve(_: Deadline) -> str:
        calls.append("resolve")
        return "sha256:1"

    with pytest.raises(NeedsNetwork), offline():
        cache.get_or_compute(("r", "v1"), resolve, Deadline(1))
    assert calls == []
    cache.put(("r", "v1"), "sha256:1")
    with offline():
        assert cache.get_or_compute(("r", "v1"), resolve, Deadline(1)) == "sha256:1"
