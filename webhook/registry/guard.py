"""No socket outlives the deadline of the review that uses it.

A socket timeout bounds each wait for bytes, not a response: a server that
trickles its headers, its TLS handshake or a chunked body one byte at a time
restarts that clock with every byte and can hold a call for minutes. urllib3
offers no total response timeout, so the pools here use connection classes
that register their socket, when it is created and on every request, with the
deadline the calling thread is ``watching`` for.
One reaper thread per process shuts down every socket whose deadline has
passed; the blocked read then fails at once, whatever the server does.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_local = threading.local()


@contextlib.contextmanager
def watching(expires_at: float) -> Iterator[None]:
    """Sockets this thread opens or sends on inside are shut down at ``expires_at``.

    ``expires_at`` is a ``time.monotonic()`` instant; scopes nest, the inner wins.
    """
    previous = getattr(_local, "expires_at", None)
    _local.expires_at = expires_at
    try:
        yield
    finally:
        _local.expires_at = previous


class _Reaper:
    """One daemon thread that shuts down overdue sockets, started on first use.

    Entries are keyed by connection: a connection reused by a later review is
    re-registered with that review's deadline, and forgotten when it goes back
    to its pool idle. After a fork (gunicorn workers) the child starts afresh.
    """

    def __init__(self) -> None:
        self._pid = -1
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._entries: dict[int, tuple[float, socket.socket]] = {}
        self._heap: list[tuple[float, int]] = []
        self._thread: threading.Thread | None = None

    def watch(self, conn: object, sock: socket.socket | None) -> None:
        expires_at: float | None = getattr(_local, "expires_at", None)
        if expires_at is None or sock is None:
            return
        if self._pid != os.getpid():
            self._reset()
        with self._cond:
            self._entries[id(conn)] = (expires_at, sock)
            heapq.heappush(self._heap, (expires_at, id(conn)))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="trustgate-socket-reaper", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def forget(self, conn: object) -> None:
        with self._cond:
            self._entries.pop(id(conn), None)

    def _run(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    expires_at, key = heapq.heappop(self._heap)
                    entry = self._entries.get(key)
                    if entry is not None and entry[0] == expires_at:
                        del self._entries[key]
                        _shutdown(entry[1])
                wait = self._heap[0][0] - now if self._heap else None
                self._cond.wait(wait)


def _shutdown(sock: socket.socket) -> None:
    # The plain socket's shutdown, also for an SSLSocket: it ends the reads and
    # writes blocked on the descriptor without touching the TLS state another
    # thread is using.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


_REAPER = _Reaper()


class _Watched:
    """Connection mixin: register the socket when created, connected and reused."""

    sock: socket.socket | None

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        _REAPER.watch(self, sock)  # covers a TLS handshake that drips
        return sock

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        _REAPER.watch(self, self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _REAPER.watch(self, self.sock)
        super().request(*args, **kwargs)  # type: ignore[misc]


class _GuardedHTTPConnection(_Watched, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _Forgetting:
    """Pool mixin: a connection back in its pool is idle, and no longer watched."""

    def _put_conn(self, conn: Any) -> None:
        if conn is not None:
            _REAPER.forget(conn)
        super()._put_conn(conn)  # type: ignore[misc]


class _GuardedPool(_Forgetting, HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(_Forgetting, HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


#: The pools of ``urllib3.PoolManager.pool_classes_by_scheme`` whose sockets are watched.
POOL_CLASSES: dict[str, type[HTTPConnectionPool]] = {
    "http": _GuardedPool,
    "https": _GuardedHTTPSPool,
}
