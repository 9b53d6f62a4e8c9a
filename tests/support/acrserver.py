"""An ACR-style login server for tests, in front of a real docker-registry.

``AcrFront`` serves over TLS on 127.0.0.1, as ``<name>.azurecr.io`` does:

- ``POST /oauth2/exchange`` (``grant_type=access_token``, ``service``,
  ``tenant``, ``access_token``): an Entra ID access token that the given
  ``accepts`` vouches for (``EntraId.accepts``), for ACR's audience and this
  registry, becomes ``{"refresh_token": ...}``, a JWT-shaped token with
  ``aud`` = this host and ``exp`` = now + ``refresh_lifetime``;
- ``GET /oauth2/token`` with Basic ``00000000-0000-0000-0000-000000000000``
  and a live refresh token it issued (the Docker token flow), or ``POST``
  with ``grant_type=refresh_token``: ``{"access_token": ...}``, a registry
  JWT that the docker-registry behind it accepts, granting pull;
- ``/v2/...``: proxied to that docker-registry, whose challenges name
  ``https://<this host>/oauth2/token`` as their realm, as ACR's do.

``mode`` turns it hostile for a test: ``redirect`` (the exchange answers 307
to ``redirect_to``), ``echo`` (401 whose message quotes the token it was
given), ``opaque`` (a refresh token that is no JWT), ``flood`` (an answer of
``FLOOD_BYTES``). ``push`` stores images through the registry's own port as a
pusher the token endpoint knows. Every request is recorded (``seen``).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.entraid import (
    ACR_AUDIENCE,
    Handler,
    Recording,
    Seen,
    json_answer,
    jwt,
)
from tests.support.tokenserver import TokenServer, parse_scope
from webhook.core import certs
from webhook.sandbox.registry import Registry, start_registry

ACR_USERNAME = "00000000-0000-0000-0000-000000000000"
FLOOD_BYTES = 2 * 1024 * 1024
_HOP_BY_HOP = {"connection", "transfer-encoding", "keep-alive"}


@dataclass(frozen=True)
class _Realm:
    """What docker-registry needs of its token service: this front's /oauth2/token."""

    realm: str
    service: str
    issuer: str
    cert: Path

    def stop(self) -> None:
        """Nothing to stop: the front stops itself."""


