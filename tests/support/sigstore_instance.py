"""A private Sigstore instance in Python: a Fulcio-style CA, a CT log, a Rekor-style log.

Everything sigstore-python checks is produced for real, with ``cryptography``:

- ``FulcioCA`` issues short-lived code-signing certificates with an empty
  subject, a critical SAN (e-mail or URI), the OIDC issuer in both of Fulcio's
  extensions (1.3.6.1.4.1.57264.1.8 as a DER UTF8String and the legacy .1.1 as
  raw bytes), optional GitHub workflow extensions and an embedded SCT. As at
  Fulcio, the CT log signs the precertificate: the TBS certificate without the
  poison and SCT extensions, with the issuing CA's key hash (RFC 6962 3.2).
- ``CTLog`` signs SCTs with its own key.
- ``TransparencyLog`` appends hashedrekord and dsse entries, returns a signed
  entry timestamp (SET), an RFC 6962 inclusion proof and a signed checkpoint.
- ``SigstoreInstance.trusted_root()`` describes the three in a
  ``trusted_root.json`` that sigstore-python's ``TrustedRoot`` loads.

The helpers at the end produce cosign's two storage formats: legacy ``.sig``
layer annotations and Sigstore bundles (v0.3, v0.2, v0.1).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import struct
from dataclasses import dataclass, field
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
SCT_LIST = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
#: GitHub workflow extensions Fulcio writes as raw bytes (legacy OIDs .2 to .6).
LEGACY_EXTENSIONS = {
    "githubWorkflowTrigger": "1.3.6.1.4.1.57264.1.2",
    "githubWorkflowSha": "1.3.6.1.4.1.57264.1.3",
    "githubWorkflowName": "1.3.6.1.4.1.57264.1.4",
    "githubWorkflowRepository": "1.3.6.1.4.1.57264.1.5",
    "githubWorkflowRef": "1.3.6.1.4.1.57264.1.6",
}
#: Extensions Fulcio writes as DER UTF8Strings.
DER_EXTENSIONS = {
    "buildSignerURI": "1.3.6.1.4.1.57264.1.9",
    "runnerEnvironment": "1.3.6.1.4.1.57264.1.11",
    "sourceRepositoryURI": "1.3.6.1.4.1.57264.1.12",
    "sourceRepositoryDigest": "1.3.6.1.4.1.57264.1.13",
    "sourceRepositoryRef": "1.3.6.1.4.1.57264.1.14",
}
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
BUNDLE_V02 = "application/vnd.dev.sigstore.bundle+json;version=0.2"
BUNDLE_V01 = "application/vnd.dev.sigstore.bundle+json;version=0.1"
TRUSTED_ROOT_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"


def now() -> dt.datetime:
    """The current time, UTC, to the second (certificates and logs keep seconds)."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(key: ec.EllipticCurvePublicKey) -> bytes:
    """RFC 6962 key ID: SHA-256 of the DER SubjectPublicKeyInfo."""
    return hashlib.sha256(_spki(key)).digest()


def _der_utf8(text: str) -> bytes:
    data = text.encode()
    return bytes([0x0C]) + _der_length(len(data)) + data


def _der_octets(data: bytes) -> bytes:
    return bytes([0x04]) + _der_length(len(data)) + data


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


def _public_key_entry(key: ec.EllipticCurvePublicKey, start: dt.datetime) -> dict[str, Any]:
    return {
        "rawBytes": _b64(_spki(key)),
        "keyDetails": "PKIX_ECDSA_P256_SHA_256",
        "validFor": {"start": start.strftime("%Y-%m-%dT%H:%M:%SZ")},
    }


