"""A Docker registry token server for tests (the protocol distribution's ``auth: token`` uses).

``GET /token?service=S&scope=repository:NAME:pull,push`` with Basic credentials answers
``{"token", "access_token", "expires_in", "issued_at"}``. The token is a JWT signed with
ES256 by a self-signed P-256 certificate; the header carries that certificate in ``x5c``,
and ``TokenServer.cert`` is the bundle the registry's ``rootcertbundle`` points at.

Known users get the actions they ask for; anonymous requests get pull only when
``anonymous_pull`` is set (otherwise an empty grant, which the registry refuses); wrong
credentials get 401. ``served`` counts the tokens served, for cache tests.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import secrets
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tests.support.localhttp import LocalServer, QuietHandler

SERVICE = "trustgate-test-registry"
ISSUER = "trustgate-test-token-issuer"
EXPIRES_IN = 300


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _signing_certificate(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "trustgate test token signer")])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )


def parse_scope(scope: str) -> tuple[str, str, list[str]] | None:
    """``(type, name, actions)`` of ``type:name:actions``; the name may contain ``:``."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name:
        return None
    return kind, name, [a for a in actions.split(",") if a]


class TokenServer:
    """A threaded token server on 127.0.0.1; ``start()`` it, ``stop()`` it."""

    def __init__(
        self,
        tmp: Path,
        users: Mapping[str, str],
        *,
        anonymous_pull: bool = False,
        service: str = SERVICE,
        issuer: str = ISSUER,
        expires_in: int = EXPIRES_IN,
    ) -> None:
        self.users = dict(users)
        self.anonymous_pull = anonymous_pull
        self.service = service
        self.issuer = issuer
        self.expires_in = expires_in
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._cert = _signing_certificate(self._key)
        tmp.mkdir(parents=True, exist_ok=True)
        self.cert = tmp / "token-signer.pem"
        self.cert.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self._lock = threading.Lock()
        self._served = 0
        self.log: list[dict[str, Any]] = []
        self._server = LocalServer(self._handler())
        self.host = self._server.host
        self.url = self._server.url
        self.realm = f"{self.url}/token"

    @property
    def served(self) -> int:
        """How many tokens were served so far."""
        with self._lock:
            return self._served

    def start(self) -> TokenServer:
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving; safe on a server that was never started."""
        self._server.stop()

    def token(self, subject: str, access: list[dict[str, Any]], audience: str) -> str:
        """A signed JWT for ``subject`` granting ``access`` to ``audience``."""
        now = int(time.time())
        header = {
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64.b64encode(self._cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": audience,
            "exp": now + self.expires_in,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    def _authenticate(self, header: str | None) -> str | bool | None:
        """The user name, None when anonymous, False when the credentials are wrong."""
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        if user in self.users and secrets.compare_digest(self.users[user], password):
            return user
        return False

    def _grant(self, user: str | None, scopes: list[str]) -> list[dict[str, Any]]:
        access = []
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None or parsed[0] != "repository":
                continue
            kind, name, actions = parsed
            allowed = set(actions) if user else ({"pull"} if self.anonymous_pull else set())
            granted = [a for a in actions if a in allowed]
            if granted:
                access.append({"type": kind, "name": name, "actions": granted})
        return access

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path != "/token":
                    self.send_json(404, {"error": "not found"})
                    return
                query = parse_qs(url.query)
                user = server._authenticate(self.headers.get("Authorization"))
                if user is False:
                    self.send_json(401, {"errors": [{"code": "UNAUTHORIZED"}]})
                    return
                assert user is None or isinstance(user, str)
                service = query.get("service", [server.service])[0]
                scopes = [s for value in query.get("scope", []) for s in value.split(" ")]
                access = server._grant(user, scopes)
                token = server.token(user or "", access, service)
                with server._lock:
                    server._served += 1
                    server.log.append({"user": user, "scopes": scopes, "access": access})
                self.send_json(
                    200,
                    {
                        "token": token,
                        "access_token": token,
                        "expires_in": server.expires_in,
                        "issued_at": datetime.datetime.now(datetime.UTC).isoformat(),
                    },
                )

        return Handler