class AcrFront:
    """One ACR-style registry; ``host`` is its login server (``127.0.0.1:PORT``)."""

    def __init__(
        self,
        tmp: Path,
        tls: certs.CertPaths,
        *,
        accepts: Callable[[str], dict[str, Any] | None],
        refresh_lifetime: int = 3 * 3600,
        registry: bool = True,
    ) -> None:
        self.accepts = accepts
        self.refresh_lifetime = refresh_lifetime
        self.ca = tls.ca
        self.mode = "ok"
        self.redirect_to = ""
        self.refresh_tokens: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._pusher = ("pusher", secrets.token_urlsafe(12))
        handler = type("AcrHandler", (Handler,), {"answer": lambda _h, seen: self._answer(seen)})
        self._server = Recording(handler, tls)
        self.host = self._server.host
        self.url = self._server.url
        self._signer = TokenServer(tmp / "signer", {}, service=self.host, issuer="test-acr")
        self.registry: Registry | None = None
        if registry:
            realm = _Realm(f"{self.url}/oauth2/token", self.host, "test-acr", self._signer.cert)
            self.registry = start_registry(
                tmp / "registry", token_server=realm, token_user=self._pusher
            )

    @property
    def exchanges(self) -> list[Seen]:
        return [s for s in self.seen() if urlsplit(s.path).path == "/oauth2/exchange"]

    def seen(self) -> list[Seen]:
        return self._server.seen()

    @contextlib.contextmanager
    def pushing(self) -> Iterator[Registry]:
        """The backing registry, to push to as the pusher (its token realm trusts our CA)."""
        assert self.registry is not None
        previous = os.environ.get("REQUESTS_CA_BUNDLE")
        os.environ["REQUESTS_CA_BUNDLE"] = str(self.ca)
        try:
            yield self.registry
        finally:
            if previous is None:
                os.environ.pop("REQUESTS_CA_BUNDLE", None)
            else:
                os.environ["REQUESTS_CA_BUNDLE"] = previous

    def stop(self) -> None:
        if self.registry is not None:
            self.registry.stop()
        self._signer.stop()
        self._server.stop()

    def _answer(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        path = urlsplit(seen.path).path
        if path == "/oauth2/exchange" and seen.method == "POST":
            return self._exchange(_form(seen))
        if path == "/oauth2/token":
            return self._token(seen)
        if path.startswith("/v2/") and self.registry is not None:
            return self._proxy(seen)
        return json_answer(404, {"errors": [{"code": "NOT_FOUND", "message": "not found"}]})

    def _exchange(self, form: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        access_token = form.get("access_token", "")
        if self.mode == "redirect":
            return 307, {"Location": self.redirect_to}, b""
        if self.mode == "echo":
            message = f"access token {access_token} is not valid for {self.host}"
            return json_answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": message}]})
        if self.mode == "flood":
            return 200, {"Content-Type": "application/json"}, b" " * FLOOD_BYTES
        claims = self.accepts(access_token)
        problems = [
            form.get("grant_type") != "access_token",
            form.get("service") != self.host,
            claims is None or claims.get("aud") != ACR_AUDIENCE,
            claims is not None and form.get("tenant", claims["tid"]) != claims["tid"],
        ]
        if any(problems):
            return _unauthorized("the access token is not valid for this registry")
        assert claims is not None
        if self.mode == "opaque":
            refresh = secrets.token_urlsafe(48)
            expires = time.time() + 3 * 3600
        else:
            now = int(time.time())
            expires = now + self.refresh_lifetime
            refresh = jwt(
                {
                    "jti": secrets.token_hex(8),
                    "sub": claims["appid"],
                    "nbf": now,
                    "exp": expires,
                    "iat": now,
                    "iss": "Azure Container Registry",
                    "aud": self.host,
                    "version": "1.0",
                    "grant_type": "refresh_token",
                    "tenant": claims["tid"],
                    "permissions": {"actions": ["read"]},
                }
            )
        with self._lock:
            self.refresh_tokens[refresh] = {"exp": expires, "appid": claims["appid"]}
        return json_answer(200, {"refresh_token": refresh})

    def _token(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        query = parse_qs(urlsplit(seen.path).query)
        if seen.method == "POST":
            form = _form(seen)
            who = self._refresh_holder(form.get("refresh_token", ""))
            if form.get("grant_type") != "refresh_token":
                who = None
            service, scopes = form.get("service", ""), form.get("scope", "").split()
        else:
            who = self._basic(seen.headers.get("Authorization", ""))
            service = query.get("service", [""])[0]
            scopes = [s for value in query.get("scope", []) for s in value.split()]
        if who is None or service != self.host:
            return _unauthorized("authentication required")
        actions = {"pull", "push"} if who == self._pusher[0] else {"pull"}
        access = []
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is not None and parsed[0] == "repository":
                granted = [a for a in parsed[2] if a in actions]
                access.append({"type": "repository", "name": parsed[1], "actions": granted})
        token = self._signer.token(who, access, self.host)
        if who == self._pusher[0]:  # the sandbox's pusher reads Docker's "token" field
            return json_answer(200, {"token": token, "access_token": token})
        return json_answer(200, {"access_token": token})

    def _basic(self, header: str) -> str | None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return None
        if (user, password) == self._pusher:
            return user
        return self._refresh_holder(password) if user == ACR_USERNAME else None

    def _refresh_holder(self, refresh: str) -> str | None:
        with self._lock:
            held = self.refresh_tokens.get(refresh)
        if held is None or held["exp"] <= time.time():
            return None
        return str(held["appid"])

    def _proxy(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        assert self.registry is not None
        connection = http.client.HTTPConnection(self.registry.host, timeout=10)
        try:
            headers = {
                k: v for k, v in seen.headers.items() if k.lower() not in {"host", *_HOP_BY_HOP}
            }
            connection.request(seen.method, seen.path, body=seen.body or None, headers=headers)
            response = connection.getresponse()
            body = response.read()
            kept = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}
            kept["Content-Length"] = (
                str(len(body)) if seen.method != "HEAD" else kept.get("Content-Length", "0")
            )
            return response.status, kept, body
        finally:
            connection.close()


def _form(seen: Seen) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(seen.body.decode("utf-8", "replace")).items()}


def _unauthorized(message: str) -> tuple[int, dict[str, str], bytes]:
    status, headers, body = json_answer(
        401, {"errors": [{"code": "UNAUTHORIZED", "message": message}]}
    )
    return status, {**headers, "WWW-Authenticate": 'Basic realm="Azure Container Registry"'}, body


def acr_env(entra_authority: str, tenant: str, client_id: str, token_file: Path) -> dict[str, str]:
    """The environment the workload identity webhook gives a pod, pointed at the stand-ins."""
    return {
        "AZURE_AUTHORITY_HOST": entra_authority,
        "AZURE_TENANT_ID": tenant,
        "AZURE_CLIENT_ID": client_id,
        "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
    }
