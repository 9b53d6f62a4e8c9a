"""The shared cache tier against a real redis-server: sealing, forgeries, TTLs, outages."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.hostileredis import DrippingRedis, FloodingRedis
from tests.support.redisserver import RedisServer, start_redis
from tests.support.registry import free_port
from webhook.cache.local import Caches, CacheSettings
from webhook.cache.shared import (
    FAILURES_TO_OPEN,
    Codec,
    SharedCache,
    SharedSettings,
    canonical_key,
    redis_key,
    seal,
)
from webhook.core.errors import ConfigError
from webhook.freshness.grades import Fix, Window
from webhook.freshness.sources import GradeReport, Unknown
from webhook.services import SHARED_TYPES
from webhook.signatures.check import SignatureOutcome

KEY = b"k" * 32
DIGEST = "sha256:" + "ab" * 32
VERIFIED_KEY = ("quay.io/acme/api", DIGEST, "f" * 32)
PASSED = SignatureOutcome(("release",), (), 1)
FAILED = SignatureOutcome((), (("release", "no signature found"),), 1)


@dataclass
class Seen:
    """A SharedObserver that remembers every call."""

    calls: list[tuple[str, str, str, float]] = field(default_factory=list)
    states: list[bool] = field(default_factory=list)

    def observe_shared(self, operation: str, cache: str, result: str, seconds: float) -> None:
        self.calls.append((operation, cache, result, seconds))

    def observe_shared_state(self, up: bool) -> None:
        self.states.append(up)

    def results(self, operation: str = "get") -> list[str]:
        return [call[2] for call in self.calls if call[0] == operation]


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger("trustgate.sharedcache")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


@pytest.fixture(autouse=True)
def empty(redis_server: RedisServer) -> None:
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()
    redis_server.client().flushall()


def tier(url: str, observer: Seen | None = None, key: bytes = KEY, **kwargs: float) -> SharedCache:
    settings = SharedSettings(url=url, key=key, timeout_seconds=0.2, **kwargs)
    return SharedCache(settings, SHARED_TYPES, observer)


def test_an_outcome_one_worker_shares_is_read_by_another(redis_server: RedisServer) -> None:
    tier(redis_server.url).put("verified", VERIFIED_KEY, PASSED, 60)
    seen = Seen()
    value, left = tier(redis_server.url, seen).get("verified", VERIFIED_KEY) or (None, 0)
    assert value == PASSED
    assert 55 < left <= 60
    assert seen.results() == ["hit"]
    assert tier(redis_server.url).get("verified", ("quay.io/acme/api", DIGEST, "0" * 32)) is None


def test_every_shared_type_survives_the_trip() -> None:
    at = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    values = [
        "sha256:" + "cd" * 32,
        (("linux/amd64", DIGEST), ("linux/arm64", DIGEST)),
        PASSED,
        FAILED,
        GradeReport(
            "attestation",
            (Window("A", None, at), Window("C", at, None)),
            (Fix("RHSA-2026:1", "Important", at, "openssl"),),
            "report",
            at,
        ),
        Unknown("pyxis", "Pyxis answered 503", failed=True),
    ]
    codec = Codec(SHARED_TYPES)
    for value in values:
        data = codec.encode(value)
        assert data is not None
        assert codec.decode(data) == value
    assert codec.encode({"a": 1}) is None  # not a shared type: stays local
    assert codec.encode(object()) is None


def test_a_local_hit_makes_no_shared_call(redis_server: RedisServer) -> None:
    writer = Caches(shared=tier(redis_server.url))
    writer.verified.put(VERIFIED_KEY, PASSED)
    seen = Seen()
    reader = Caches(shared=tier(redis_server.url, seen))
    assert reader.verified.get(VERIFIED_KEY) == PASSED
    for _ in range(5):
        assert reader.verified.get(VERIFIED_KEY) == PASSED
    assert seen.results() == ["hit"]


@pytest.mark.parametrize(
    "attack",
    ["flipped-payload", "flipped-mac", "later-expiry", "moved-key", "other-key", "bare-json"],
)
def test_tampered_and_forged_entries_are_ignored_counted_and_logged(
    redis_server: RedisServer, records: Records, attack: str
) -> None:
    """An attacker who can write to Redis cannot make a denial an admission."""
    client = redis_server.client()
    victim = ("quay.io/acme/unsigned", DIGEST, "f" * 32)
    where = redis_key("verified", victim)
    assert where is not None
    name = canonical_key("verified", victim)
    assert name is not None
    payload = Codec(SHARED_TYPES).encode(PASSED)
    assert payload is not None
    expires_ms = int((time.time() + 600) * 1000)
    genuine = seal(KEY, "verified", name, expires_ms, payload)
    if attack == "flipped-payload":
        forged = genuine[:-3] + b"[1]"
    elif attack == "flipped-mac":
        forged = bytes([genuine[0] ^ 1]) + genuine[1:]
    elif attack == "later-expiry":
        forged = genuine[:32] + (expires_ms + 86_400_000).to_bytes(8, "big") + genuine[40:]
    elif attack == "moved-key":
        # A genuine entry, sealed for another image, copied under the victim's key.
        other = canonical_key("verified", ("quay.io/acme/signed", DIGEST, "f" * 32))
        assert other is not None
        forged = seal(KEY, "verified", other, expires_ms, payload)
    elif attack == "other-key":
        forged = seal(b"x" * 32, "verified", name, expires_ms, payload)
    else:
        forged = payload
    if attack != "later-expiry":
        assert forged != genuine
    client.set(where, forged)
    seen = Seen()
    caches = Caches(shared=tier(redis_server.url, seen))
    assert caches.verified.get(victim) is None
    assert seen.results() == ["rejected"]
    assert any("shared cache entry ignored" in m for m in records.messages), records.messages
    # The genuine entry is accepted: the attacks above failed for what they changed.
    client.set(where, genuine)
    assert Caches(shared=tier(redis_server.url)).verified.get(victim) == PASSED


def test_a_sealed_entry_of_a_type_not_shared_is_refused(
    redis_server: RedisServer, records: Records
) -> None:
    name = canonical_key("verified", VERIFIED_KEY)
    assert name is not None
    expires_ms = int((time.time() + 600) * 1000)
    payload = b'{"c":"Popen","f":{"args":"id"}}'
    redis_key_ = redis_key("verified", VERIFIED_KEY)
    assert redis_key_ is not None
    redis_server.client().set(redis_key_, seal(KEY, "verified", name, expires_ms, payload))
    seen = Seen()
    assert tier(redis_server.url, seen).get("verified", VERIFIED_KEY) is None
    assert seen.results() == ["rejected"]
    assert any("does not decode" in m for m in records.messages)


def test_ttls_hold_across_the_tiers(redis_server: RedisServer) -> None:
    """A shared entry lives no longer than it was shared for, in Redis and in the reader."""
    client = redis_server.client()
    tier(redis_server.url).put("verified", VERIFIED_KEY, PASSED, 0.6)
    where = redis_key("verified", VERIFIED_KEY)
    assert where is not None
    assert 0 < client.pttl(where) <= 600
    client.persist(where)  # Redis would keep it: the expiry inside the MAC still holds
    reader = Caches(CacheSettings(verified_ttl=600), shared=tier(redis_server.url))
    assert reader.verified.get(VERIFIED_KEY) == PASSED
    time.sleep(0.8)
    # The reader kept it for the 0.6 s it had left, not for its own 600 s.
    assert reader.verified.get(VERIFIED_KEY) is None
    assert client.exists(where)


def test_denials_are_shared_briefly(redis_server: RedisServer) -> None:
    caches = Caches(CacheSettings(failure_ttl=3600), shared=tier(redis_server.url))
    caches.failures.put(VERIFIED_KEY, FAILED)
    where = redis_key("failure", VERIFIED_KEY)
    assert where is not None
    assert 0 < redis_server.client().pttl(where) <= 60_000


def test_a_down_redis_costs_nothing_once_skipped(records: Records) -> None:
    seen = Seen()
    shared = tier(f"redis://127.0.0.1:{free_port()}/0", seen, retry_seconds=60)
    caches = Caches(shared=shared)
    for _ in range(FAILURES_TO_OPEN + 20):
        assert caches.verified.get(VERIFIED_KEY) is None
        caches.verified.put(VERIFIED_KEY, PASSED)
        caches.verified.clear()
    results = seen.results() + seen.results("put")
    assert results.count("error") == FAILURES_TO_OPEN
    assert results.count("unavailable") == len(results) - FAILURES_TO_OPEN
    assert seen.states == [True, False]
    status = shared.status()
    assert status["state"] == "down"
    assert "Redis is unreachable: Connection refused" in status["lastError"]
    assert any("shared cache unreachable" in m for m in records.messages)


def test_a_hanging_redis_is_given_up_within_the_budget() -> None:
    """A Redis that accepts and never answers costs one short timeout per call, then none."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(sock.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        settings = SharedSettings(
            url=f"redis://127.0.0.1:{sock.getsockname()[1]}/0", key=KEY, timeout_seconds=0.02
        )
        shared = SharedCache(settings, SHARED_TYPES)
        started = time.monotonic()
        for _ in range(50):
            assert shared.get("verified", VERIFIED_KEY) is None
        # 3 calls of 20 ms, then none; generous for a loaded machine, far below 50 x 20 ms.
        assert time.monotonic() - started < 0.6
        assert shared.status()["state"] == "down"
    finally:
        sock.close()
        for conn in held:
            conn.close()


