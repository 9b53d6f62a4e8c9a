"""A stand-in Docker Engine API on a unix socket: what ``docker build`` sends, without a daemon.

The real ``docker`` command line talks to it through ``DOCKER_HOST=unix://...``: it
negotiates the API version (``/_ping``), asks ``/info``, and posts the build context
as a tar stream to ``/build``, with the tag, the Containerfile's name and the build
arguments in the query string, as it would to dockerd. The stand-in keeps each
build's query and the names in its context and answers as the legacy builder does,
so ``make image`` with docker can be tested where no daemon runs.
"""

from __future__ import annotations

import io
import json
import socketserver
import tarfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

API_VERSION = "1.41"


@dataclass
class Build:
    """One ``POST /build``: its query parameters and the names in its context."""

    query: dict[str, list[str]]
    names: list[str]

    @property
    def tags(self) -> list[str]:
        """The ``-t`` arguments."""
        return self.query.get("t", [])

    @property
    def build_args(self) -> dict[str, str]:
        """The ``--build-arg`` arguments."""
        args: dict[str, str] = json.loads(self.query.get("buildargs", ["{}"])[0])
        return args


@dataclass
class Dockerd:
    """The running stand-in: where it listens and what it was asked to build."""

    socket: Path
    builds: list[Build] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    _server: socketserver.UnixStreamServer | None = None

    @property
    def host(self) -> str:
        """The value of ``DOCKER_HOST`` that reaches it."""
        return f"unix://{self.socket}"

    def stop(self) -> None:
        """Stop serving and remove the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self.socket.unlink(missing_ok=True)


def start_dockerd(directory: Path) -> Dockerd:
    """A stand-in Docker Engine API listening on ``directory/docker.sock``."""
    daemon = Dockerd(directory / "docker.sock")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Api-Version", API_VERSION)
            self.send_header("Ostype", "linux")
            self.send_header("Builder-Version", "1")  # the legacy builder: no BuildKit
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            daemon.requests.append(f"{self.command} {path}")
            if path.endswith("/_ping"):
                self._send(200, b"OK", "text/plain")
            elif path.endswith("/info"):
                info = {"ID": "stand-in", "ServerVersion": "stand-in", "OSType": "linux"}
                self._send(200, json.dumps(info).encode(), "application/json")
            elif path.endswith("/version"):
                version = {"ApiVersion": API_VERSION, "Version": "stand-in", "Os": "linux"}
                self._send(200, json.dumps(version).encode(), "application/json")
            else:
                self._send(404, b'{"message": "not served by the stand-in"}', "application/json")

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            daemon.requests.append(f"POST {url.path}")
            body = self._body()
            if not url.path.endswith("/build"):
                self._send(404, b'{"message": "not served by the stand-in"}', "application/json")
                return
            with tarfile.open(fileobj=io.BytesIO(body)) as context:
                names = context.getnames()
            daemon.builds.append(Build(parse_qs(url.query), names))
            stream = [
                {"stream": f"Step 1/1 : stand-in build of {len(names)} files\n"},
                {"aux": {"ID": "sha256:" + "0" * 64}},
                {"stream": "Successfully built 000000000000\n"},
            ]
            text = "".join(json.dumps(line) + "\r\n" for line in stream)
            self._send(200, text.encode(), "application/json")

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    chunk = self.rfile.read(size)
                    self.rfile.readline()
                    if not size:
                        return b"".join(chunks)
                    chunks.append(chunk)
            return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

    server = Server(str(daemon.socket), Handler)
    daemon._server = server
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return daemon
