"""A local Entra ID for tests: the AAD v2 token endpoint and IMDS, answering their real shapes.

``EntraId`` serves, over TLS on 127.0.0.1 (``authority`` is what
``AZURE_AUTHORITY_HOST`` names):

- ``GET /<tenant>/v2.0/.well-known/openid-configuration``: the tenant's OIDC
  metadata, which msal reads before asking for a token;
- ``POST /<tenant>/oauth2/v2.0/token``: the client credentials grant with a
  federated client assertion (``client_assertion_type`` jwt-bearer), as
  workload identity sends it. Only the configured client ID with the exact
  assertion (the federated token file's content) gets a token; anything else
  gets AADSTS-style errors (``error``, ``error_description``, ``error_codes``).

and, over plain HTTP (``imds``, what ``AZURE_POD_IDENTITY_AUTHORITY_HOST``
names), ``GET /metadata/identity/oauth2/token`` with ``Metadata: true``, the
managed identity endpoint, whose numbers come as strings as IMDS sends them.

Access tokens are JWT-shaped (``aud``, ``tid``, ``appid``, ``exp``); their
signature is random: ``accepts(token)`` is how a relying party here checks
one. Every request is recorded whole (``requests``), for leak tests.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

from webhook.core import certs

ACR_AUDIENCE = "https://containerregistry.azure.net"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass(frozen=True)
class Seen:
    """One request as it arrived: method, path with query, headers, body."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def text(self) -> str:
        """Everything the request carried, decoded (form, query, Basic), to search for a secret."""
        head = "\n".join(f"{k}: {v}" for k, v in self.headers.items())
        for value in self.headers.values():
            scheme, _, encoded = value.partition(" ")
            if scheme.lower() == "basic":
                head += "\n" + base64.b64decode(encoded + "==").decode("utf-8", "replace")
        body = self.body.decode("utf-8", "replace")
        return unquote_plus(f"{self.method} {self.path}\n{head}\n\n{body}")

    def form(self) -> dict[str, str]:
        """The body as a form, one value per field."""
        return {k: v[0] for k, v in parse_qs(self.body.decode("utf-8", "replace")).items()}


def jwt(claims: Mapping[str, Any]) -> str:
    """A JWT-shaped token carrying ``claims``, with a random signature."""

    def part(data: Mapping[str, Any]) -> str:
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signature = base64.urlsafe_b64encode(secrets.token_bytes(64)).rstrip(b"=").decode()
    return f"{part({'typ': 'JWT', 'alg': 'RS256', 'kid': 'test'})}.{part(claims)}.{signature}"


def serving_certificate(tmp: Path) -> certs.CertPaths:
    """One serving certificate for 127.0.0.1, and its CA: every TLS stand-in here shares it."""
    return certs.generate(
        tmp, service="stand-in", namespace="test", extra_sans=["127.0.0.1", "localhost"]
    )


