"""A reverse proxy in front of a real registry that counts the requests it passes on.

Tests and benchmarks point trustgate at the proxy's host instead of the
registry's, and read ``requests`` to see how many calls reached the registry.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})


class CountingProxy:
    """Forwards GET and HEAD to ``upstream`` (``http://host:port``) and counts them."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.paths: list[str] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._forward(body=True)

            def do_HEAD(self) -> None:
                self._forward(body=False)

            def _forward(self, *, body: bool) -> None:
                with proxy._lock:
                    proxy.paths.append(self.path)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                answer = requests.request(
                    self.command,
                    proxy.upstream + self.path,
                    headers=headers,
                    timeout=10,
                    allow_redirects=False,
                )
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in _HOP_BY_HOP:
                        self.send_header(key, value)
                length = str(len(answer.content)) if body else answer.headers.get("Content-Length")
                if length is not None:
                    self.send_header("Content-Length", length)
                self.end_headers()
                if body:
                    self.wfile.write(answer.content)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def requests(self) -> int:
        """Requests passed on so far."""
        with self._lock:
            return len(self.paths)

    def reset(self) -> None:
        with self._lock:
            self.paths.clear()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
