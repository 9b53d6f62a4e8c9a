"""A test signer for Notary Project (Notation) signatures, in JWS and COSE envelopes.

It writes envelopes as notation-core-go does (signature-envelope-jws.md and
signature-envelope-cose.md): the payload is the target descriptor's compact
JSON; the JWS is the flattened JSON serialization; the COSE message is a
COSE_Sign1_Tagged whose protected header wraps the signed attributes, times
as tag-1 epoch date/times. ``signing_chain`` makes a root CA, an intermediate CA
and a code-signing leaf as the specification's certificate requirements ask
(basicConstraints and keyUsage critical, extendedKeyUsage codeSigning).

Every step can be overridden so that hostile tests build the envelope a forger
would: another algorithm in the header, crit naming anything, a PKCS#1 v1.5
signature under a PSS header, protected attributes moved to the unprotected
header, raw protected bytes. (A minimal chain lives here; trust tests get
theirs, with a TSA, from tests/support/notation_pki.py.)
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

JWS = "application/jose+json"
COSE = "application/cose"
PAYLOAD_TYPE = "application/vnd.cncf.notary.payload.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SIGNING_TIME = dt.datetime(2025, 6, 1, 12, 0, 0, tzinfo=dt.UTC)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
#: Key kinds the specification allows, by the algorithm each signs with.
KEY_KINDS = {
    "rsa2048": "PS256",
    "rsa3072": "PS384",
    "rsa4096": "PS512",
    "p256": "ES256",
    "p384": "ES384",
    "p521": "ES512",
}
_CURVES: dict[str, ec.EllipticCurve] = {
    "p192": ec.SECP192R1(),
    "p256": ec.SECP256R1(),
    "p384": ec.SECP384R1(),
    "p521": ec.SECP521R1(),
    "k256": ec.SECP256K1(),
}
_HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
COSE_ALGS = {"PS256": -37, "PS384": -38, "PS512": -39, "ES256": -7, "ES384": -35, "ES512": -36}


@functools.cache
def make_key(kind: str, label: str = "") -> PrivateKey:
    """A key of ``kind`` (``rsa<bits>`` or a curve: p192, p256, p384, p521, k256),
    made once per test session for each ``label``."""
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    return ec.generate_private_key(_CURVES[kind])


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "trustgate tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _certificate(
    subject: str,
    key: PrivateKey,
    issuer: tuple[str, PrivateKey] | None,
    *,
    ca: bool,
    not_before: dt.datetime,
    days: int,
) -> x509.Certificate:
    issuer_name, issuer_key = issuer if issuer else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass(frozen=True)
class SigningChain:
    """A code-signing leaf under an intermediate and a root: ``certificates`` is
    leaf first, as an envelope carries it; ``key`` signs."""

    key: PrivateKey
    certificates: tuple[x509.Certificate, ...]

    @property
    def ders(self) -> list[bytes]:
        """The chain as DER, leaf first."""
        return [certificate.public_bytes(Encoding.DER) for certificate in self.certificates]


@functools.cache
def signing_chain(kind: str = "p256", *, subject: str = "trustgate test signer") -> SigningChain:
    """A chain whose leaf, named ``subject``, has a key of ``kind`` (see make_key), one
    per subject; the root CA has a P-384 key, the intermediate a P-256 key."""
    not_before = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    root_key, intermediate_key = make_key("p384"), make_key("p256")
    root = _certificate(
        "trustgate test root", root_key, None, ca=True, not_before=not_before, days=3650
    )
    intermediate = _certificate(
        "trustgate test intermediate",
        intermediate_key,
        ("trustgate test root", root_key),
        ca=True,
        not_before=not_before,
        days=3650,
    )
    leaf_key = make_key(kind, subject)
    leaf = _certificate(
        subject,
        leaf_key,
        ("trustgate test intermediate", intermediate_key),
        ca=False,
        not_before=not_before,
        days=3650,
    )
    return SigningChain(leaf_key, (leaf, intermediate, root))


def descriptor(
    digest: str,
    size: int,
    media_type: str = OCI_MANIFEST,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An OCI descriptor, as ``targetArtifact``."""
    found: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
    if annotations:
        found["annotations"] = dict(annotations)
    return found


