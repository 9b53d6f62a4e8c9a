"""A small HTTP server on 127.0.0.1 and a quiet handler: what the stand-ins share.

The stand-ins for cloud identity endpoints, token services and Sigstore's services
each answer their own real shapes; how they listen, stop and send a body is the same
everywhere, and lives here once.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing and sends whole bodies with their length."""

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as separate writes: without this, Nagle's
        # algorithm and delayed ACKs add 40 ms to an answer on a kept-alive connection.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send_body(
        self, status: int, content_type: str, data: bytes, headers: Mapping[str, str] = {}
    ) -> None:
        """Answer ``status`` with ``data`` as ``content_type``, and any extra ``headers``."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_json(
        self,
        status: int,
        body: Any,
        content_type: str = "application/json",
        headers: Mapping[str, str] = {},
    ) -> None:
        """Answer ``status`` with ``body`` as JSON."""
        self.send_body(status, content_type, json.dumps(body).encode(), headers)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class LocalServer:
    """``handler`` served on a free port of 127.0.0.1 from a daemon thread once started.

    ``stop()`` shuts it down (if it was started) and closes its socket.
    """

    def __init__(
        self,
        handler: type[BaseHTTPRequestHandler],
        server_class: type[ThreadingHTTPServer] = ThreadingHTTPServer,
    ) -> None:
        self.httpd = server_class(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> LocalServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self.httpd.shutdown()
            self._thread.join(timeout=5)
        self.httpd.server_close()