class CTLog:
    """A certificate transparency log that signs SCTs for precertificates."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.log_id = key_id(self.key.public_key())

    def sct(self, tbs: bytes, issuer_key_hash: bytes, when: dt.datetime) -> bytes:
        """One TLS-encoded SignedCertificateTimestamp (v1, precert entry) over ``tbs``."""
        timestamp = int(when.timestamp() * 1000)
        signed = (
            struct.pack("!BBQH", 0, 0, timestamp, 1)
            + issuer_key_hash
            + len(tbs).to_bytes(3, "big")
            + tbs
            + struct.pack("!H", 0)
        )
        signature = self.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        # version, log id, timestamp, no extensions, digitally-signed (sha256=4, ecdsa=3)
        return (
            struct.pack("!B", 0)
            + self.log_id
            + struct.pack("!QH", timestamp, 0)
            + struct.pack("!BBH", 4, 3, len(signature))
            + signature
        )


@dataclass
class Identity:
    """Who a certificate is for: a SAN (e-mail or URI) and the OIDC issuer."""

    subject: str
    issuer: str
    extensions: dict[str, str] = field(default_factory=dict)


class FulcioCA:
    """A root and an intermediate CA issuing Fulcio-style leaf certificates."""

    def __init__(self, ct_log: CTLog, name: str = "trustgate-test") -> None:
        self.ct_log = ct_log
        start = now() - dt.timedelta(days=1)
        end = start + dt.timedelta(days=3650)
        self.root_key = ec.generate_private_key(ec.SECP384R1())
        self.root = self._ca(
            f"{name}-root", self.root_key, self.root_key.public_key(), None, start, end
        )
        self.key = ec.generate_private_key(ec.SECP384R1())
        self.intermediate = self._ca(
            f"{name}-intermediate", self.key, self.key.public_key(), self.root, start, end
        )
        self.start = start

    def _ca(
        self,
        common_name: str,
        key: ec.EllipticCurvePrivateKey,
        public: ec.EllipticCurvePublicKey,
        parent: x509.Certificate | None,
        start: dt.datetime,
        end: dt.datetime,
    ) -> x509.Certificate:
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "trustgate.test"),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject if parent is None else parent.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        )
        signer = key if parent is None else self.root_key
        if parent is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.root_key.public_key()),
                critical=False,
            )
        return builder.sign(signer, hashes.SHA384())

    def issue(
        self,
        identity: Identity,
        *,
        key: ec.EllipticCurvePrivateKey | None = None,
        not_before: dt.datetime | None = None,
        lifetime: dt.timedelta = dt.timedelta(minutes=10),
        sct: str = "valid",
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A leaf certificate for ``identity`` and its private key.

        ``sct`` is ``valid``, ``missing`` (no SCT extension) or ``forged`` (an
        SCT signed by a CT log key the trusted root does not list).
        """
        key = key or ec.generate_private_key(ec.SECP256R1())
        cert = self.issue_for(
            identity, key.public_key(), not_before=not_before, lifetime=lifetime, sct=sct
        )
        return cert, key

    def issue_for(
        self,
        identity: Identity,
        public: ec.EllipticCurvePublicKey,
        *,
        not_before: dt.datetime | None = None,
        lifetime: dt.timedelta = dt.timedelta(minutes=10),
        sct: str = "valid",
    ) -> x509.Certificate:
        """A leaf certificate for ``identity`` and ``public``, as Fulcio issues for a CSR."""
        start = not_before or now() - dt.timedelta(seconds=30)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.intermediate.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + lifetime)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
            .add_extension(x509.SubjectAlternativeName([_san(identity.subject)]), critical=True)
            .add_extension(
                x509.UnrecognizedExtension(ISSUER_V1, identity.issuer.encode()), critical=False
            )
            .add_extension(
                x509.UnrecognizedExtension(ISSUER_V2, _der_utf8(identity.issuer)), critical=False
            )
        )
        for name, value in sorted(identity.extensions.items()):
            if name in LEGACY_EXTENSIONS:
                oid, data = ObjectIdentifier(LEGACY_EXTENSIONS[name]), value.encode()
            else:
                oid, data = ObjectIdentifier(DER_EXTENSIONS[name]), _der_utf8(value)
            builder = builder.add_extension(x509.UnrecognizedExtension(oid, data), False)
        if sct == "missing":
            return builder.sign(self.key, hashes.SHA384())
        # The precertificate: what the CT log sees, with the poison extension.
        precert = builder.add_extension(x509.PrecertPoison(), critical=True).sign(
            self.key, hashes.SHA384()
        )
        # Its TBS without the poison is the final certificate's TBS without the SCT list.
        tbs = builder.sign(self.key, hashes.SHA384()).tbs_certificate_bytes
        assert precert.extensions.get_extension_for_class(x509.PrecertPoison)
        log = self.ct_log if sct == "valid" else CTLog()
        issuer_hash = key_id(self.key.public_key())
        timestamp = log.sct(tbs, issuer_hash, start)
        sct_list = struct.pack("!H", len(timestamp) + 2) + struct.pack("!H", len(timestamp))
        extension = x509.UnrecognizedExtension(SCT_LIST, _der_octets(sct_list + timestamp))
        cert = builder.add_extension(extension, critical=False).sign(self.key, hashes.SHA384())
        assert cert.tbs_precertificate_bytes == tbs
        return cert


