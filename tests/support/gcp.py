"""Google identity endpoints for tests: the GCE metadata server, and STS for federated credentials.

``MetadataServer`` stands in on 127.0.0.1 for the metadata server, answering what
google-auth asks as GKE's does.

google-auth finds it through ``GCE_METADATA_HOST`` (read once, when
``google.auth.compute_engine._metadata`` is first imported) and ``GCE_METADATA_IP``
(read on each detection ping), so a test process runs one of these for all its
tests and switches its ``mode``:

- ``ok``: ``GET /`` (the detection ping) answers with ``Metadata-Flavor: Google``;
  ``/computeMetadata/v1/instance/service-accounts/default/?recursive=true`` (or the
  account's email in place of ``default``) the account's email, aliases and scopes;
  ``.../default/token`` ``{"access_token", "expires_in", "token_type"}``;
  ``/computeMetadata/v1/project/project-id`` the project.
  Any request without ``Metadata-Flavor: Google`` gets 403, as the real server
  answers; unknown paths get 404.
- ``hang``: token requests are read and never answered.
- ``denied``: token requests get 403 with the text GKE's server sends when IAM
  refuses the bound service account (not retried, unlike a 5xx).
- ``huge``: token requests get a body of ``HUGE`` bytes.
- ``redirect``: token requests get a 302 to ``redirect_to``.
- ``absent``: every path answers 404 without ``Metadata-Flavor``: not a GCE machine.

Each token answer is a new token (``tokens`` lists them) unless ``fixed_token`` is set;
``requests`` lists ``(path, headers)`` of everything asked.

``StsServer`` answers Google STS's token exchange (``POST /v1/token``, form-encoded, RFC
8693), as a workload identity federation credential file (``external_account``) makes
google-auth call it: it checks the grant type and audience, records the subject token,
and issues an access token.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.localhttp import LocalServer, QuietHandler

EMAIL = "trustgate@example-project.iam.gserviceaccount.com"
PROJECT = "example-project"
TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"
INFO_PATH = "/computeMetadata/v1/instance/service-accounts/default/"
EMAIL_PATH = f"/computeMetadata/v1/instance/service-accounts/{EMAIL}/"
HUGE = 4 * 1024 * 1024
DENIED = (
    "Unable to generate access token; IAM returned 403 Forbidden: Permission "
    "'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).\n"
    "This error could be caused by a missing IAM policy binding on the target IAM service "
    "account."
)
HANG_LIMIT = 60.0


class MetadataServer:
    """The stand-in; ``start()`` it, set ``mode``, ``stop()`` it."""

    def __init__(self, *, expires_in: int = 3599) -> None:
        self.mode = "ok"
        self.expires_in = expires_in
        self.fixed_token: str | None = None
        self.redirect_to = ""
        self.tokens: list[str] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = LocalServer(self._handler())
        self.host = self._server.host

    def start(self) -> MetadataServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.stop()

    def reset(self) -> None:
        """Back to ``ok``, with nothing recorded; hanging requests are let go."""
        self._release.set()
        with self._lock:
            self.mode = "ok"
            self.fixed_token = None
            self.tokens.clear()
            self.requests.clear()
        self._release = threading.Event()

    def token_requests(self) -> int:
        with self._lock:
            return sum(1 for path, _ in self.requests if urlsplit(path).path == TOKEN_PATH)

    def _token(self) -> dict[str, Any]:
        token = self.fixed_token or f"ya29.test-{secrets.token_urlsafe(24)}"
        with self._lock:
            self.tokens.append(token)
        return {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                with server._lock:
                    server.requests.append(
                        (self.path, {k.lower(): v for k, v in self.headers.items()})
                    )
                if server.mode == "absent":
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.headers.get("Metadata-Flavor") != "Google":
                    self._answer(403, "text/html", b"Missing required header: Metadata-Flavor")
                    return
                if path == "/":
                    self._answer(200, "application/text", b"computeMetadata/\n")
                elif path in (INFO_PATH, EMAIL_PATH):
                    info = {
                        "aliases": ["default"],
                        "email": EMAIL,
                        "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
                    }
                    self.send_json(200, info)
                elif path == "/computeMetadata/v1/project/project-id":
                    self._answer(200, "application/text", PROJECT.encode())
                elif path == TOKEN_PATH:
                    self._token_answer()
                else:
                    self._answer(404, "text/html", b"Not Found")

            def _token_answer(self) -> None:
                mode = server.mode
                if mode == "hang":
                    server._release.wait(HANG_LIMIT)
                elif mode == "denied":
                    self._answer(403, "text/plain", DENIED.encode())
                elif mode == "huge":
                    self._answer(200, "application/json", b" " * HUGE)
                elif mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", server.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self.send_json(200, server._token())

            def send_body(
                self, status: int, content_type: str, data: bytes, headers: Mapping[str, str] = {}
            ) -> None:
                date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
                with contextlib.suppress(OSError):  # a client that gives up on a large answer
                    super().send_body(
                        status,
                        content_type,
                        data,
                        {"Metadata-Flavor": "Google", "Date": date, **headers},
                    )

            def _answer(self, status: int, kind: str, data: bytes) -> None:
                self.send_body(status, kind, data)

        return Handler


EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


class StsServer:
    """Google STS's token exchange on 127.0.0.1 for ``audience``; ``stop()`` it."""

    def __init__(self, audience: str) -> None:
        self.audience = audience
        self.exchanges: list[dict[str, str]] = []
        self.tokens: list[str] = []
        self._lock = threading.Lock()
        server = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                with server._lock:
                    server.exchanges.append(form)
                if urlsplit(self.path).path != "/v1/token":
                    self.send_json(404, {"error": "not_found"})
                elif form.get("grant_type") != EXCHANGE or form.get("audience") != server.audience:
                    refusal = {"error": "invalid_grant", "error_description": "bad audience"}
                    self.send_json(400, refusal)
                else:
                    token = f"ya29.federated-{secrets.token_urlsafe(24)}"
                    with server._lock:
                        server.tokens.append(token)
                    self.send_json(
                        200,
                        {
                            "access_token": token,
                            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                            "token_type": "Bearer",
                            "expires_in": 3600,
                        },
                    )

        self._server = LocalServer(Handler).start()
        self.url = f"{self._server.url}/v1/token"

    def stop(self) -> None:
        self._server.stop()