class Recording(ThreadingHTTPServer):
    """A threaded HTTP(S) server on 127.0.0.1 that records every request in ``requests``."""

    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler], tls: certs.CertPaths | None) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.requests: list[Seen] = []
        self.lock = threading.Lock()
        self._context: ssl.SSLContext | None = None
        if tls is not None:
            self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._context.load_cert_chain(tls.cert, tls.key)
        self.host = f"127.0.0.1:{self.server_address[1]}"
        self.url = f"{'https' if tls else 'http'}://{self.host}"
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    def get_request(self) -> tuple[Any, Any]:
        # The TLS handshake happens in the request's own thread, on its first read.
        sock, address = self.socket.accept()
        if self._context is not None:
            sock = self._context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def record(self, seen: Seen) -> None:
        with self.lock:
            self.requests.append(seen)

    def seen(self) -> list[Seen]:
        with self.lock:
            return list(self.requests)

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    """Reads and records a request, then hands it to ``answer`` (set by each stand-in)."""

    server: Recording
    answer: Callable[[Handler, Seen], tuple[int, Mapping[str, str], bytes]]

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = Seen(self.command, self.path, dict(self.headers.items()), body)
        self.server.record(seen)
        status, headers, data = type(self).answer(self, seen)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def json_answer(status: int, body: Mapping[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(body).encode()


class EntraId:
    """The token endpoint of one tenant, for one workload identity client, and IMDS."""

    def __init__(
        self,
        tls: certs.CertPaths,
        *,
        tenant: str,
        client_id: str,
        assertion: str,
        expires_in: int = 3599,
    ) -> None:
        self.tenant = tenant
        self.client_id = client_id
        self.assertion = assertion
        self.expires_in = expires_in
        #: When set, the token endpoint refuses with an error that quotes the assertion.
        self.refuse = False
        self.issued: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._https = Recording(self._handler(self._aad), tls)
        self._http = Recording(self._handler(self._imds), None)
        self.authority = self._https.url
        self.imds = self._http.url

    @property
    def token_requests(self) -> list[Seen]:
        return [s for s in self._https.seen() if s.path.endswith("/oauth2/v2.0/token")]

    @property
    def imds_requests(self) -> list[Seen]:
        return self._http.seen()

    def every_request(self) -> list[Seen]:
        return self._https.seen() + self._http.seen()

    def accepts(self, token: str) -> dict[str, Any] | None:
        """The claims of ``token`` if this Entra ID issued it and it has not expired."""
        with self._lock:
            claims = self.issued.get(token)
        if claims is None or claims["exp"] <= time.time():
            return None
        return claims

    def stop(self) -> None:
        self._https.stop()
        self._http.stop()

    def _handler(
        self, answer: Callable[[Seen], tuple[int, dict[str, str], bytes]]
    ) -> type[Handler]:
        return type("EntraHandler", (Handler,), {"answer": lambda _self, seen: answer(seen)})

    def _issue(self, audience: str, client_id: str) -> str:
        now = int(time.time())
        claims = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{self.tenant}/",
            "tid": self.tenant,
            "appid": client_id,
            "oid": "11111111-2222-3333-4444-555555555555",
            "iat": now,
            "nbf": now,
            "exp": now + self.expires_in,
        }
        token = jwt(claims)
        with self._lock:
            self.issued[token] = claims
        return token

    def _aad(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        path = urlsplit(seen.path).path
        base = f"/{self.tenant}"
        if seen.method == "GET" and path == f"{base}/v2.0/.well-known/openid-configuration":
            issuer = f"{self.authority}{base}/v2.0"
            return json_answer(
                200,
                {
                    "token_endpoint": f"{self.authority}{base}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{self.authority}{base}/oauth2/v2.0/authorize",
                    "issuer": issuer,
                    "jwks_uri": f"{self.authority}{base}/discovery/v2.0/keys",
                    "response_types_supported": ["code", "id_token", "token"],
                    "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                    "tenant_region_scope": "EU",
                },
            )
        if seen.method == "POST" and path == f"{base}/oauth2/v2.0/token":
            return self._token(parse_qs(seen.body.decode()))
        return json_answer(404, {"error": "not_found"})

    def _token(self, form: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        def one(name: str) -> str:
            return form.get(name, [""])[0]

        if self.refuse or one("client_assertion") != self.assertion:
            return _aad_error(
                401,
                "invalid_client",
                f"AADSTS700213: No matching federated identity record found for presented "
                f"assertion {one('client_assertion')}.",
            )
        if one("client_id") != self.client_id:
            return _aad_error(400, "unauthorized_client", "AADSTS700016: Application not found.")
        if one("grant_type") != "client_credentials" or one("client_assertion_type") != (
            ASSERTION_TYPE
        ):
            return _aad_error(400, "invalid_request", "AADSTS900144: malformed request.")
        scope = one("scope").split()
        if f"{ACR_AUDIENCE}/.default" not in scope:
            return _aad_error(400, "invalid_scope", "AADSTS70011: The provided scope is invalid.")
        token = self._issue(ACR_AUDIENCE, self.client_id)
        return json_answer(
            200,
            {
                "token_type": "Bearer",
                "expires_in": self.expires_in,
                "ext_expires_in": self.expires_in,
                "access_token": token,
            },
        )

    def _imds(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        url = urlsplit(seen.path)
        query = parse_qs(url.query)
        if url.path != "/metadata/identity/oauth2/token":
            return json_answer(404, {"error": "not_found"})
        if {k.lower(): v for k, v in seen.headers.items()}.get("metadata") != "true":
            return json_answer(
                400,
                {
                    "error": "invalid_request",
                    "error_description": "Required metadata header not specified",
                },
            )
        resource = query.get("resource", [""])[0]
        client_id = query.get("client_id", [""])[0]
        if client_id != self.client_id:
            return json_answer(
                400, {"error": "invalid_request", "error_description": "Identity not found"}
            )
        if resource != ACR_AUDIENCE:
            return json_answer(
                400,
                {
                    "error": "invalid_resource",
                    "error_description": "AADSTS500011: resource not found",
                },
            )
        token = self._issue(resource, client_id)
        now = int(time.time())
        return json_answer(
            200,
            {
                "access_token": token,
                "client_id": client_id,
                "expires_in": str(self.expires_in),
                "expires_on": str(now + self.expires_in),
                "ext_expires_in": str(self.expires_in),
                "not_before": str(now),
                "resource": resource,
                "token_type": "Bearer",
            },
        )


def _aad_error(status: int, error: str, description: str) -> tuple[int, dict[str, str], bytes]:
    return json_answer(
        status,
        {
            "error": error,
            "error_description": description,
            "error_codes": [int(description[6:12]) if description[6:12].isdigit() else 0],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            "trace_id": "00000000-0000-0000-0000-000000000001",
            "correlation_id": "00000000-0000-0000-0000-000000000002",
        },
    )
