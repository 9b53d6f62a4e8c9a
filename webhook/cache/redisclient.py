"""A small Redis client whose every call is bounded in time and in bytes.

The shared cache asks Redis for five things (AUTH, SELECT, GETRANGE, SET, DEL)
and must never be held by it: a Redis that drips one byte at a time, or that
announces a reply of hundreds of megabytes, is an attacker's tool against
every review. General clients bound each socket read, not a call, and read a
reply in full before anyone can look at its size. This one:

- gives each call one deadline for name lookup, connect, TLS, AUTH, write
  and read together (every ``recv`` gets only what is left of it; a lookup
  runs on a thread of its own and is waited for only that long);
- reads RESP2 replies of the few types those commands answer (simple string,
  error, integer, bulk string, null), refusing a line or a bulk string over
  ``max_reply`` bytes before reading it: the connection is then dropped, as
  it is after any failure, so a half-read reply never meets the next call;
- keeps a few idle connections for reuse, never more.

URLs: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` for TLS
(``?ssl_ca_certs=/path`` for a private CA; the host name is always checked),
``unix:///path/to/socket[?db=N]``.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from webhook.core.errors import UpstreamError

#: The longest line (simple string, error, length) a reply may have.
MAX_LINE = 4096
#: How long a resolved address of Redis is used before the name is looked up again.
RESOLVED_SECONDS = 30.0
_CHUNK = 65536
_IDLE = 8

#: A RESP2 reply of the commands used: bytes (bulk or simple string), int, or None (null).
Reply = bytes | int | None


class RedisFailure(UpstreamError):
    """A Redis call failed: unreachable, too slow, an error reply, or a reply it cannot read."""


class ReplyTooLarge(RedisFailure):
    """Redis announced a reply over the client's byte limit; nothing more of it was read."""


class RedisTimeout(RedisFailure):
    """A Redis call did not finish within its deadline (connect, write and read together)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where Redis is and how to log in, from ``cache.shared.url``."""

    host: str = ""
    port: int = 6379
    path: str | None = None  # a unix socket
    tls: bool = False
    ca_file: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        where = self.path or f"{self.host}:{self.port}"
        return f"Endpoint({where!r}, db={self.db}, tls={self.tls})"


def parse_url(url: str) -> Endpoint:
    """The endpoint of a ``redis://``, ``rediss://`` or ``unix://`` URL.

    Raises:
        ValueError: another scheme, no host, a port or database that is not a number.
    """
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"scheme {parts.scheme!r} is not redis, rediss or unix")
    db_text = query.get("db", [""])[0]
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("a unix:// URL needs the socket's path")
        return Endpoint(path=parts.path, db=_db(db_text), username=username, password=password)
    if not parts.hostname:
        raise ValueError("the URL names no host")
    port = parts.port  # raises ValueError for a port that is not one
    path_db = parts.path.strip("/")
    return Endpoint(
        host=parts.hostname,
        port=6379 if port is None else port,
        tls=parts.scheme == "rediss",
        ca_file=query.get("ssl_ca_certs", [None])[0],
        db=_db(path_db or db_text),
        username=username,
        password=password,
    )


def _db(text: str) -> int:
    if not text:
        return 0
    if not text.isdigit():
        raise ValueError(f"database {text!r} is not a number")
    return int(text)