def _san(subject: str) -> x509.GeneralName:
    if "@" in subject and "://" not in subject:
        return x509.RFC822Name(subject)
    return x509.UniformResourceIdentifier(subject)


def _leaf_hash(body: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + body).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(size: int) -> int:
    """The largest power of two smaller than ``size`` (RFC 6962 2.1)."""
    k = 1
    while k * 2 < size:
        k *= 2
    return k


def merkle_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 Merkle tree hash of leaf hashes."""
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return _node_hash(merkle_root(leaves[:k]), merkle_root(leaves[k:]))


def inclusion_path(index: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 audit path of leaf ``index``, from the leaf up."""
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*inclusion_path(index, leaves[:k]), merkle_root(leaves[k:])]
    return [*inclusion_path(index - k, leaves[k:]), merkle_root(leaves[:k])]


@dataclass(frozen=True)
class LogEntry:
    """One integrated entry, with everything a verifier needs about it."""

    body: bytes
    kind: str
    index: int
    integrated_time: int
    log_id: bytes
    set_signature: bytes
    tree_size: int
    root_hash: bytes
    hashes: tuple[bytes, ...]
    checkpoint: str


class TransparencyLog:
    """A Rekor-like append-only log with signed entry timestamps and checkpoints."""

    def __init__(self, origin: str = "rekor.trustgate.test - 1") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.log_id = key_id(self.key.public_key())
        self.origin = origin
        self.leaves: list[bytes] = [_leaf_hash(b"genesis")]

    def append(self, body: dict[str, Any], when: dt.datetime | None = None) -> LogEntry:
        """Integrate ``body`` (a hashedrekord or dsse entry); sign its SET and a checkpoint."""
        raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        index = len(self.leaves)
        self.leaves.append(_leaf_hash(raw))
        integrated = int((when or now()).timestamp())
        promise = rfc8785.dumps(
            {
                "body": _b64(raw),
                "integratedTime": integrated,
                "logID": self.log_id.hex(),
                "logIndex": index,
            }
        )
        set_signature = self.key.sign(promise, ec.ECDSA(hashes.SHA256()))
        root = merkle_root(self.leaves)
        note = f"{self.origin}\n{len(self.leaves)}\n{_b64(root)}\n"
        signature = self.key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        name = self.origin.split(" ")[0]
        checkpoint = f"{note}\n\u2014 {name} {_b64(self.log_id[:4] + signature)}\n"
        return LogEntry(
            body=raw,
            kind=body["kind"],
            index=index,
            integrated_time=integrated,
            log_id=self.log_id,
            set_signature=set_signature,
            tree_size=len(self.leaves),
            root_hash=root,
            hashes=tuple(inclusion_path(index, self.leaves)),
            checkpoint=checkpoint,
        )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def hashedrekord_body(cert: x509.Certificate, signature: bytes, digest_hex: str) -> dict[str, Any]:
    """The hashedrekord v0.0.1 entry Rekor stores for a signature over a SHA-256 digest."""
    return hashedrekord_key_body(_cert_pem(cert), signature, digest_hex)


def hashedrekord_key_body(pem: bytes, signature: bytes, digest_hex: str) -> dict[str, Any]:
    """A hashedrekord v0.0.1 entry whose verifier is ``pem``: a certificate or a PUBLIC KEY."""
    return {
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": digest_hex}},
            "signature": {
                "content": _b64(signature),
                "publicKey": {"content": _b64(pem)},
            },
        },
    }


def dsse_body(cert: x509.Certificate, envelope: dict[str, Any]) -> dict[str, Any]:
    """The dsse v0.0.1 entry Rekor stores for a DSSE envelope."""
    return dsse_key_body(_cert_pem(cert), envelope)


def dsse_key_body(pem: bytes, envelope: dict[str, Any]) -> dict[str, Any]:
    """A dsse v0.0.1 entry whose verifier is ``pem``: a certificate or a PUBLIC KEY."""
    payload = base64.b64decode(envelope["payload"])
    canonical = json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode()
    return {
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {
            "envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(canonical).hexdigest()},
            "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
            "signatures": [
                {"signature": s["sig"], "verifier": _b64(pem)} for s in envelope["signatures"]
            ],
        },
    }


