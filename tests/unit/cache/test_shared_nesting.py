"""A sealed shared-cache entry nested past the parser's depth is ignored, not raised.

The MAC proves an entry was written with the shared key, not that whoever
held the key wrote sane JSON; an entry nested thousands of levels deep must
be ignored, counted and logged like any entry that does not decode.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from tests.support.redisserver import RedisServer
from webhook.cache.shared import (
    Codec,
    SharedCache,
    SharedSettings,
    Undecodable,
    canonical_key,
    redis_key,
    seal,
)
from webhook.services import SHARED_TYPES

KEY = b"k" * 32
ENTRY = ("quay.io/acme/api", "sha256:" + "ab" * 32, "f" * 32)


class Seen:
    def __init__(self) -> None:
        self.results: list[str] = []

    def observe_shared(self, operation: str, cache: str, result: str, seconds: float) -> None:
        self.results.append(result)

    def observe_shared_state(self, up: bool) -> None:
        pass


@pytest.fixture
def messages() -> Iterator[list[str]]:
    seen: list[str] = []

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logger, handler = logging.getLogger("trustgate.sharedcache"), Handler()
    logger.addHandler(handler)
    yield seen
    logger.removeHandler(handler)


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 3000 + b"]" * 3000,
        b'{"c":"SignatureOutcome","f":{"passed":' + b"[" * 3000 + b"]" * 3000 + b"}}",
        b'{"c":"SignatureOutcome","f":{"passed":' + b"[" * 900 + b"]" * 900 + b"}}",
        b"[" + b"1" * 5000 + b"]",
    ],
    ids=["3000 levels", "3000 levels in a field", "900 levels in a field", "huge number"],
)
def test_a_sealed_deeply_nested_entry_is_ignored(
    redis_server: RedisServer, messages: list[str], payload: bytes
) -> None:
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()
    with pytest.raises(Undecodable):
        Codec(SHARED_TYPES).decode(payload)
    name = canonical_key("verified", ENTRY)
    where = redis_key("verified", ENTRY)
    assert name is not None and where is not None
    expires_ms = int((time.time() + 600) * 1000)
    redis_server.client().set(where, seal(KEY, "verified", name, expires_ms, payload))
    seen = Seen()
    settings = SharedSettings(url=redis_server.url, key=KEY, timeout_seconds=0.2)
    assert SharedCache(settings, SHARED_TYPES, seen).get("verified", ENTRY) is None
    assert seen.results == ["rejected"]
    assert any("verifies but does not decode" in m for m in messages), messages