def encode(*args: bytes | str | int) -> bytes:
    """One command in RESP2 (an array of bulk strings)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Connection:
    """One socket and what has been read from it but not yet parsed."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def send(self, data: bytes, end: float) -> None:
        self.sock.settimeout(_left(end))
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise RedisTimeout("Redis did not take the command in time") from None

    def reply(self, end: float, max_reply: int) -> Reply:
        line = self._line(end)
        kind, rest = line[:1], bytes(line[1:])
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RedisFailure(f"Redis answered an error: {rest[:200].decode(errors='replace')}")
        if kind == b":":
            return _number(rest)
        if kind == b"$":
            size = _number(rest)
            if size < 0:
                return None
            if size > max_reply:
                raise ReplyTooLarge(
                    f"Redis announced a reply of {size} bytes; at most {max_reply} are read"
                )
            data = self._exactly(size + 2, end)
            if data[-2:] != b"\r\n":
                raise RedisFailure("Redis sent a bulk string without its CRLF")
            return data[:-2]
        raise RedisFailure(f"Redis sent a reply of a type this client does not read: {kind!r}")

    def _line(self, end: float) -> bytes:
        start = 0
        while True:
            found = self.buffer.find(b"\r\n", start)
            if found >= 0:
                line = bytes(self.buffer[:found])
                del self.buffer[: found + 2]
                return line
            if len(self.buffer) > MAX_LINE:
                raise ReplyTooLarge(f"Redis sent a reply line over {MAX_LINE} bytes")
            start = max(0, len(self.buffer) - 1)
            self._fill(end)

    def _exactly(self, size: int, end: float) -> bytes:
        while len(self.buffer) < size:
            self._fill(end)
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def _fill(self, end: float) -> None:
        self.sock.settimeout(_left(end))
        try:
            chunk = self.sock.recv(_CHUNK)
        except TimeoutError:
            raise RedisTimeout("Redis did not answer in time") from None
        if not chunk:
            raise RedisFailure("Redis closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _left(end: float) -> float:
    left = end - time.monotonic()
    if left <= 0:
        raise RedisTimeout("Redis did not answer in time")
    return left


def _number(text: bytes) -> int:
    try:
        return int(text)
    except ValueError:
        raise RedisFailure(f"Redis sent {text[:40]!r} where a number belongs") from None


class RedisClient:
    """Calls to one Redis, each within ``timeout`` seconds and ``max_reply`` bytes.

    Thread-safe: a call takes an idle connection (or opens one) and gives it
    back only after a whole reply was read.
    """

    def __init__(self, endpoint: Endpoint, *, timeout: float, max_reply: int) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.max_reply = max_reply
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None
        self._resolver: ThreadPoolExecutor | None = None
        self._resolving: Future[tuple[int, Any]] | None = None
        self._resolved: tuple[float, tuple[int, Any]] | None = None
        if endpoint.tls:
            self._tls = ssl.create_default_context(cafile=endpoint.ca_file)

    def call(self, *args: bytes | str | int) -> Reply:
        """Send one command and return its reply.

        Raises:
            RedisTimeout: the call (connect included) took longer than ``timeout``.
            ReplyTooLarge: the reply is over ``max_reply`` bytes (the connection is dropped).
            RedisFailure: Redis is unreachable, closed the connection or answered an error.
        """
        end = time.monotonic() + self.timeout
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        try:
            if conn is None:
                conn = self._connect(end)
            conn.send(encode(*args), end)
            reply = conn.reply(end, self.max_reply)
        except RedisFailure:
            # Never reuse a connection after a failure: a reply may be half read.
            if conn is not None:
                conn.close()
            raise
        except OSError as exc:
            if conn is not None:
                conn.close()
            raise RedisFailure(f"Redis is unreachable: {exc.strerror or exc}") from None
        self._give_back(conn)
        return reply

    def close(self) -> None:
        """Close the idle connections."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _give_back(self, conn: _Connection) -> None:
        with self._lock:
            if len(self._idle) < _IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def _connect(self, end: float) -> _Connection:
        e = self.endpoint
        if e.path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(_left(end))
            try:
                sock.connect(e.path)
            except BaseException:
                sock.close()
                raise
        else:
            family, address = self._address(end)
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(_left(end))
                sock.connect(address)
            except TimeoutError:
                sock.close()
                raise RedisTimeout("Redis did not accept a connection in time") from None
            except BaseException:
                sock.close()
                raise
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls is not None:
            sock = _handshake(self._tls, sock, e.host, end)
        conn = _Connection(sock)
        try:
            self._login(conn, end)
        except BaseException:
            conn.close()
            raise
        return conn

    def _address(self, end: float) -> tuple[int, Any]:
        """The host's first address, resolved off the call's thread and kept a while.

        A name lookup (a cluster's DNS, with its search list) is not bounded by
        any socket timeout; here the call waits for it only until its deadline.
        """
        with self._lock:
            known = self._resolved
            if known is not None and known[0] > time.monotonic():
                return known[1]
            if self._resolving is None:
                if self._resolver is None:
                    self._resolver = ThreadPoolExecutor(1, thread_name_prefix="redis-resolve")
                self._resolving = self._resolver.submit(self._resolve)
            pending = self._resolving
        try:
            return pending.result(timeout=_left(end))
        except FutureTimeout:
            raise RedisTimeout(f"the name {self.endpoint.host} did not resolve in time") from None

    def _resolve(self) -> tuple[int, Any]:
        e = self.endpoint
        try:
            found = socket.getaddrinfo(e.host, e.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            with self._lock:
                self._resolving = None
            raise RedisFailure(f"the name {e.host} does not resolve: {exc}") from None
        family, _, _, _, address = found[0]
        with self._lock:
            self._resolved = (time.monotonic() + RESOLVED_SECONDS, (family, address))
            self._resolving = None
        return family, address

    def _login(self, conn: _Connection, end: float) -> None:
        e = self.endpoint
        commands: list[bytes] = []
        if e.password is not None:
            who = (e.username,) if e.username else ()
            commands.append(encode("AUTH", *who, e.password))
        if e.db:
            commands.append(encode("SELECT", e.db))
        if not commands:
            return
        conn.send(b"".join(commands), end)
        for _ in commands:
            conn.reply(end, MAX_LINE)


def _handshake(
    context: ssl.SSLContext, sock: socket.socket, host: str, end: float
) -> ssl.SSLSocket:
    """TLS over ``sock`` within the call's deadline, however slowly the server answers."""
    sock.setblocking(False)
    tls = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    try:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                ready = select.select([tls], [], [], _left(end))[0]
            except ssl.SSLWantWriteError:
                ready = select.select([], [tls], [], _left(end))[1]
            if not ready:
                raise RedisTimeout("Redis did not finish the TLS handshake in time")
    except BaseException:
        tls.close()
        raise
    tls.setblocking(True)
    return tls