def hashedrekord_v2_body(
    public_der: bytes, signature: bytes, digest: bytes, *, certificate: bool = False
) -> dict[str, Any]:
    """The hashedrekord v0.0.2 entry Rekor v2 stores for a signature over ``digest``
    (SHA-256 of the artifact, or of the DSSE pre-authentication encoding), made with
    the key ``public_der`` (a DER public key, or with ``certificate`` a DER certificate)."""
    return {
        "apiVersion": "0.0.2",
        "kind": "hashedrekord",
        "spec": {
            "hashedRekordV002": {
                "data": {"algorithm": "SHA2_256", "digest": _b64(digest)},
                "signature": {
                    "content": _b64(signature),
                    "verifier": {
                        "x509Certificate" if certificate else "publicKey": {
                            "rawBytes": _b64(public_der)
                        },
                        "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    },
                },
            }
        },
    }


def dsse_v2_body(public_der: bytes, envelope: dict[str, Any]) -> dict[str, Any]:
    """The dsse v0.0.2 entry Rekor v2 stores for a DSSE envelope signed with a key."""
    payload = base64.b64decode(envelope["payload"])
    verifier = {
        "publicKey": {"rawBytes": _b64(public_der)},
        "keyDetails": "PKIX_ECDSA_P256_SHA_256",
    }
    return {
        "apiVersion": "0.0.2",
        "kind": "dsse",
        "spec": {
            "dsseV002": {
                "payloadHash": {
                    "algorithm": "SHA2_256",
                    "digest": _b64(hashlib.sha256(payload).digest()),
                },
                "signatures": [
                    {"content": s["sig"], "verifier": verifier} for s in envelope["signatures"]
                ],
            }
        },
    }


def intoto_body(cert: x509.Certificate, envelope: bytes) -> dict[str, Any]:
    """The intoto v0.0.2 entry Rekor stores for ``envelope`` (the JSON text cosign uploads)."""
    document = json.loads(envelope)
    payload_hex = hashlib.sha256(base64.b64decode(document["payload"])).hexdigest()
    return {
        "apiVersion": "0.0.2",
        "kind": "intoto",
        "spec": {
            "content": {
                "envelope": {
                    "payloadType": document["payloadType"],
                    "signatures": [
                        {"publicKey": _b64(_cert_pem(cert)), "sig": _b64(s["sig"].encode())}
                        for s in document["signatures"]
                    ],
                },
                "hash": {"algorithm": "sha256", "value": hashlib.sha256(envelope).hexdigest()},
                "payloadHash": {"algorithm": "sha256", "value": payload_hex},
            }
        },
    }


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


class SigstoreInstance:
    """One private Sigstore: CA, CT log and transparency log, and signing helpers."""

    def __init__(self, name: str = "trustgate-test") -> None:
        self.ct_log = CTLog()
        self.ca = FulcioCA(self.ct_log, name)
        self.tlog = TransparencyLog()
        #: A timestamp authority (``tests/support/tsa.py``) the trusted root lists, when set.
        self.tsa: Any = None
        #: When set, the trusted root retires the Fulcio CA then (its ``validFor.end``).
        self.ca_end: dt.datetime | None = None

    def trusted_root(self) -> dict[str, Any]:
        """The ``trusted_root.json`` document describing this instance."""
        start = self.ca.start
        der = serialization.Encoding.DER
        valid = {"start": start.strftime("%Y-%m-%dT%H:%M:%SZ")}
        if self.ca_end is not None:
            valid["end"] = self.ca_end.strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "mediaType": TRUSTED_ROOT_TYPE,
            "tlogs": [
                {
                    "baseUrl": "https://rekor.trustgate.test",
                    "hashAlgorithm": "SHA2_256",
                    "publicKey": _public_key_entry(self.tlog.key.public_key(), start),
                    "logId": {"keyId": _b64(self.tlog.log_id)},
                }
            ],
            "certificateAuthorities": [
                {
                    "subject": {"organization": "trustgate.test", "commonName": "fulcio"},
                    "uri": "https://fulcio.trustgate.test",
                    "certChain": {
                        "certificates": [
                            {"rawBytes": _b64(self.ca.intermediate.public_bytes(der))},
                            {"rawBytes": _b64(self.ca.root.public_bytes(der))},
                        ]
                    },
                    "validFor": valid,
                }
            ],
            "ctlogs": [
                {
                    "baseUrl": "https://ctfe.trustgate.test",
                    "hashAlgorithm": "SHA2_256",
                    "publicKey": _public_key_entry(self.ct_log.key.public_key(), start),
                    "logId": {"keyId": _b64(self.ct_log.log_id)},
                }
            ],
            "timestampAuthorities": [] if self.tsa is None else [self.tsa.trusted_root_entry()],
        }

    def trusted_root_json(self) -> str:
        """``trusted_root()`` as JSON text."""
        return json.dumps(self.trusted_root(), indent=2)

    # Signing ---------------------------------------------------------------

    def sign_blob(
        self,
        identity: Identity,
        payload: bytes,
        *,
        cert: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
        logged_digest: str | None = None,
        when: dt.datetime | None = None,
        **issue: Any,
    ) -> tuple[x509.Certificate, bytes, LogEntry]:
        """Sign ``payload`` with a fresh certificate and log a hashedrekord entry.

        ``logged_digest`` (hex) logs another artifact's digest instead, for
        negative tests; ``when`` sets the log's integration time.
        """
        certificate, key = cert or self.ca.issue(identity, **issue)
        signature = key.sign(payload, ec.ECDSA(hashes.SHA256()))
        digest = logged_digest or hashlib.sha256(payload).hexdigest()
        entry = self.tlog.append(hashedrekord_body(certificate, signature, digest), when)
        return certificate, signature, entry

    def log_key_signature(
        self,
        public_pem: bytes,
        signature: bytes,
        payload: bytes,
        *,
        logged_digest: str | None = None,
    ) -> LogEntry:
        """Log a key signature over ``payload`` as ``cosign sign --key`` uploads it.

        ``logged_digest`` (hex) logs another artifact's digest instead.
        """
        digest = logged_digest or hashlib.sha256(payload).hexdigest()
        return self.tlog.append(hashedrekord_key_body(public_pem, signature, digest))

    def sign_digest(
        self, identity: Identity, digest_hex: str, **issue: Any
    ) -> tuple[x509.Certificate, bytes, LogEntry]:
        """Sign a SHA-256 digest itself (prehashed), as a message-signature bundle does."""
        from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

        certificate, key = self.ca.issue(identity, **issue)
        signature = key.sign(bytes.fromhex(digest_hex), ec.ECDSA(Prehashed(hashes.SHA256())))
        entry = self.tlog.append(hashedrekord_body(certificate, signature, digest_hex))
        return certificate, signature, entry

    def sign_dsse(
        self, identity: Identity, statement: dict[str, Any], **issue: Any
    ) -> tuple[x509.Certificate, dict[str, Any], LogEntry]:
        """A DSSE envelope over ``statement`` (in-toto), signed and logged as a dsse entry."""
        certificate, key = self.ca.issue(identity, **issue)
        payload_type = "application/vnd.in-toto+json"
        payload = json.dumps(statement, separators=(",", ":")).encode()
        signature = key.sign(pae(payload_type, payload), ec.ECDSA(hashes.SHA256()))
        envelope = {
            "payload": _b64(payload),
            "payloadType": payload_type,
            "signatures": [{"sig": _b64(signature), "keyid": ""}],
        }
        entry = self.tlog.append(dsse_body(certificate, envelope))
        return certificate, envelope, entry

    def attest_legacy(
        self,
        identity: Identity,
        statement: dict[str, Any],
        *,
        kind: str = "intoto",
        logged_statement: dict[str, Any] | None = None,
        **issue: Any,
    ) -> tuple[bytes, dict[str, str]]:
        """A keyless ``.att`` layer as ``cosign attest`` writes it: (envelope text, annotations).

        The envelope is logged as an ``intoto`` 0.0.2 entry (or ``kind="dsse"``,
        0.0.1). ``logged_statement`` logs an envelope of that statement, signed
        with the same key, instead of this one (negative tests).
        """
        certificate, key = self.ca.issue(identity, **issue)

        def envelope_of(about: dict[str, Any]) -> bytes:
            payload_type = "application/vnd.in-toto+json"
            payload = json.dumps(about, separators=(",", ":")).encode()
            signature = key.sign(pae(payload_type, payload), ec.ECDSA(hashes.SHA256()))
            document = {
                "payloadType": payload_type,
                "payload": _b64(payload),
                "signatures": [{"keyid": "", "sig": _b64(signature)}],
            }
            return json.dumps(document, separators=(",", ":")).encode()

        envelope = envelope_of(statement)
        logged = envelope if logged_statement is None else envelope_of(logged_statement)
        if kind == "intoto":
            body = intoto_body(certificate, logged)
        else:
            body = dsse_body(certificate, json.loads(logged))
        entry = self.tlog.append(body)
        chain = _cert_pem(self.ca.intermediate) + _cert_pem(self.ca.root)
        annotations = {
            "dev.sigstore.cosign/certificate": _cert_pem(certificate).decode(),
            "dev.sigstore.cosign/chain": chain.decode(),
            "dev.sigstore.cosign/bundle": rekor_bundle(entry),
            "predicateType": str(statement.get("predicateType")),
        }
        return envelope, annotations


