"""The shared tier of the caches: outcomes every worker of every replica reuses, in Redis.

A writable Redis must not be a way in. Every entry is sealed with an
HMAC-SHA256 under a key only the webhook holds (``cache.shared.keyFile``); the
MAC covers the cache's name, the whole cache key (repository, digest and the
fingerprint of the policy section the outcome answers) and the entry's expiry.
An entry that fails to verify, has expired, or does not decode into one of the
few types the webhook shares is ignored, counted and logged: never trusted.
Values are plain JSON of frozen dataclasses named in an allowlist, so even a
sealed entry cannot make the reader run code.

Redis down is not an outage, and a hostile Redis is not one either. Every
call has one deadline of a few milliseconds for connect, write and read
together, no retries, and a reply of at most ``MAX_ENTRY_BYTES``: a larger
one is not read (``redisclient``), but counted ("oversized") and its
connection dropped. After ``FAILURES_TO_OPEN`` consecutive failures (a
dripping Redis fails each call at its deadline) the tier is skipped for
``retrySeconds`` (no call at all), then one call probes it. A failure is a
miss, never a failed review, and the local caches in front keep serving warm
entries without any network call.

While one worker computes an answer, it marks the key in Redis (SET NX PX,
for at most ``waitMilliseconds``), and other workers and replicas asking for
it wait that long at most for the sealed answer (``cache.Cache.get_or_compute``).
A mark is sealed like an entry: a forged one is ignored, so a writable Redis
can make no one skip a verification, nor deny; a genuine mark only makes
others wait, for a bounded time, then compute themselves.

Only images, digests and verification outcomes are stored; never credentials.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from webhook.cache.redisclient import RedisClient, RedisFailure, ReplyTooLarge, parse_url
from webhook.cache.sealing import (
    EXPIRY_SIZE,
    MAC_SIZE,
    Codec,
    Undecodable,
    canonical_key,
    entry_mac,
)
from webhook.cache.sealing import FORMAT as FORMAT
from webhook.cache.sealing import seal as seal
from webhook.core.errors import ConfigError
from webhook.core.observability import get_logger
from webhook.core.redaction import redacted_url

log = get_logger("sharedcache")

_PREFIX = "trustgate:1:"
#: Larger entries are not shared, and no more than this is read of one.
MAX_ENTRY_BYTES = 1024 * 1024
#: Consecutive failed calls that make the tier skip Redis for ``retrySeconds``.
FAILURES_TO_OPEN = 3
#: A key file shorter than this is refused: the MAC is only as strong as its key.
MIN_KEY_BYTES = 32
#: Names marks of keys being computed (not entries); part of their MAC.
_MARK = "in-flight:"

State = Literal["up", "down"]


class SharedObserver(Protocol):
    """Metrics of the shared tier (``metrics.Metrics`` implements it)."""

    def observe_shared(self, operation: str, cache: str, result: str, seconds: float) -> None:
        """One call: ``operation`` get or put, its ``result``, and how long it took."""
        ...

    def observe_shared_state(self, up: bool) -> None:
        """The tier became reachable (``up``) or is being skipped after failures."""
        ...


@dataclass(frozen=True, slots=True)
class SharedSettings:
    """``cache.shared`` of trustgate.yaml."""

    url: str
    key: bytes
    password: str | None = None
    timeout_seconds: float = 0.01
    retry_seconds: float = 5.0
    wait_seconds: float = 2.0

    def __repr__(self) -> str:
        # Never print the key or the password (logs, error messages).
        return f"SharedSettings(url={redacted_url(self.url)!r})"

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> SharedSettings:
        """Read ``cache.shared`` (already checked against the configuration schema).

        Raises:
            ConfigError: the URL does not parse, the key file or the password file
                cannot be read, or the key is shorter than MIN_KEY_BYTES.
        """
        url = str(raw["url"])
        try:
            parse_url(url)  # connects only when first used
        except ValueError as exc:
            raise ConfigError(f"cache.shared.url: {_unparsed(url, exc)}") from None
        key = _read("cache.shared.keyFile", raw["keyFile"]).strip()
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(
                f"cache.shared.keyFile: {raw['keyFile']} holds {len(key)} bytes; the key that "
                f"seals shared entries must have at least {MIN_KEY_BYTES}"
            )
        password = None
        if "passwordFile" in raw:
            password = _read("cache.shared.passwordFile", raw["passwordFile"]).strip().decode()
        return cls(
            url=url,
            key=key,
            password=password,
            timeout_seconds=float(raw.get("timeoutMilliseconds", 10)) / 1000,
            retry_seconds=float(raw.get("retrySeconds", 5.0)),
            wait_seconds=float(raw.get("waitMilliseconds", 2000)) / 1000,
        )


def _read(field: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{field}: {path} cannot be read: {exc.strerror}") from None


def _unparsed(url: str, exc: ValueError) -> str:
    """Why ``url`` does not parse, quoting none of its password.

    A password holding ``/``, ``?`` or ``#`` ends the URL's authority early, so
    the parser takes part of the password for the host or port, and says so.
    """
    try:
        netloc = urlsplit(url).netloc
        shown = redacted_url(url)
    except ValueError:
        netloc, shown = "", ""
    if ("@" in url and "@" not in netloc) or not shown:
        return (
            "not a valid Redis URL (not shown: it may hold credentials; percent-encode "
            "any / ? # @ in the password, or use passwordFile)"
        )
    return f"{shown}: {exc}"


class SharedCache:
    """The Redis tier behind the local caches; implements ``cache.SharedTier``."""

    def __init__(
        self,
        settings: SharedSettings,
        types: Iterable[type],
        observer: SharedObserver | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._codec = Codec(types)
        self._observer = observer
        self._clock = clock
        self._client: RedisClient | None = None
        self._lock = threading.Lock()
        self._failures = 0
        self._open_until = 0.0  # monotonic; 0 while the tier is up
        self._probing = False
        self._last_error: str | None = None
        if observer is not None:
            observer.observe_shared_state(True)

    # -- the tier ---------------------------------------------------------

    def get(self, cache: str, key: Hashable) -> tuple[Any, float] | None:
        """The verified value of ``key`` and its seconds left, or None (miss, error, forgery)."""
        name = canonical_key(cache, key)
        if name is None:
            return None
        if not self._admit():
            self._observe("get", cache, "unavailable", 0.0)
            return None
        started = time.perf_counter()
        data = self._call("get", cache, "GETRANGE", _redis_key(name), 0, MAX_ENTRY_BYTES - 1)
        if data is False:
            return None
        took = time.perf_counter() - started
        if not isinstance(data, bytes) or not data:
            self._observe("get", cache, "miss", took)
            return None
        found = self._open(cache, name, data)
        if found is None:
            self._observe("get", cache, "rejected", took)
        elif found[1] <= 0:
            self._observe("get", cache, "miss", took)
            return None
        else:
            self._observe("get", cache, "hit", took)
        return found

    def put(self, cache: str, key: Hashable, value: Any, ttl: float) -> None:
        """Share ``value`` under ``key`` for ``ttl`` seconds; errors only count."""
        name = canonical_key(cache, key)
        payload = self._codec.encode(value)
        if name is None or payload is None or len(payload) + 40 > MAX_ENTRY_BYTES or ttl <= 0:
            self._observe("put", cache, "skipped", 0.0)
            return
        if not self._admit():
            self._observe("put", cache, "unavailable", 0.0)
            return
        expires_ms = int((self._clock() + ttl) * 1000)
        entry = seal(self.settings.key, cache, name, expires_ms, payload)
        started = time.perf_counter()
        ms = max(1, int(ttl * 1000))
        if self._call("put", cache, "SET", _redis_key(name), entry, "PX", ms) is not False:
            self._observe("put", cache, "stored", time.perf_counter() - started)

    # -- marks of keys being computed --------------------------------------

    @property
    def wait_seconds(self) -> float:
        """How long a worker waits for another's computation (``waitMilliseconds``)."""
        return self.settings.wait_seconds

    def claim(self, cache: str, key: Hashable, seconds: float) -> float:
        """Mark ``key`` as computed here for ``seconds`` (SET NX PX), unless it is marked.

        Returns 0 when this worker should compute: it now holds the mark, Redis
        failed or is skipped, or the mark there is not genuine (a forged mark is
        ignored, counted and logged). Otherwise the seconds the mark has left.
        """
        name = canonical_key(cache, key)
        if name is None or seconds <= 0 or not self._admit():
            return 0.0
        expires_ms = int((self._clock() + seconds) * 1000)
        mark = seal(self.settings.key, _MARK + cache, name, expires_ms, b"")
        started = time.perf_counter()
        ms = max(1, int(seconds * 1000))
        stored = self._call("mark", cache, "SET", _mark_key(name), mark, "NX", "PX", ms)
        if stored is False:
            return 0.0
        if stored is not None:
            self._observe("mark", cache, "claimed", time.perf_counter() - started)
            return 0.0
        left = self._mark_left(cache, name)
        self._observe(
            "mark", cache, "held" if left > 0 else "unheld", time.perf_counter() - started
        )
        return left

    def marked(self, cache: str, key: Hashable) -> bool:
        """Whether a genuine, live mark of ``key`` is in Redis (False when Redis fails)."""
        name = canonical_key(cache, key)
        if name is None or not self._admit():
            return False
        return self._mark_left(cache, name) > 0

    def release(self, cache: str, key: Hashable) -> None:
        """Drop the mark of ``key``; best effort (it expires anyway)."""
        name = canonical_key(cache, key)
        if name is not None and self._admit():
            self._call("mark", cache, "DEL", _mark_key(name))

    def _mark_left(self, cache: str, name: bytes) -> float:
        data = self._call("mark", cache, "GETRANGE", _mark_key(name), 0, MAC_SIZE + EXPIRY_SIZE)
        if not isinstance(data, bytes) or not data:
            return 0.0
        mac, expiry = data[:MAC_SIZE], data[MAC_SIZE:]
        expires_ms = int.from_bytes(expiry, "big")
        wanted = entry_mac(self.settings.key, _MARK + cache, name, expires_ms, b"")
        if len(expiry) != EXPIRY_SIZE or not hmac.compare_digest(mac, wanted):
            self._observe("mark", cache, "rejected", 0.0)
            log.warning(
                "shared cache in-flight mark ignored: its MAC does not verify (tampered, "
                "forged, or sealed with another key)",
                extra={"fields": {"cache": cache, "key": name.decode(errors="replace")[:300]}},
            )
            return 0.0
        return max(0.0, expires_ms / 1000 - self._clock())

    def _call(self, operation: str, cache: str, *command: bytes | str | int) -> object:
        """One Redis call through the breaker; False when it failed (counted and observed)."""
        started = time.perf_counter()
        try:
            reply = self._redis().call(*command)
        except ReplyTooLarge as exc:
            self._failed(exc)
            self._observe(operation, cache, "oversized", time.perf_counter() - started)
            return False
        except RedisFailure as exc:
            self._failed(exc)
            self._observe(operation, cache, "error", time.perf_counter() - started)
            return False
        self._succeeded()
        return reply

    def status(self) -> dict[str, Any]:
        """What /readyz shows: where the tier is, whether it is used, and the last error."""
        with self._lock:
            left = self._open_until - time.monotonic()
            state: State = "down" if self._open_until else "up"
            shown: dict[str, Any] = {"url": redacted_url(self.settings.url), "state": state}
            if state == "down":
                shown["retryInSeconds"] = round(max(left, 0.0), 1)
                shown["note"] = "Redis is unreachable: reviews use the local caches only"
            if self._last_error is not None:
                shown["lastError"] = self._last_error
            return shown

    # -- entries ----------------------------------------------------------

    def _open(self, cache: str, name: bytes, data: bytes) -> tuple[Any, float] | None:
        """The value and seconds left of a sealed entry, or None after logging why not."""
        reason = None
        if len(data) < MAC_SIZE + EXPIRY_SIZE:
            reason = "too short to be an entry"
        else:
            mac, expiry, payload = (
                data[:MAC_SIZE],
                data[MAC_SIZE : MAC_SIZE + EXPIRY_SIZE],
                data[MAC_SIZE + EXPIRY_SIZE :],
            )
            expires_ms = int.from_bytes(expiry, "big")
            wanted = entry_mac(self.settings.key, cache, name, expires_ms, payload)
            if not hmac.compare_digest(mac, wanted):
                reason = "its MAC does not verify (tampered, forged, or sealed with another key)"
            else:
                try:
                    value = self._codec.decode(payload)
                except Undecodable as exc:
                    reason = f"it verifies but does not decode: {exc}"
                else:
                    return value, expires_ms / 1000 - self._clock()
        log.warning(
            "shared cache entry ignored: %s",
            reason,
            extra={"fields": {"cache": cache, "key": name.decode(errors="replace")[:300]}},
        )
        return None

    # -- the connection and its breaker -----------------------------------

    def _redis(self) -> RedisClient:
        client = self._client
        if client is None:
            s = self.settings
            endpoint = parse_url(s.url)
            if s.password is not None:
                endpoint = dataclasses.replace(endpoint, password=s.password)
            client = RedisClient(endpoint, timeout=s.timeout_seconds, max_reply=MAX_ENTRY_BYTES)
            self._client = client
        return client

    def _admit(self) -> bool:
        with self._lock:
            if not self._open_until:
                return True
            if time.monotonic() < self._open_until or self._probing:
                return False
            self._probing = True  # this call is the probe
            return True

    def _succeeded(self) -> None:
        with self._lock:
            self._failures = 0
            self._probing = False
            if not self._open_until:
                return
            self._open_until = 0.0
        log.info("shared cache reachable again: %s", redacted_url(self.settings.url))
        if self._observer is not None:
            self._observer.observe_shared_state(True)

    def _failed(self, exc: BaseException) -> None:
        reason = (exc.message if isinstance(exc, RedisFailure) else f"{type(exc).__name__}: {exc}")[
            :300
        ]
        with self._lock:
            self._last_error = reason
            self._failures += 1
            probe, self._probing = self._probing, False
            if not probe and (self._open_until or self._failures < FAILURES_TO_OPEN):
                return
            self._open_until = time.monotonic() + self.settings.retry_seconds
        log.warning(
            "shared cache unreachable (%s): using the local caches only, next try in %.0f s",
            reason,
            self.settings.retry_seconds,
            extra={"fields": {"url": redacted_url(self.settings.url)}},
        )
        if self._observer is not None:
            self._observer.observe_shared_state(False)

    def _observe(self, operation: str, cache: str, result: str, seconds: float) -> None:
        if self._observer is not None:
            self._observer.observe_shared(operation, cache, result, seconds)


def _redis_key(name: bytes) -> str:
    return _PREFIX + hashlib.sha256(name).hexdigest()


def _mark_key(name: bytes) -> str:
    return _PREFIX + "mark:" + hashlib.sha256(name).hexdigest()


def redis_key(cache: str, key: Hashable) -> str | None:
    """Where ``key`` of ``cache`` is stored in Redis (for tests and operators)."""
    name = canonical_key(cache, key)
    return None if name is None else _redis_key(name)


def mark_key(cache: str, key: Hashable) -> str | None:
    """Where the in-flight mark of ``key`` of ``cache`` is kept (for tests and operators)."""
    name = canonical_key(cache, key)
    return None if name is None else _mark_key(name)
