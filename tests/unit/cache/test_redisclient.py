"""The bounded Redis client: URLs, the commands the shared cache sends, limits, login."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.hostileredis import DrippingRedis
from tests.support.redisserver import RedisServer, start_redis
from webhook.cache.redisclient import (
    Endpoint,
    RedisClient,
    RedisFailure,
    RedisTimeout,
    ReplyTooLarge,
    encode,
    parse_url,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://r:6380/2", Endpoint(host="r", port=6380, db=2)),
        ("redis://r", Endpoint(host="r")),
        (
            "redis://default:s%40cret@r:1/0",
            Endpoint(host="r", port=1, username="default", password="s@cret"),
        ),
        ("redis://:pw@r", Endpoint(host="r", password="pw")),
        (
            "rediss://cache.svc:6380/1?ssl_ca_certs=/etc/ca.pem",
            Endpoint(host="cache.svc", port=6380, tls=True, ca_file="/etc/ca.pem", db=1),
        ),
        ("unix:///run/redis.sock?db=3", Endpoint(path="/run/redis.sock", db=3)),
    ],
)
def test_urls(url: str, expected: Endpoint) -> None:
    assert parse_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://r:6379", "scheme 'http' is not redis"),
        ("redis://r:port", "Port could not be cast"),
        ("redis://r:6379/zero", "database 'zero' is not a number"),
        ("redis:///0", "names no host"),
        ("unix://", "needs the socket's path"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_url(url)


def test_passwords_never_show_in_an_endpoints_repr() -> None:
    assert "hunter2" not in repr(parse_url("redis://u:hunter2@r:1/0"))


def test_encode_is_resp_arrays_of_bulk_strings() -> None:
    assert encode("SET", "k", b"v\r\n", "PX", 5) == (
        b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n$2\r\nPX\r\n$1\r\n5\r\n"
    )


def client(server: RedisServer, **limits: float) -> RedisClient:
    endpoint = Endpoint(host="127.0.0.1", port=server.port)
    return RedisClient(
        endpoint, timeout=limits.get("timeout", 2.0), max_reply=int(limits.get("max_reply", 1024))
    )


def test_the_commands_the_shared_cache_sends(redis_server: RedisServer) -> None:
    redis = client(redis_server)
    redis.call("DEL", "t:k")
    assert redis.call("SET", "t:k", b"\x00value", "NX", "PX", 60_000) == b"OK"
    assert redis.call("SET", "t:k", b"other", "NX", "PX", 60_000) is None
    assert redis.call("GETRANGE", "t:k", 0, 3) == b"\x00val"
    assert redis.call("GETRANGE", "t:missing", 0, 3) == b""
    assert redis.call("DEL", "t:k") == 1
    with pytest.raises(RedisFailure, match="Redis answered an error: ERR unknown command"):
        redis.call("NOSUCHCOMMAND")
    assert redis.call("SET", "t:k", b"v") == b"OK"  # a new connection after the error


def test_a_reply_over_the_limit_is_refused_before_it_is_read(redis_server: RedisServer) -> None:
    redis = client(redis_server, max_reply=100)
    redis.call("SET", "t:big", b"x" * 101)
    with pytest.raises(ReplyTooLarge, match="reply of 101 bytes; at most 100 are read"):
        redis.call("GETRANGE", "t:big", 0, -1)
    assert redis.call("GETRANGE", "t:big", 0, 99) == b"x" * 100


def test_one_deadline_covers_the_whole_call() -> None:
    dripper = DrippingRedis()
    try:
        redis = RedisClient(parse_url(dripper.url), timeout=0.05, max_reply=4096)
        with pytest.raises(RedisTimeout, match="did not answer in time"):
            redis.call("GETRANGE", "k", 0, 10)
    finally:
        dripper.stop()


def test_login_with_a_password_and_a_database(tmp_path: Path) -> None:
    own = start_redis(tmp_path)
    try:
        plain = client(own)
        assert plain.call("CONFIG", "SET", "requirepass", "pa55") == b"OK"
        with pytest.raises(RedisFailure, match="NOAUTH"):
            client(own).call("SET", "k", "v")
        logged = RedisClient(
            parse_url(f"redis://:pa55@127.0.0.1:{own.port}/3"), timeout=2.0, max_reply=1024
        )
        assert logged.call("SET", "k", "in-three") == b"OK"
        other = RedisClient(
            parse_url(f"redis://default:pa55@127.0.0.1:{own.port}/0"), timeout=2.0, max_reply=1024
        )
        assert other.call("GET", "k") is None
        with pytest.raises(RedisFailure, match="WRONGPASS"):
            RedisClient(
                parse_url(f"redis://:wrong@127.0.0.1:{own.port}"), timeout=2.0, max_reply=1024
            ).call("GET", "k")
    finally:
        own.stop()


def test_a_host_name_is_resolved_and_kept(redis_server: RedisServer) -> None:
    redis = RedisClient(
        parse_url(f"redis://localhost:{redis_server.port}/0"), timeout=2.0, max_reply=1024
    )
    assert redis.call("SET", "t:name", "v") == b"OK"
    redis.close()  # the next call connects again, to the address kept
    assert redis.call("GET", "t:name") == b"v"


def test_a_name_that_does_not_resolve_costs_no_more_than_the_call() -> None:
    """Without a reachable DNS a lookup can hang for seconds: the call still ends on time."""
    redis = RedisClient(parse_url("redis://no-such-redis.invalid:6379/0"), timeout=0.2, max_reply=1)
    started = time.monotonic()
    with pytest.raises(RedisFailure, match=r"no-such-redis\.invalid"):
        redis.call("GET", "k")
    assert time.monotonic() - started < 2  # 0.2 s, generous for a loaded machine