def test_sharing_resumes_by_itself_after_redis_comes_back(tmp_path: Path) -> None:
    own = start_redis(tmp_path)
    try:
        seen = Seen()
        shared = tier(own.url, seen, retry_seconds=0.3)
        own.stop()
        for _ in range(FAILURES_TO_OPEN):
            shared.put("verified", VERIFIED_KEY, PASSED, 60)
        assert shared.status()["state"] == "down"
        own.start()
        assert shared.get("verified", VERIFIED_KEY) is None  # still skipped
        assert seen.results()[-1] == "unavailable"
        time.sleep(0.4)
        shared.put("verified", VERIFIED_KEY, PASSED, 60)  # the probe, and it succeeds
        assert shared.status()["state"] == "up"
        assert seen.states == [True, False, True]
        assert tier(own.url).get("verified", VERIFIED_KEY) == (PASSED, pytest.approx(60, abs=2))
    finally:
        own.stop()


def test_readyz_status_never_shows_credentials() -> None:
    url = "redis://default:s3cret-pass@127.0.0.1:6390/0"
    shared = SharedCache(SharedSettings(url=url, key=KEY), SHARED_TYPES)
    assert "s3cret" not in str(shared.status())
    assert "s3cret" not in repr(shared.settings) and "kkkk" not in repr(shared.settings)