def payload(target: Mapping[str, Any]) -> bytes:
    """The Notation payload of ``target``, compact JSON as notation-go writes it."""
    return json.dumps({"targetArtifact": target}, separators=(",", ":")).encode()


def raw_signature(key: PrivateKey, alg: str, data: bytes, *, pkcs1v15: bool = False) -> bytes:
    """``data`` signed under ``alg`` (PSS with a hash-long salt, or ECDSA as ``r || s``);
    with ``pkcs1v15`` an RSA key signs RSASSA-PKCS1-v1_5 instead, whatever ``alg`` says."""
    digest = _HASHES[alg[2:]]()
    if isinstance(key, rsa.RSAPrivateKey):
        pad: padding.AsymmetricPadding = (
            padding.PKCS1v15()
            if pkcs1v15
            else padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
        )
        return key.sign(data, pad, digest)
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
    width = (key.curve.key_size + 7) // 8
    return r.to_bytes(width, "big") + s.to_bytes(width, "big")


@dataclass
class Attributes:
    """The signed attributes, format-neutral; ``None`` leaves one out."""

    alg: str
    scheme: str = "notary.x509"
    signing_time: dt.datetime | None = SIGNING_TIME
    authentic_signing_time: dt.datetime | None = None
    expiry: dt.datetime | None = None
    content_type: str = PAYLOAD_TYPE
    crit: Sequence[Any] | None = None
    extended: Mapping[str, Any] | None = None

    def critical(self) -> list[Any]:
        """``crit`` as given, else as notation-core-go computes it."""
        if self.crit is not None:
            return list(self.crit)
        found: list[Any] = ["io.cncf.notary.signingScheme"]
        if self.authentic_signing_time is not None:
            found.append("io.cncf.notary.authenticSigningTime")
        if self.expiry is not None:
            found.append("io.cncf.notary.expiry")
        return found


def attributes(chain: SigningChain, **overrides: Any) -> Attributes:
    """The attributes notation would sign ``chain``'s key with, changed by ``overrides``;
    ``scheme="notary.x509.signingAuthority"`` moves the time to authenticSigningTime."""
    leaf_key = chain.certificates[0].public_key()
    alg = _algorithm(leaf_key)
    found = Attributes(alg=alg)
    if overrides.get("scheme") == "notary.x509.signingAuthority":
        found.signing_time, found.authentic_signing_time = None, SIGNING_TIME
    for name, value in overrides.items():
        setattr(found, name, value)
    return found


def _algorithm(key: object) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return {2048: "PS256", 3072: "PS384", 4096: "PS512"}.get(key.key_size, "PS256")
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return {"secp384r1": "ES384", "secp521r1": "ES512"}.get(key.curve.name, "ES256")


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def jws_header(attrs: Attributes) -> dict[str, Any]:
    """The JWS protected header of ``attrs``."""
    header: dict[str, Any] = {
        "alg": attrs.alg,
        "crit": attrs.critical(),
        "cty": attrs.content_type,
        "io.cncf.notary.signingScheme": attrs.scheme,
    }
    for name, moment in (
        ("io.cncf.notary.signingTime", attrs.signing_time),
        ("io.cncf.notary.authenticSigningTime", attrs.authentic_signing_time),
        ("io.cncf.notary.expiry", attrs.expiry),
    ):
        if moment is not None:
            header[name] = _rfc3339(moment)
    header.update(attrs.extended or {})
    return header


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jws(
    chain: SigningChain,
    target: Mapping[str, Any],
    *,
    header: Mapping[str, Any] | None = None,
    unprotected: Mapping[str, Any] | None = None,
    sign: Callable[[bytes], bytes] | None = None,
    timestamp: bytes | None = None,
    **overrides: Any,
) -> bytes:
    """A JWS envelope over ``target``: ``header`` replaces the protected header
    built from ``attributes(chain, **overrides)``; ``unprotected`` entries are
    added to (``None`` values removed from) the unprotected header; ``sign``
    replaces the signing of the signing input."""
    attrs = attributes(chain, **overrides)
    protected = dict(header) if header is not None else jws_header(attrs)
    protected_text = _b64url(json.dumps(protected, separators=(",", ":")).encode())
    payload_text = _b64url(payload(target))
    signing_input = f"{protected_text}.{payload_text}".encode()
    signature = (sign or (lambda data: raw_signature(chain.key, attrs.alg, data)))(signing_input)
    unsigned: dict[str, Any] = {
        "x5c": [base64.b64encode(der).decode() for der in chain.ders],
        "io.cncf.notary.signingAgent": "trustgate-tests/1.0",
    }
    if timestamp is not None:
        unsigned["io.cncf.notary.timestampSignature"] = base64.b64encode(timestamp).decode()
    _merge(unsigned, unprotected)
    envelope = {
        "payload": payload_text,
        "protected": protected_text,
        "header": unsigned,
        "signature": _b64url(signature),
    }
    return json.dumps(envelope).encode()


