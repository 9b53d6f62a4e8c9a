"""A test signer that writes cosign's formats byte for byte.

Keys, simple signing payloads, ``.sig`` manifests with their blobs, DSSE
envelopes, key-signed Sigstore bundles as ``cosign sign --key`` 3 writes them,
and cosign's encrypted private key files (scrypt + NaCl secretbox
around a PKCS#8 key, as ``cosign generate-key-pair`` writes them).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeAlias

import nacl.exceptions
import nacl.secret
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from webhook.signatures.cosign import (
    IN_TOTO_PAYLOAD_TYPE,
    SIGNATURE_ANNOTATION,
    SIMPLESIGNING_MEDIA_TYPE,
    pae,
)

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
KeyKind = Literal["ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "rsa", "ed25519"]
KEY_KINDS: tuple[KeyKind, ...] = ("ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "rsa", "ed25519")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
SIGSTORE_KEY_LABEL = "ENCRYPTED SIGSTORE PRIVATE KEY"
COSIGN_KEY_LABEL = "ENCRYPTED COSIGN PRIVATE KEY"
# What cosign generate-key-pair uses; tests pass a smaller N for speed.
DEFAULT_SCRYPT_N = 32768

_CURVES: dict[str, ec.EllipticCurve] = {
    "ecdsa-p256": ec.SECP256R1(),
    "ecdsa-p384": ec.SECP384R1(),
    "ecdsa-p521": ec.SECP521R1(),
}
_CURVE_HASHES: dict[str, hashes.HashAlgorithm] = {
    "secp256r1": hashes.SHA256(),
    "secp384r1": hashes.SHA384(),
    "secp521r1": hashes.SHA512(),
}
_PEM = re.compile(r"-----BEGIN ([A-Z ]+)-----\s*(.*?)\s*-----END \1-----", re.S)


def generate_key(kind: KeyKind = "ecdsa-p256") -> PrivateKey:
    """A fresh private key of ``kind`` (RSA keys are 2048 bits)."""
    if kind in _CURVES:
        return ec.generate_private_key(_CURVES[kind])
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key kind {kind!r}")


def public_pem(key: PrivateKey) -> str:
    """The PEM ``PUBLIC KEY`` of ``key``, as ``cosign.pub`` holds it."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def sign(key: PrivateKey, data: bytes) -> bytes:
    """``key``'s signature over ``data``: ECDSA DER with the curve's hash, RSA PKCS#1 v1.5
    SHA-256, or pure Ed25519."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(_CURVE_HASHES[key.curve.name]))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data)


def sign_b64(key: PrivateKey, data: bytes) -> str:
    """``sign`` in the base64 form the signature annotation holds."""
    return base64.b64encode(sign(key, data)).decode()


def go_json(value: Any) -> bytes:
    """``value`` as Go's encoding/json.Marshal writes it: compact, HTML characters escaped.

    Key order is the dict's order (a Go struct's field order); pass sorted
    dicts where Go would marshal a map.
    """
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


def simple_signing_payload(
    repository: str,
    digest: str,
    optional: Mapping[str, Any] | None = None,
    *,
    kind: str = "cosign container image signature",
) -> bytes:
    """The simple signing payload ``cosign sign`` writes for ``repository@digest``."""
    document = {
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest},
            "type": kind,
        },
        "optional": None if optional is None else dict(sorted(optional.items())),
    }
    return go_json(document)


def sha256(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def signature_manifest(
    layers: list[tuple[bytes, str]],
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The ``.sig`` manifest cosign pushes for ``(payload, base64 signature)`` layers.

    Returns the manifest and its blobs (config and payloads) by digest.
    """
    blobs: dict[str, bytes] = {}
    descriptors = []
    for payload, signature in layers:
        digest = sha256(payload)
        blobs[digest] = payload
        descriptors.append(
            {
                "mediaType": SIMPLESIGNING_MEDIA_TYPE,
                "size": len(payload),
                "digest": digest,
                "annotations": {SIGNATURE_ANNOTATION: signature},
            }
        )
    config = go_json(
        {
            "architecture": "",
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"} for _ in layers],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descriptors]},
            "config": {},
        }
    )
    config_digest = sha256(config)
    blobs[config_digest] = config
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": len(config), "digest": config_digest},
        "layers": descriptors,
    }
    return manifest, blobs


def in_toto_statement(
    digest: str, name: str, predicate_type: str, predicate: Any
) -> dict[str, Any]:
    """An in-toto v1 statement about the image ``name@digest``."""
    algorithm, _, value = digest.partition(":")
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": name, "digest": {algorithm: value}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    }


def dsse_envelope(
    statement: Mapping[str, Any],
    key: PrivateKey,
    *,
    payload_type: str = IN_TOTO_PAYLOAD_TYPE,
) -> dict[str, Any]:
    """A DSSE envelope of ``statement`` signed by ``key``, as cosign attest writes it."""
    payload = go_json(statement)
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": "", "sig": sign_b64(key, pae(payload_type, payload))}],
    }


