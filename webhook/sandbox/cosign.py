"""Cosign's key-based signature format, written byte for byte.

Keys, simple signing payloads and the ``.sig`` manifest with its blobs that
``cosign sign --key`` pushes beside an image. ``make demo`` signs its images
with these and the tests build every signature form on top of them; the
webhook itself never imports this module.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal, TypeAlias

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from webhook.signatures.cosign import SIGNATURE_ANNOTATION, SIMPLESIGNING_MEDIA_TYPE

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
KeyKind = Literal["ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "rsa", "ed25519"]
KEY_KINDS: tuple[KeyKind, ...] = ("ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "rsa", "ed25519")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"

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
