"""Fulcio and Rekor on 127.0.0.1, answering the API sigstore-python 4.5.1 signs with.

Built on ``sigstore_instance``'s CA, CT log and transparency log:

- ``POST /api/v2/signingCert`` (Fulcio): the ``Authorization: Bearer`` OIDC token
  must be signed by the test ``OidcIssuer`` for audience ``sigstore``; the CSR
  (base64 of its PEM) must be self-signed; the answer is
  ``{"signedCertificateEmbeddedSct": {"chain": {"certificates": [leaf, CA...]}}}``
  with a certificate for the token's ``email`` (else ``sub``) and issuer, SCT
  embedded.
- ``POST /api/v1/log/entries`` (Rekor v1, the API production's signing config
  selects: ``majorApiVersion`` 1): the proposed ``hashedrekord`` 0.0.1 entry is
  appended and answered as ``{uuid: {body, integratedTime, logID, logIndex,
  verification: {inclusionProof, signedEntryTimestamp}}}``.

``ClientTrustConfig`` documents pointing at them are built by
``trust_config()``. ``behaviour`` makes either server hang, fail or redirect,
for hostile tests; ``requests`` records what each was sent.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.localhttp import LocalServer, QuietHandler
from tests.support.sigstore_instance import FulcioCA, Identity, SigstoreInstance

AUDIENCE = "sigstore"
OIDC_ISSUER = "https://oidc.trustgate.test"
CLIENT_TRUST_CONFIG = "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json"
SIGNING_CONFIG = "application/vnd.dev.sigstore.signingconfig.v0.2+json"


class OidcIssuer:
    """Signs OIDC identity tokens (ES256 JWTs) the test Fulcio accepts."""

    def __init__(self, issuer: str = OIDC_ISSUER) -> None:
        self.issuer = issuer
        self.key = ec.generate_private_key(ec.SECP256R1())

    def token(
        self,
        email: str | None = "policy-bot@trustgate.test",
        *,
        subject: str = "policy-bot",
        audience: str = AUDIENCE,
        lifetime: int = 300,
        issuer: str | None = None,
    ) -> str:
        """A token for ``email`` (or ``subject`` when None), valid ``lifetime`` seconds."""
        moment = int(time.time())
        claims: dict[str, Any] = {
            "iss": issuer or self.issuer,
            "sub": subject,
            "aud": audience,
            "iat": moment,
            "nbf": moment - 5,
            "exp": moment + lifetime,
            "jti": secrets.token_hex(8),
        }
        if email is not None:
            claims["email"] = email
            claims["email_verified"] = True
        return jwt.encode(claims, self.key, algorithm="ES256")

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of ``token`` when this issuer signed it for Sigstore; raises otherwise."""
        public = self.key.public_key()
        claims: dict[str, Any] = jwt.decode(
            token, public, algorithms=["ES256"], audience=AUDIENCE, issuer=self.issuer
        )
        return claims


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class _Server:
    """A threaded HTTP server on 127.0.0.1 whose POSTs go to ``answer``."""

    def __init__(self) -> None:
        #: "ok", "hang" (read, never answer), "error" (HTTP 500 quoting the request's
        #: Authorization header), "garbage" (200 with JSON of another shape), or
        #: "redirect" (307 to ``redirect_to``).
        self.behaviour = "ok"
        self.redirect_to = ""
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = LocalServer(self._handler()).start()
        self.url = self._server.url

    def stop(self) -> None:
        self._release.set()
        self._server.stop()

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        raise NotImplementedError

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(min(length, 1 << 20))
                headers = dict(self.headers.items())
                with server._lock:
                    server.requests.append({"path": self.path, "headers": headers})
                if server.behaviour == "hang":
                    server._release.wait(120)
                    return
                if server.behaviour == "redirect":
                    self.send_response(307)
                    self.send_header("Location", server.redirect_to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if server.behaviour == "error":
                    quoted = headers.get("Authorization", "")
                    status, document = 500, {"code": 500, "message": f"refused {quoted}"}
                elif server.behaviour == "garbage":
                    status, document = 201, {"unexpected": ["shape"]}
                else:
                    try:
                        status, document = server.answer(self.path, headers, body)
                    except Exception as exc:  # the test sees a 400 and the reason
                        status, document = 400, {"code": 400, "message": str(exc)}
                self.send_json(status, document)

        return Handler


class FulcioServer(_Server):
    """Fulcio's ``/api/v2/signingCert``, issuing from ``ca`` (switchable, for rotations)."""

    def __init__(self, ca: FulcioCA, oidc: OidcIssuer) -> None:
        self.ca = ca
        self.oidc = oidc
        super().__init__()

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        if path != "/api/v2/signingCert":
            return 404, {"code": 404, "message": "not found"}
        scheme, _, token = headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer":
            return 401, {"code": 401, "message": "no bearer token"}
        try:
            claims = self.oidc.verify(token)
        except jwt.PyJWTError as exc:
            return 401, {"code": 401, "message": f"invalid token: {exc}"}
        request = json.loads(body)
        csr = x509.load_pem_x509_csr(base64.b64decode(request["certificateSigningRequest"]))
        if not csr.is_signature_valid:
            return 400, {"code": 400, "message": "the CSR's signature is invalid"}
        public = csr.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        identity = Identity(subject=claims.get("email") or claims["sub"], issuer=claims["iss"])
        cert = self.ca.issue_for(identity, public)
        chain = [_pem(cert), _pem(self.ca.intermediate), _pem(self.ca.root)]
        return 201, {"signedCertificateEmbeddedSct": {"chain": {"certificates": chain}}}


class RekorServer(_Server):
    """Rekor v1's ``/api/v1/log/entries`` over ``instance.tlog``."""

    def __init__(self, instance: SigstoreInstance) -> None:
        self.instance = instance
        #: The integration time written into entries; None: now.
        self.when: dt.datetime | None = None
        super().__init__()

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        if path != "/api/v1/log/entries":
            return 404, {"code": 404, "message": "not found"}
        proposed = json.loads(body)
        if proposed.get("kind") != "hashedrekord" or proposed.get("apiVersion") != "0.0.1":
            return 400, {"code": 400, "message": "only hashedrekord 0.0.1 entries"}
        entry = self.instance.tlog.append(proposed, self.when)
        document = {
            "body": base64.b64encode(entry.body).decode(),
            "integratedTime": entry.integrated_time,
            "logID": entry.log_id.hex(),
            "logIndex": entry.index,
            "verification": {
                "inclusionProof": {
                    "checkpoint": entry.checkpoint,
                    "hashes": [h.hex() for h in entry.hashes],
                    "logIndex": entry.index,
                    "rootHash": entry.root_hash.hex(),
                    "treeSize": entry.tree_size,
                },
                "signedEntryTimestamp": base64.b64encode(entry.set_signature).decode(),
            },
        }
        return 201, {uuid.uuid4().hex: document}


def _time(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def ca_entry(
    ca: FulcioCA, start: dt.datetime | None = None, end: dt.datetime | None = None
) -> dict[str, Any]:
    """A ``certificateAuthorities`` item of a trusted root for ``ca``, trusted ``start``-``end``."""
    der = serialization.Encoding.DER
    valid: dict[str, str] = {"start": _time(start or ca.start)}
    if end is not None:
        valid["end"] = _time(end)
    return {
        "subject": {"organization": "trustgate.test", "commonName": "fulcio"},
        "uri": "https://fulcio.trustgate.test",
        "certChain": {
            "certificates": [
                {"rawBytes": base64.b64encode(ca.intermediate.public_bytes(der)).decode()},
                {"rawBytes": base64.b64encode(ca.root.public_bytes(der)).decode()},
            ]
        },
        "validFor": valid,
    }


def trusted_root(
    instance: SigstoreInstance, authorities: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """``instance``'s trusted root, its Fulcio CAs replaced by ``authorities`` when given."""
    document = instance.trusted_root()
    if authorities is not None:
        document["certificateAuthorities"] = authorities
    return document


class SigstoreServices:
    """A running private Sigstore: OIDC issuer, Fulcio and Rekor, and their trust config."""

    def __init__(self) -> None:
        self.instance = SigstoreInstance()
        self.oidc = OidcIssuer()
        self.fulcio = FulcioServer(self.instance.ca, self.oidc)
        self.rekor = RekorServer(self.instance)

    def stop(self) -> None:
        self.fulcio.stop()
        self.rekor.stop()

    def trust_config(
        self,
        *,
        fulcio: str | None = None,
        rekor: str | None = None,
        authorities: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """The ClientTrustConfig (signing config and trusted root) of this instance."""
        start = _time(self.instance.ca.start)

        def service(url: str) -> dict[str, Any]:
            return {
                "url": url,
                "majorApiVersion": 1,
                "validFor": {"start": start},
                "operator": "trustgate.test",
            }

        signing = {
            "mediaType": SIGNING_CONFIG,
            "caUrls": [service(fulcio or self.fulcio.url)],
            "oidcUrls": [service(OIDC_ISSUER)],
            "rekorTlogUrls": [service(rekor or self.rekor.url)],
            "tsaUrls": [],
            "rekorTlogConfig": {"selector": "ANY"},
            "tsaConfig": {"selector": "ANY"},
        }
        return {
            "mediaType": CLIENT_TRUST_CONFIG,
            "trustedRoot": trusted_root(self.instance, authorities),
            "signingConfig": signing,
        }


@contextmanager
def sigstore_services() -> Iterator[SigstoreServices]:
    """A private Sigstore on 127.0.0.1 for the block."""
    services = SigstoreServices()
    try:
        yield services
    finally:
        services.stop()
