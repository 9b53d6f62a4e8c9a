"""An OCSP responder and CRL server on 127.0.0.1 for test CAs, with hostile modes.

``chain`` makes a code signing chain (tests/support/notation_revocation_pki.py)
whose certificates name the ``RevocationServer``'s URLs: ``/ocsp/<ca>`` (AIA)
and ``/crl/<ca>.crl`` (CRL distribution point). The server answers real DER
built by cryptography: an OCSP response signed by the issuing CA (or its
delegated responder) for whatever CertID it is asked about, ``good`` unless
``Authority.revoke`` said otherwise; a CRL of the CA listing what ``revoke``
said, with an optional delta CRL.

``ocsp_modes[ca]`` and ``crl_modes[ca]`` make a route hostile (see
``OCSP_MODES`` and ``CRL_MODES``). ``hits`` counts requests per route
(``ocsp/<ca>``, ``crl/<ca>``, ``delta/<ca>``). A hanging or dripping answer
ends when the client leaves or the server stops.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support.localhttp import LocalServer, QuietHandler
from tests.support.notation_revocation_pki import Authority, Issued, now, resigned

#: What an OCSP route can be made to do (default: answer truthfully).
OCSP_MODES = (
    "hang",  # read the request, answer nothing
    "drip",  # declare 4 KiB, send a byte every 0.2 s
    "flood",  # declare 16 MiB
    "flood-chunked",  # stream without a length, forever
    "other",  # answer about another serial
    "forged",  # name the CA as responder, sign with another key
    "stranger",  # sign with a responder certificate another CA issued
    "delegate",  # sign with the CA's delegated responder (OCSP signing EKU, nocheck)
    "delegate-checked",  # ... without nocheck: its own revocation must be checked by CRL
    "delegate-no-eku",  # ... a CA-issued certificate without the OCSP signing EKU
    "stale",  # nextUpdate passed
    "future",  # thisUpdate tomorrow
    "no-next",  # no nextUpdate
    "unknown",  # certStatus unknown
    "try-later",  # an unsuccessful response
    "garbage",  # 200 with bytes that are no OCSP response
    "error",  # HTTP 500
    "redirect-away",  # 302 to another host
    "redirect-here",  # 302 to the same route on the same host (followed)
    "slow",  # answer truthfully after SLOW seconds
)
#: What a CRL route can be made to do (default: the CA's current CRL).
CRL_MODES = (
    "hang",
    "drip",
    "flood",
    "forged",
    "stale",
    "future",
    "critical",
    "delta",  # the base CRL names a delta CRL, served at /delta/<ca>.crl
    "delta-missing",  # the base CRL names a delta CRL that is not there
    "garbage",
    "slow",
)
SLOW = 0.3

_PAUSE = 0.2
_LIMIT = 60.0


def chain(server: RevocationServer, *, kind: str = "ec") -> tuple[Issued, Authority, Authority]:
    """A signing certificate, its intermediate CA and the root, all served by ``server``.

    The root is named ``<prefix>-root`` and the intermediate ``<prefix>-ca`` with a fresh
    prefix, so that tests never share revocation state.
    """
    prefix = base64.b32encode(os.urandom(5)).decode().lower()
    root = server.add(Authority.root(f"{prefix}-root", kind=kind))
    intermediate = server.add(
        root.sub(
            f"{prefix}-ca",
            ocsp_url=server.ocsp_url(root.name),
            crl_url=server.crl_url(root.name),
            kind=kind,
        )
    )
    leaf = intermediate.issue(
        f"{prefix} signer",
        ocsp_url=server.ocsp_url(intermediate.name),
        crl_url=server.crl_url(intermediate.name),
        kind=kind,
    )
    return leaf, intermediate, root


class RevocationServer:
    """An OCSP responder and a CRL server for registered authorities, on 127.0.0.1."""

    def __init__(self) -> None:
        self.authorities: dict[str, Authority] = {}
        self.ocsp_modes: dict[str, str] = {}
        self.crl_modes: dict[str, str] = {}
        self.hits: Counter[str] = Counter()
        #: Every path asked, in order.
        self.paths: list[str] = []
        self.stranger = Authority.root("stranger")
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = LocalServer(_handler(self), _Server)
        self.host = self._server.host
        self.url = self._server.url

    def start(self) -> RevocationServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.stop()

    def add(self, authority: Authority) -> Authority:
        """Serve ``authority``'s OCSP and CRL; gives it delegated responders."""
        self.authorities[authority.name] = authority
        nocheck = [(x509.OCSPNoCheck(), False)]
        signing = ExtendedKeyUsageOID.OCSP_SIGNING
        authority.responder = authority.issue(f"{authority.name} ocsp", eku=signing, extra=nocheck)
        authority.checked_responder = authority.issue(
            f"{authority.name} checked ocsp", eku=signing, crl_url=self.crl_url(authority.name)
        )
        authority.plain = authority.issue(f"{authority.name} not ocsp", extra=nocheck)
        return authority

    def ocsp_url(self, name: str) -> str:
        return f"{self.url}/ocsp/{name}"

    def crl_url(self, name: str) -> str:
        return f"{self.url}/crl/{name}.crl"

    def delta_url(self, name: str) -> str:
        return f"{self.url}/delta/{name}.crl"

    def stopping(self) -> bool:
        return self._stopping.is_set()

    # -- answers ---------------------------------------------------------------------------

    def ocsp_answer(self, authority: Authority, request: ocsp.OCSPRequest, mode: str) -> bytes:
        if mode == "try-later":
            return ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.TRY_LATER
            ).public_bytes(Encoding.DER)
        serial = request.serial_number + (1 if mode == "other" else 0)
        this_update = now() - dt.timedelta(minutes=5)
        next_update: dt.datetime | None = this_update + dt.timedelta(days=1)
        if mode == "stale":
            this_update, next_update = this_update - dt.timedelta(days=2), now() - dt.timedelta(1)
        elif mode == "future":
            this_update = now() + dt.timedelta(days=1)
        elif mode == "no-next":
            next_update = None
        status, at, reason = ocsp.OCSPCertStatus.GOOD, None, None
        invalid_since = None
        if serial in authority.revoked:
            status = ocsp.OCSPCertStatus.REVOKED
            at, reason, invalid_since = authority.revoked[serial]
        if mode == "unknown":
            status, at, reason, invalid_since = ocsp.OCSPCertStatus.UNKNOWN, None, None, None
        builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
            request.issuer_name_hash,
            request.issuer_key_hash,
            serial,
            request.hash_algorithm,
            status,
            this_update,
            next_update,
            at,
            reason,
        )
        signer = self._ocsp_signer(authority, mode)
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, signer.cert)
        if signer.cert is not authority.cert:
            builder = builder.certificates([signer.cert])
        der = builder.sign(signer.key, hashes.SHA256()).public_bytes(Encoding.DER)
        if invalid_since is not None or mode == "forged":
            # cryptography signs only with the responder's own key: a forgery is re-signed.
            key = self.stranger.key if mode == "forged" else signer.key
            der = resigned(der, key, invalid_since=invalid_since)
        return der

    def _ocsp_signer(self, authority: Authority, mode: str) -> Issued:
        if mode == "stranger":
            return self.stranger.issue("stranger ocsp", eku=ExtendedKeyUsageOID.OCSP_SIGNING)
        chosen = {
            "delegate": authority.responder,
            "delegate-checked": authority.checked_responder,
            "delegate-no-eku": authority.plain,
        }.get(mode)
        return chosen or Issued(authority.cert, authority.key)

    def crl_answer(self, authority: Authority, mode: str, *, delta: bool = False) -> bytes:
        last = now() - dt.timedelta(minutes=5)
        following = last + dt.timedelta(days=1)
        if mode == "stale":
            last, following = last - dt.timedelta(days=2), now() - dt.timedelta(days=1)
        elif mode == "future":
            last = now() + dt.timedelta(days=1)
            following = last + dt.timedelta(days=1)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(authority.cert.subject)
            .last_update(last)
            .next_update(following)
            .add_extension(x509.CRLNumber(8 if delta else 7), critical=False)
        )
        entries = authority.delta if delta else authority.revoked
        for serial, (at, reason, invalid_since) in entries.items():
            entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(at)
            if reason is not None:
                entry = entry.add_extension(x509.CRLReason(reason), critical=False)
            if invalid_since is not None:
                entry = entry.add_extension(x509.InvalidityDate(invalid_since), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        if delta:
            builder = builder.add_extension(x509.DeltaCRLIndicator(7), critical=True)
        elif mode in ("delta", "delta-missing"):
            where = self.delta_url(authority.name if mode == "delta" else "nobody")
            point = x509.DistributionPoint(
                [x509.UniformResourceIdentifier(where)], None, None, None
            )
            builder = builder.add_extension(x509.FreshestCRL([point]), critical=False)
        if mode == "critical":
            unknown = x509.UnrecognizedExtension(
                x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"
            )
            builder = builder.add_extension(unknown, critical=True)
        key = self.stranger.key if mode == "forged" else authority.key
        return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client that left (a bounded one does, mid-answer): not the server's error
        super().handle_error(request, client_address)


def _handler(server: RevocationServer) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            parts = path.strip("/").split("/")
            with server._lock:
                server.paths.append(self.path)
            if len(parts) < 2 or parts[0] not in ("ocsp", "crl", "delta"):
                self._send(404, b"")
                return
            kind, name = parts[0], parts[1].removesuffix(".crl")
            authority = server.authorities.get(name)
            if authority is None:
                self._send(404, b"")
                return
            with server._lock:
                server.hits[f"{kind}/{name}"] += 1
            modes = server.ocsp_modes if kind == "ocsp" else server.crl_modes
            mode = modes.get(name, "")
            if self._hostile(mode, kind, name):
                return
            if kind == "ocsp":
                try:
                    raw = base64.b64decode(unquote("/".join(parts[2:])))
                    request = ocsp.load_der_ocsp_request(raw)
                except ValueError:
                    self._send(400, b"")
                    return
                body = server.ocsp_answer(authority, request, mode)
                self._send(200, body, "application/ocsp-response")
            else:
                body = server.crl_answer(authority, mode, delta=kind == "delta")
                self._send(200, body, "application/pkix-crl")

        def _hostile(self, mode: str, kind: str, name: str) -> bool:
            if mode == "slow":
                time.sleep(SLOW)
                return False
            if mode == "hang":
                self._wait(_LIMIT)
            elif mode == "drip":
                self._drip(b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n", b"0")
            elif mode == "flood":
                self._flood(16 * 1024 * 1024, declared=True)
            elif mode == "flood-chunked":
                self._flood(64 * 1024 * 1024, declared=False)
            elif mode == "garbage":
                self._send(200, b"these are not the bytes you are looking for")
            elif mode == "error":
                self._send(500, b"oops")
            elif mode == "redirect-away":
                self._redirect(f"http://localhost:{server.host.split(':')[1]}{self.path}")
            elif mode == "redirect-here" and "moved=1" not in self.path:
                self._redirect(f"{self.path}?moved=1")
            else:
                return False
            return True

        def _send(self, status: int, body: bytes, kind: str = "text/plain") -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                self.close_connection = True  # the client left: what a bounded client does

        def _redirect(self, location: str) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _wait(self, seconds: float) -> None:
            end = time.monotonic() + seconds
            self.connection.settimeout(_PAUSE)
            while time.monotonic() < end and not server.stopping():
                try:
                    if not self.connection.recv(1):
                        return  # the client left
                except TimeoutError:
                    continue
                except OSError:
                    return
            self.close_connection = True

        def _drip(self, head: bytes, byte: bytes) -> None:
            self.close_connection = True
            try:
                self.wfile.write(head)
                end = time.monotonic() + _LIMIT
                while time.monotonic() < end and not server.stopping():
                    self.wfile.write(byte)
                    self.wfile.flush()
                    time.sleep(_PAUSE)
            except OSError:
                return

        def _flood(self, size: int, *, declared: bool) -> None:
            self.close_connection = True
            chunk = b"\x30" * 65536
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/ocsp-response")
                if declared:
                    self.send_header("Content-Length", str(size))
                else:
                    self.send_header("Connection", "close")
                self.end_headers()
                sent = 0
                while sent < size and not server.stopping():
                    self.wfile.write(chunk)
                    sent += len(chunk)
            except OSError:
                return

    return Handler
