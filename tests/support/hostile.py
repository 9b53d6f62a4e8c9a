"""Hostile servers on 127.0.0.1 that keep a client busy one byte at a time.

Each connection is served by ``behaviour(sock, request)`` in a thread of its own;
``request`` is the request head the client sent (empty for ``drip_tls``, which
never reads). Every drip stops after ``LIMIT`` seconds or when the client hangs up,
and the server records how long each connection stayed open. ``Hanging`` is
simpler still: it accepts connections and never answers.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

LIMIT = 120.0
PAUSE = 0.2

Behaviour = Callable[[socket.socket, bytes], None]


@dataclass
class Hostile:
    """A running hostile server: its ``host`` (``127.0.0.1:PORT``) and what it saw."""

    host: str
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    open_for: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _drip(sock: socket.socket, head: bytes, byte: bytes) -> None:
    if head:
        sock.sendall(head)
    end = time.monotonic() + LIMIT
    while time.monotonic() < end:
        sock.sendall(byte)
        time.sleep(PAUSE)


def trickle_headers(sock: socket.socket, request: bytes) -> None:
    """A status line, then one header that never ends: a byte every PAUSE seconds."""
    _drip(sock, b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a")


def trickle_body(sock: socket.socket, request: bytes) -> None:
    """Complete headers, then a chunked body of one-byte chunks that never ends."""
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n"
        b"Docker-Content-Digest: sha256:" + b"ab" * 32 + b"\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    _drip(sock, head, b"1\r\n \r\n")


def drip_tls(sock: socket.socket, request: bytes) -> None:
    """A TLS handshake record announced at 16 KiB and sent one byte at a time."""
    _drip(sock, b"\x16\x03\x03\x40\x00", b"\x00")


def hang(sock: socket.socket, request: bytes) -> None:
    """Read the request and answer nothing, keeping the connection open until the client leaves."""
    sock.settimeout(LIMIT)
    while sock.recv(4096):
        pass


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    sock.settimeout(5)
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


@contextmanager
def hostile_server(behaviour: Behaviour, *, reads: bool = True) -> Iterator[Hostile]:
    """Serve ``behaviour`` on 127.0.0.1 until the block ends."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    server = Hostile(f"127.0.0.1:{listener.getsockname()[1]}")
    stop = threading.Event()

    def serve(sock: socket.socket) -> None:
        opened = time.monotonic()
        try:
            request = _read_head(sock) if reads else b""
            with server.lock:
                server.requests.append(request)
            sock.settimeout(None)
            behaviour(sock, request)
        except OSError:
            pass  # the client hung up: what the client under test should do
        finally:
            with server.lock:
                server.open_for.append(time.monotonic() - opened)
            sock.close()

    def accept() -> None:
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            with server.lock:
                server.connections += 1
            threading.Thread(target=serve, args=(sock,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield server
    finally:
        stop.set()
        with suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        listener.close()


class Hanging:
    """A TCP server that accepts connections and never answers: a registry that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.host = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()