# Storage formats -------------------------------------------------------------


def cosign_annotations(
    instance: SigstoreInstance, cert: x509.Certificate, signature: bytes, entry: LogEntry
) -> dict[str, str]:
    """The annotations of a legacy keyless ``.sig`` layer, as cosign writes them."""
    chain = _cert_pem(instance.ca.intermediate) + _cert_pem(instance.ca.root)
    return {
        "dev.cosignproject.cosign/signature": _b64(signature),
        "dev.sigstore.cosign/certificate": _cert_pem(cert).decode(),
        "dev.sigstore.cosign/chain": chain.decode(),
        "dev.sigstore.cosign/bundle": rekor_bundle(entry),
    }


def rekor_bundle(entry: LogEntry) -> str:
    """The ``dev.sigstore.cosign/bundle`` annotation cosign writes for a logged signature."""
    document = {
        "SignedEntryTimestamp": _b64(entry.set_signature),
        "Payload": {
            "body": _b64(entry.body),
            "integratedTime": entry.integrated_time,
            "logIndex": entry.index,
            "logID": entry.log_id.hex(),
        },
    }
    return json.dumps(document, separators=(",", ":"))


def tlog_entry(entry: LogEntry, *, promise: bool = True, version: str = "0.0.1") -> dict[str, Any]:
    """A bundle's ``tlogEntries`` item for ``entry``: with its inclusion proof and checkpoint,
    and (``promise``) its signed entry timestamp and integration time, which Rekor v2
    entries (``version`` 0.0.2) do not have."""
    document: dict[str, Any] = {
        "logIndex": str(entry.index),
        "logId": {"keyId": _b64(entry.log_id)},
        "kindVersion": {"kind": entry.kind, "version": version},
        "inclusionProof": {
            "logIndex": str(entry.index),
            "rootHash": _b64(entry.root_hash),
            "treeSize": str(entry.tree_size),
            "hashes": [_b64(h) for h in entry.hashes],
            "checkpoint": {"envelope": entry.checkpoint},
        },
        "canonicalizedBody": _b64(entry.body),
    }
    if promise:
        document["integratedTime"] = str(entry.integrated_time)
        document["inclusionPromise"] = {"signedEntryTimestamp": _b64(entry.set_signature)}
    return document


