"""Hostile Redis servers on 127.0.0.1: one that drips its replies, one that floods.

Each reads whatever a client sends and answers every read with its one
hostile reply, and counts what it did, so tests can assert how long a call
lasted, how many calls reached it and how many bytes it got to push.
"""

from __future__ import annotations

import socket
import threading
import time


class HostileRedis:
    """A listener whose every connection is handled by ``answer``; stop it with ``stop``."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.connections = 0
        self.commands = 0
        self.sent = 0
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def answer(self, conn: socket.socket, command: bytes) -> None:
        """Answer ``command`` (what one read brought) on ``conn`` (overridden)."""
        raise NotImplementedError

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                while not self._stopped.is_set():
                    command = conn.recv(65536)
                    if not command:
                        return
                    with self._lock:
                        self.commands += 1
                    self.answer(conn, command)
            except OSError:
                return

    def _count(self, size: int) -> None:
        with self._lock:
            self.sent += size

    def stop(self) -> None:
        self._stopped.set()
        self._sock.close()


class DrippingRedis(HostileRedis):
    """Answers a long bulk string one byte per millisecond: no single read ever waits long."""

    def answer(self, conn: socket.socket, command: bytes) -> None:
        reply = b"$2000\r\n" + b"x" * 2000 + b"\r\n"
        for byte in reply:
            if self._stopped.is_set():
                return
            conn.sendall(bytes((byte,)))
            self._count(1)
            time.sleep(0.001)


class FloodingRedis(HostileRedis):
    """Answers GETRANGE with a bulk string of ``size`` bytes (300 MB), streamed as fast as it
    can; anything else with +OK."""

    def __init__(self, size: int = 300 * 1024 * 1024) -> None:
        self.size = size
        super().__init__()

    def answer(self, conn: socket.socket, command: bytes) -> None:
        if b"HELLO" in command.upper():
            conn.sendall(b"-ERR unknown command 'HELLO'\r\n")  # speak RESP2
            return
        if b"GETRANGE" not in command.upper():
            conn.sendall(b"+OK\r\n")  # a client's set-up, whatever it is
            return
        conn.sendall(b"$%d\r\n" % self.size)
        chunk = b"x" * 1024 * 1024
        left = self.size
        while left > 0 and not self._stopped.is_set():
            part = chunk[: min(left, len(chunk))]
            conn.sendall(part)
            self._count(len(part))
            left -= len(part)
        conn.sendall(b"\r\n")
