"""A local stand-in for Red Hat's Pyxis API, answering with the catalog's real shapes.

``GET /api/containers/v1/images?filter=...`` returns ``{"data": [...], "page",
"page_size", "total"}`` where each image has ``architecture``, ``image_id``,
``repositories[]`` (``manifest_list_digest``, ``manifest_schema2_digest``) and
``freshness_grades[]`` (``grade``, ``start_date``, ``end_date``; the last
window has no end). A digest can be told to fail: HTTP 404 or 500, or an
answer slower than any deadline.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

API = "/api/containers/v1"
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def stamp(moment: datetime) -> str:
    """A date-time as Pyxis writes it: 2024-05-01T00:00:00+00:00."""
    return moment.isoformat()


def grades(*windows: tuple[str, datetime, datetime | None]) -> list[dict[str, Any]]:
    """``freshness_grades`` entries; the last window usually has no end."""
    out = []
    for grade, start, end in windows:
        entry: dict[str, Any] = {"grade": grade, "start_date": stamp(start)}
        if end is not None:
            entry["end_date"] = stamp(end)
        out.append(entry)
    return out


def image_record(
    architecture: str,
    image_id: str,
    freshness: list[dict[str, Any]],
    *,
    list_digest: str | None = None,
    repository: str = "ubi9/ubi",
) -> dict[str, Any]:
    """One ContainerImage as Pyxis lists it (the fields trustgate asks for, and a few more)."""
    repo: dict[str, Any] = {
        "registry": "registry.access.redhat.com",
        "repository": repository,
        "published": True,
        "manifest_schema2_digest": image_id,
        "tags": [{"name": "latest"}],
    }
    if list_digest is not None:
        repo["manifest_list_digest"] = list_digest
    return {
        "_id": image_id[7:31],
        "architecture": architecture,
        "image_id": image_id,
        "repositories": [repo],
        "freshness_grades": freshness,
    }


@dataclass
class Pyxis:
    """A running double: its base URL, its catalog, and the requests it saw."""

    url: str
    images: list[dict[str, Any]] = field(default_factory=list)
    #: digest -> "404" | "500" | "slow" | "deep" (JSON nested 3,000 levels)
    failures: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    slow_seconds: float = 10.0
    #: When set, every lookup is answered 307 to this base URL (same path and query).
    redirect: str | None = None

    def add(self, *records: dict[str, Any]) -> None:
        self.images.extend(records)

    def asked(self, digest: str) -> int:
        """How many requests asked about ``digest``."""
        return sum(1 for query, _ in self.requests if digest in query)

    def lookup(self, digest: str) -> list[dict[str, Any]]:
        found = []
        for image in self.images:
            keys = {image.get("image_id")}
            for repo in image.get("repositories", []):
                keys |= {repo.get("manifest_list_digest"), repo.get("manifest_schema2_digest")}
            if digest in keys:
                found.append(image)
        return found


def _handler(pyxis: Pyxis) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            # A client that gave up waiting is what a slow Pyxis is for.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            pyxis.requests.append((unquote_plus(url.query), dict(self.headers.items())))
            if pyxis.redirect is not None:
                self.send_response(307)
                self.send_header("Location", f"{pyxis.redirect}/images?{url.query}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if url.path != f"{API}/images":
                self._send(404, {"status": 404, "title": "Not Found"})
                return
            text = query.get("filter", [""])[0]
            digests = set(_DIGEST.findall(text))
            if len(digests) != 1:
                self._send(400, {"status": 400, "title": "Bad filter", "detail": text})
                return
            digest = digests.pop()
            failure = pyxis.failures.get(digest)
            if failure == "slow":
                time.sleep(pyxis.slow_seconds)
            elif failure == "deep":
                self._send(200, b'{"data":' + b"[" * 3000 + b"]" * 3000 + b"}")
                return
            elif failure in ("404", "500"):
                self._send(int(failure), {"status": int(failure), "title": "failure"})
                return
            found = pyxis.lookup(digest)
            size = int(query.get("page_size", ["100"])[0])
            self._send(
                200, {"data": found[:size], "page": 0, "page_size": size, "total": len(found)}
            )

    return Handler


@contextmanager
def running_pyxis(images: Sequence[dict[str, Any]] = ()) -> Iterator[Pyxis]:
    """A Pyxis double on 127.0.0.1 and a free port, stopped on exit."""
    pyxis = Pyxis("")
    pyxis.add(*images)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(pyxis))
    server.daemon_threads = True
    pyxis.url = f"http://127.0.0.1:{server.server_address[1]}{API}"
    thread = threading.Thread(target=server.serve_forever, name="pyxis", daemon=True)
    thread.start()
    try:
        yield pyxis
    finally:
        server.shutdown()
        server.server_close()