def bundle(
    cert: x509.Certificate,
    entry: LogEntry,
    *,
    signature: bytes | None = None,
    digest_hex: str | None = None,
    envelope: dict[str, Any] | None = None,
    media_type: str = BUNDLE_V03,
    chain: list[x509.Certificate] | None = None,
) -> dict[str, Any]:
    """A Sigstore bundle of a message signature (over ``digest_hex``) or of ``envelope``."""
    der = serialization.Encoding.DER
    material: dict[str, Any] = {"tlogEntries": [tlog_entry(entry)]}
    if media_type == BUNDLE_V03:
        material["certificate"] = {"rawBytes": _b64(cert.public_bytes(der))}
    else:
        certs = [cert, *(chain or [])]
        material["x509CertificateChain"] = {
            "certificates": [{"rawBytes": _b64(c.public_bytes(der))} for c in certs]
        }
    document: dict[str, Any] = {"mediaType": media_type, "verificationMaterial": material}
    if envelope is not None:
        document["dsseEnvelope"] = envelope
    else:
        assert signature is not None and digest_hex is not None
        document["messageSignature"] = {
            "messageDigest": {"algorithm": "SHA2_256", "digest": _b64(bytes.fromhex(digest_hex))},
            "signature": _b64(signature),
        }
    return document
