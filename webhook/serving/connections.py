"""The open connections of one worker, the bytes they buffer, and the ways they are closed.

The worker's event loop (``webhook.serving.worker``) reads requests and hands
complete ones to pool threads. This table knows where each open connection
stands:

- waiting: accepted, or kept alive after an answer, and receiving its next
  request; oldest first, the order in which eviction and shedding choose;
- busy: its request in a pool thread (only counted here);
- lingering: half-closed, draining what its client still sends.

It keeps the counts the worker's limits are measured against (open
connections, bytes buffered against the budget) and does every closing, so
that each way a connection ends (deadline, eviction, shedding, refusal,
graceful close) leaves the counts right. It is separate from the worker so
that this bookkeeping reads without the loop around it; which reasons to
count is :class:`~webhook.serving.connstats.ConnectionStats`'s.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import time
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import TConn

from webhook.serving.connstats import ConnectionStats
from webhook.serving.framing import RequestFramer

__all__ = ["RECV_BYTES", "Conn", "Connections"]

#: The most read from a socket at once.
RECV_BYTES = 64 * 1024
#: Bytes buffered for incomplete requests in one worker, at least.
_MIN_BUFFER_BUDGET = 64 * 1024 * 1024
#: A closed connection drains what its client still sends for this long, at most this
#: much (the limits of gunicorn's ``util.close_graceful``).
_LINGER_SECONDS = 2.0
_LINGER_BYTES = 64 * 1024
_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
}


class Conn(TConn):  # type: ignore[misc]
    """One client connection and what the loop has received of its next request."""

    def __init__(
        self, cfg: Any, sock: socket.socket, client: Any, server: Any, framer: RequestFramer
    ) -> None:
        super().__init__(cfg, sock, client, server)
        # TConn.init (handshake and parser in the thread) is never used here.
        self.initialized = True
        self.data_ready = True
        self.handshaken = not cfg.is_ssl
        self.buf = bytearray()
        self.framer = framer
        self.expires = 0.0
        #: Kept alive and idle: the deadline is the keep-alive timeout until a byte arrives.
        self.kept = False
        self.closing = False
        self.closed = False
        self.drained = 0
        #: "100 Continue" went out for the request being received.
        self.continued = False
        self.events = 0
        self.callback: Any = None


class Connections:
    """Every open connection of one worker: waiting, busy or lingering (see the module doc).

    A connection's deadline (``Conn.expires``) is set by the worker, whose
    rules they are; :meth:`expire` closes what is past it.
    """

    def __init__(
        self,
        poller: selectors.BaseSelector,
        stats: ConnectionStats,
        *,
        client_timeout: float,
        largest_request: int,
    ) -> None:
        self._poller = poller
        self._stats = stats
        self._client_timeout = client_timeout
        #: Room for four of the largest requests, 64 MiB at least.
        self.budget = max(_MIN_BUFFER_BUDGET, 4 * largest_request)
        #: Open connections: waiting, busy and lingering.
        self.open = 0
        #: Bytes of incomplete requests held, against ``budget``.
        self.buffered = 0
        self._waiting: dict[Conn, None] = {}  # oldest first
        self._lingering: dict[Conn, None] = {}

    @property
    def waiting(self) -> int:
        """How many connections wait for a complete request (or idle between requests)."""
        return len(self._waiting)

    @property
    def busy(self) -> int:
        """How many connections have a request in a pool thread."""
        return self.open - len(self._waiting) - len(self._lingering)

    # Where a connection stands -------------------------------------------

    def add(self, conn: Conn) -> None:
        """Count a connection just accepted, and wait for its first request."""
        self.open += 1
        self._waiting[conn] = None
        self.listen(conn, selectors.EVENT_READ)

    def listen(self, conn: Conn, events: int) -> None:
        """Have the loop call ``conn.callback`` when ``events`` happen on its socket."""
        if conn.events == events:
            return
        if conn.events:
            self._poller.modify(conn.sock, events, conn.callback)
        else:
            self._poller.register(conn.sock, events, conn.callback)
        conn.events = events

    def _unlisten(self, conn: Conn) -> None:
        if conn.events:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._poller.unregister(conn.sock)
            conn.events = 0

    def received(self, conn: Conn, data: bytes) -> None:
        """Add ``data`` to ``conn``'s request; past the budget, shed the oldest others."""
        conn.buf += data
        self.buffered += len(data)
        if self.buffered > self.budget:
            self._shed(conn)

    def _shed(self, keep: Conn) -> None:
        """Close the oldest incomplete requests until the buffers fit the budget again."""
        for conn in [c for c in self._waiting if c.buf and c is not keep]:
            if self.buffered <= self.budget:
                return
            self._stats.count("shed")
            self.drop(conn)

    def take(self, conn: Conn, end: int) -> bytes:
        """The complete request that ends at ``end`` of ``conn``'s buffer: the connection is busy.

        Pipelined bytes after it stay in the buffer, framed once the request is answered.
        """
        self._unlisten(conn)
        del self._waiting[conn]
        request = bytes(conn.buf[:end])
        self.buffered -= end
        del conn.buf[:end]
        return request

    def wait(self, conn: Conn) -> None:
        """``conn``'s request was answered and it stays open: it waits for the next one."""
        self._waiting[conn] = None

    def cap_idle(self, deadline: float) -> None:
        """Close idle waiting connections by ``deadline``; partial requests keep their own."""
        for conn in self._waiting:
            if not conn.buf:
                conn.expires = min(conn.expires, deadline)

    # Closing --------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Close what is past its deadline; a partial request is answered 408 first."""
        for conn in [c for c in self._lingering if c.expires <= now]:
            self.drop(conn)
        for conn in [c for c in self._waiting if c.expires <= now]:
            if conn.buf:
                self._stats.count("timeout")
                reason = f"the request was not complete within {self._client_timeout:g} seconds"
                self.refuse(conn, 408, reason)
            else:
                if not conn.kept:
                    self._stats.count("timeout")
                self.drop(conn)

    def evict_oldest(self) -> bool:
        """Close a lingering connection, or the oldest still waiting for its request."""
        for pool, reason in ((self._lingering, None), (self._waiting, "evicted")):
            if pool:
                if reason:
                    self._stats.count(reason)
                self.drop(next(iter(pool)))
                return True
        return False

    def refuse(self, conn: Conn, status: int, reason: str) -> None:
        """Answer ``status`` without waiting (best effort), then close."""
        body = json.dumps({"error": reason}).encode() + b"\n"
        head = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(OSError, ValueError):
            conn.sock.send(head.encode() + body)
        self.close_gracefully(conn)

    def close_gracefully(self, conn: Conn) -> None:
        """Half-close, then drain in the loop what the client still sends, briefly (RFC 9112 9.6).

        Closing at once with unread bytes would make the kernel answer RST and
        could cut off the response the client has not read yet. gunicorn's
        ``util.close_graceful`` (27.0.1) does the same but blocks up to two
        seconds, which in the loop would stall every other connection: here
        :meth:`drain` runs on each readiness event instead, with its limits.
        """
        self._forget(conn)
        try:
            conn.sock.setblocking(False)
            conn.sock.shutdown(socket.SHUT_WR)
        except (OSError, ValueError):
            self.drop(conn)
            return
        conn.closing = True
        conn.expires = time.monotonic() + _LINGER_SECONDS
        self._lingering[conn] = None
        self.listen(conn, selectors.EVENT_READ)

    def drain(self, conn: Conn) -> None:
        """Discard what a closing connection's client sent; close at its end or past the cap."""
        try:
            data = conn.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except (OSError, ValueError):
            data = b""
        conn.drained += len(data)
        if not data or conn.drained > _LINGER_BYTES:
            self.drop(conn)

    def _forget(self, conn: Conn) -> None:
        self._waiting.pop(conn, None)
        self.buffered -= len(conn.buf)
        conn.buf = bytearray()

    def drop(self, conn: Conn) -> None:
        """Close ``conn`` now (once, whatever state it is in)."""
        if conn.closed:
            return
        conn.closed = True
        self._forget(conn)
        self._lingering.pop(conn, None)
        self._unlisten(conn)
        self.open -= 1
        util.close(conn.sock)

    def drop_all(self) -> None:
        """Close every waiting and lingering connection now (a worker that stops)."""
        for conn in [*self._waiting, *self._lingering]:
            self.drop(conn)
