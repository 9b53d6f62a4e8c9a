"""A real Redis for tests: Debian's ``redis-server`` on 127.0.0.1 on a free port.

No persistence (``--save ''``, ``--appendonly no``): a restart starts empty, as a
Redis that lost its memory does. ``stop`` and ``start`` again on the same port let
tests take Redis away in the middle of a run and bring it back.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.registry import free_port
from webhook.cache.redisclient import Endpoint, RedisClient, Reply

REDIS_BINARY = "redis-server"
READY_DEADLINE = 20.0


@dataclass
class RedisServer:
    """A running (or stopped) redis-server and how to reach it."""

    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None
    _client: TestClient | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> TestClient:
        """A client for the test's own reads and writes (not the webhook's)."""
        if self._client is None:
            self._client = TestClient(self.port)
        return self._client

    def start(self) -> None:
        """Start redis-server on ``port`` and wait until it answers PING.

        Raises:
            RuntimeError: the binary is missing, or the server exits or does not answer
                within READY_DEADLINE seconds (the message carries its log).
        """
        binary = shutil.which(REDIS_BINARY)
        if binary is None:
            raise RuntimeError(f"{REDIS_BINARY} is not installed (`make test-deps` installs it)")
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    binary,
                    "--bind", "127.0.0.1",
                    "--port", str(self.port),
                    "--save", "",
                    "--appendonly", "no",
                    "--protected-mode", "yes",
                    "--dir", str(self.log.parent),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + READY_DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{REDIS_BINARY} exited:\n{self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{REDIS_BINARY} did not answer within {READY_DEADLINE}s")

    def stop(self) -> None:
        """Kill the server (as a crash would) and wait for it."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


class TestClient:
    """The few commands tests send to Redis themselves, with patient limits."""

    def __init__(self, port: int) -> None:
        endpoint = Endpoint(host="127.0.0.1", port=port)
        self._client = RedisClient(endpoint, timeout=5.0, max_reply=64 * 1024 * 1024)

    def call(self, *args: bytes | str | int) -> Reply:
        return self._client.call(*args)

    def flushall(self) -> None:
        self.call("FLUSHALL")

    def get(self, key: str) -> bytes | None:
        found = self.call("GET", key)
        assert found is None or isinstance(found, bytes)
        return found

    def set(self, key: str, value: bytes) -> None:
        self.call("SET", key, value)

    def pttl(self, key: str) -> int:
        found = self.call("PTTL", key)
        assert isinstance(found, int)
        return found

    def persist(self, key: str) -> None:
        self.call("PERSIST", key)

    def exists(self, key: str) -> int:
        found = self.call("EXISTS", key)
        assert isinstance(found, int)
        return found

    def close(self) -> None:
        self._client.close()


def start_redis(tmp: Path) -> RedisServer:
    """A new redis-server on a free port of 127.0.0.1, with its files under ``tmp``."""
    tmp.mkdir(parents=True, exist_ok=True)
    server = RedisServer(port=free_port(), log=tmp / "redis.log")
    server.start()
    return server