def encrypt_cosign_key(
    key: PrivateKey,
    password: bytes,
    *,
    n: int = DEFAULT_SCRYPT_N,
    label: str = SIGSTORE_KEY_LABEL,
) -> bytes:
    """``key`` as the encrypted PEM ``cosign generate-key-pair`` writes."""
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    salt = os.urandom(32)
    nonce = os.urandom(nacl.secret.SecretBox.NONCE_SIZE)
    secret = Scrypt(salt=salt, length=32, n=n, r=8, p=1).derive(password)
    sealed = nacl.secret.SecretBox(secret).encrypt(der, nonce).ciphertext
    document = {
        "kdf": {
            "name": "scrypt",
            "params": {"N": n, "r": 8, "p": 1},
            "salt": base64.b64encode(salt).decode(),
        },
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(sealed).decode(),
    }
    body = base64.b64encode(go_json(document)).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----", ""]).encode()


def load_encrypted_cosign_key(pem: bytes, password: bytes) -> PrivateKey:
    """Decrypt a cosign ``ENCRYPTED SIGSTORE/COSIGN PRIVATE KEY`` PEM.

    Uses the scrypt parameters the file names. Raises ValueError for another
    format or a wrong password.
    """
    match = _PEM.search(pem.decode("ascii"))
    if match is None or match.group(1) not in (SIGSTORE_KEY_LABEL, COSIGN_KEY_LABEL):
        raise ValueError("not an encrypted cosign private key")
    document = json.loads(base64.b64decode("".join(match.group(2).split())))
    kdf, cipher = document["kdf"], document["cipher"]
    if kdf["name"] != "scrypt" or cipher["name"] != "nacl/secretbox":
        raise ValueError(f"unsupported kdf {kdf['name']!r} or cipher {cipher['name']!r}")
    params = kdf["params"]
    secret = Scrypt(
        salt=base64.b64decode(kdf["salt"]),
        length=32,
        n=params["N"],
        r=params["r"],
        p=params["p"],
    ).derive(password)
    try:
        der = nacl.secret.SecretBox(secret).decrypt(
            base64.b64decode(document["ciphertext"]), base64.b64decode(cipher["nonce"])
        )
    except nacl.exceptions.CryptoError:
        raise ValueError("wrong password or corrupted key") from None
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise ValueError(f"unsupported private key type {type(key).__name__}")
    return key


#: The predicate type of the in-toto statement ``cosign sign`` (3) signs in a DSSE bundle.
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"


def sign_statement(
    digest: str, name: str, annotations: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The statement ``cosign sign`` 3 signs for ``name@digest``; ``-a`` annotations go on
    the subject."""
    statement = in_toto_statement(digest, name, COSIGN_SIGN_PREDICATE, {})
    if annotations:
        statement["subject"][0]["annotations"] = dict(annotations)
    return statement


def sign_digest(key: PrivateKey, digest: str) -> bytes:
    """``key``'s signature over the artifact whose SHA-256 is ``digest`` (``sha256:<hex>``),
    prehashed, as a message-signature bundle holds it (ECDSA or RSA keys)."""
    prehashed = Prehashed(hashes.SHA256())
    raw = bytes.fromhex(digest.partition(":")[2])
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(raw, ec.ECDSA(prehashed))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(raw, padding.PKCS1v15(), prehashed)
    raise ValueError("pure Ed25519 cannot sign a prehashed digest")


def key_bundle(
    key: PrivateKey,
    *,
    digest: str | None = None,
    signature: bytes | None = None,
    envelope: Mapping[str, Any] | None = None,
    tlog_entries: Sequence[Mapping[str, Any]] = (),
    timestamps: Sequence[bytes] = (),
) -> dict[str, Any]:
    """A v0.3 Sigstore bundle signed with ``key``, as ``cosign sign --key`` 3 writes it.

    It holds ``envelope`` (a DSSE envelope, see ``dsse_envelope``) or a message
    signature over ``digest`` (``signature``, default ``sign_digest``), the
    key's hint, the given log entries and RFC 3161 timestamp responses.
    """
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    material: dict[str, Any] = {
        "publicKey": {"hint": base64.b64encode(hashlib.sha256(der).digest()).decode()},
        "tlogEntries": [dict(entry) for entry in tlog_entries],
    }
    if timestamps:
        material["timestampVerificationData"] = {
            "rfc3161Timestamps": [
                {"signedTimestamp": base64.b64encode(stamp).decode()} for stamp in timestamps
            ]
        }
    document: dict[str, Any] = {"mediaType": BUNDLE_V03, "verificationMaterial": material}
    if envelope is not None:
        document["dsseEnvelope"] = dict(envelope)
        return document
    assert digest is not None
    document["messageSignature"] = {
        "messageDigest": {
            "algorithm": "SHA2_256",
            "digest": base64.b64encode(bytes.fromhex(digest.partition(":")[2])).decode(),
        },
        "signature": base64.b64encode(signature or sign_digest(key, digest)).decode(),
    }
    return document