def test_settings_refuse_a_short_or_missing_key(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_bytes(b"0123456789")
    with pytest.raises(ConfigError, match=r"cache.shared.keyFile: .* at least 32"):
        SharedSettings.from_config({"url": "redis://r:6379", "keyFile": str(short)})
    with pytest.raises(ConfigError, match=r"cache.shared.keyFile: .*missing.* cannot be read"):
        SharedSettings.from_config({"url": "redis://r:6379", "keyFile": str(tmp_path / "missing")})
    good = tmp_path / "key"
    good.write_text("z" * 44 + "\n")
    with pytest.raises(ConfigError, match=r"cache.shared.url: redis://r:port: Port could not"):
        SharedSettings.from_config({"url": "redis://u:pw@r:port", "keyFile": str(good)})
    password = tmp_path / "password"
    password.write_text("hunter2\n")
    settings = SharedSettings.from_config(
        {
            "url": "redis://r:6379",
            "keyFile": str(good),
            "passwordFile": str(password),
            "timeoutMilliseconds": 5,
            "waitMilliseconds": 500,
        }
    )
    assert (settings.key, settings.password, settings.timeout_seconds, settings.wait_seconds) == (
        b"z" * 44,
        "hunter2",
        0.005,
        0.5,
    )
    default = SharedSettings.from_config({"url": "redis://r:6379", "keyFile": str(good)})
    assert default.wait_seconds == 2.0


def test_a_dripping_redis_is_cut_at_each_calls_deadline_and_skipped() -> None:
    """A Redis that answers one byte per millisecond never makes a read wait long, but each
    call still ends at its own deadline (connect, write and read together), and the
    breaker skips it after FAILURES_TO_OPEN calls."""
    dripper = DrippingRedis()
    try:
        seen = Seen()
        shared = SharedCache(
            SharedSettings(url=dripper.url, key=KEY, timeout_seconds=0.02, retry_seconds=60),
            SHARED_TYPES,
            seen,
        )
        longest = 0.0
        for _ in range(10):
            started = time.monotonic()
            assert shared.get("verified", VERIFIED_KEY) is None
            longest = max(longest, time.monotonic() - started)
        # Each call has 20 ms; the drip alone would take 2 s. Generous for a loaded machine.
        assert longest < 0.5
        assert dripper.commands <= FAILURES_TO_OPEN
        assert seen.results().count("error") == FAILURES_TO_OPEN
        assert shared.status()["state"] == "down"
        # "did not answer in time" (or, on a loaded machine, "did not accept a connection").
        assert "in time" in shared.status()["lastError"]
    finally:
        dripper.stop()


def test_an_oversized_reply_is_not_read_and_its_connection_dropped() -> None:
    """A Redis announcing a 300 MB reply: the announcement alone is read, the call ends
    at once (the budget here is 2 s, so the byte bound is what stops it), and the tier
    counts an oversized reply."""
    flooder = FloodingRedis()
    try:
        seen = Seen()
        shared = SharedCache(
            SharedSettings(url=flooder.url, key=KEY, timeout_seconds=2.0), SHARED_TYPES, seen
        )
        before = _rss()
        started = time.monotonic()
        assert shared.get("verified", VERIFIED_KEY) is None
        took = time.monotonic() - started
        grown = _rss() - before
        time.sleep(0.2)  # the flooder finds the connection closed
        assert flooder.sent < 64 * 1024 * 1024, "the client kept reading the flood"
        assert grown < 64 * 1024 * 1024
        assert took < 1.0
        assert seen.results() == ["oversized"]
        # A second call opens a new connection: the half-read reply is never parsed.
        assert shared.get("verified", VERIFIED_KEY) is None
        assert flooder.connections == 2
    finally:
        flooder.stop()


def _rss() -> int:
    """This process's resident memory in bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")