def cose_header(attrs: Attributes) -> dict[Any, Any]:
    """The COSE protected header map of ``attrs`` (times as tag-1 epoch seconds)."""
    header: dict[Any, Any] = {
        1: COSE_ALGS.get(attrs.alg, attrs.alg),
        2: attrs.critical(),
        3: attrs.content_type,
        "io.cncf.notary.signingScheme": attrs.scheme,
    }
    for name, moment in (
        ("io.cncf.notary.signingTime", attrs.signing_time),
        ("io.cncf.notary.authenticSigningTime", attrs.authentic_signing_time),
        ("io.cncf.notary.expiry", attrs.expiry),
    ):
        if moment is not None:
            header[name] = cbor2.CBORTag(1, int(moment.timestamp()))
    header.update(attrs.extended or {})
    return header


def sign_cose(
    chain: SigningChain,
    target: Mapping[str, Any],
    *,
    header: Mapping[Any, Any] | None = None,
    protected_bytes: bytes | None = None,
    unprotected: Mapping[Any, Any] | None = None,
    sign: Callable[[bytes], bytes] | None = None,
    timestamp: bytes | None = None,
    body: Callable[[bytes, dict[Any, Any], bytes, bytes], Any] | None = None,
    **overrides: Any,
) -> bytes:
    """A COSE_Sign1_Tagged envelope over ``target``. ``header`` replaces the protected
    map, ``protected_bytes`` its encoding (signed as given); ``unprotected`` and
    ``sign`` as for sign_jws; ``body(protected, unprotected, payload, signature)``
    replaces the message's array (to strip or move headers after signing)."""
    attrs = attributes(chain, **overrides)
    protected_map = dict(header) if header is not None else cose_header(attrs)
    protected = protected_bytes if protected_bytes is not None else cbor2.dumps(protected_map)
    content = payload(target)
    to_sign = cbor2.dumps(["Signature1", protected, b"", content])
    signature = (sign or (lambda data: raw_signature(chain.key, attrs.alg, data)))(to_sign)
    unsigned: dict[Any, Any] = {
        33: chain.ders,
        "io.cncf.notary.signingAgent": "trustgate-tests/1.0",
    }
    if timestamp is not None:
        unsigned["io.cncf.notary.timestampSignature"] = timestamp
    _merge(unsigned, unprotected)
    items = (body or (lambda p, u, c, s: [p, u, c, s]))(protected, unsigned, content, signature)
    return cbor2.dumps(cbor2.CBORTag(18, items))


def _merge(target: dict[Any, Any], changes: Mapping[Any, Any] | None) -> None:
    for name, value in (changes or {}).items():
        if value is None:
            target.pop(name, None)
        else:
            target[name] = value


def sign(media_type: str, chain: SigningChain, target: Mapping[str, Any], **kwargs: Any) -> bytes:
    """``sign_jws`` or ``sign_cose`` by media type."""
    return (sign_jws if media_type == JWS else sign_cose)(chain, target, **kwargs)
