"""Sign a policy directory's manifest with a key, and check a signed directory.

The signature file, ``DIR/.trustgate/signature.json``, holds the manifest's
exact bytes (as a JSON string) and a signature over them made the way
``cosign sign-blob --key`` makes one: ECDSA with SHA-256 (DER), RSA PKCS#1
v1.5 with SHA-256, or pure Ed25519. ``cosign verify-blob`` can therefore
check the manifest too, once extracted.

Checking needs no network: the signature must verify with one of the
trusted keys, and the directory must hold exactly the files the manifest
names, with the same content.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from webhook.core.errors import PolicyError
from webhook.policy.signing.gate import PolicySignatureError
from webhook.policy.signing.manifest import (
    Manifest,
    build_manifest,
    compare,
    manifest_bytes,
    parse_manifest,
)
from webhook.policy.signing.tree import SIGNATURE_DIR, read_tree
from webhook.trust.keys import PublicKey, key_fingerprint, load_public_key, verify

__all__ = [
    "SIGNATURE_FILE",
    "PolicySignatureError",
    "Signed",
    "TrustedKey",
    "previous_version",
    "sign_directory",
    "verify_directory",
]

#: The signature file, relative to the policy directory.
SIGNATURE_FILE = f"{SIGNATURE_DIR}/signature.json"
#: Largest signature file read: a manifest of MAX_FILES entries is about 1 MiB.
MAX_SIGNATURE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """An authority of ``policies.signature``: its name and public key."""

    name: str
    key: PublicKey


@dataclass(frozen=True, slots=True)
class Signed:
    """A verified directory: who signed it and what they signed."""

    authority: str
    manifest: Manifest


def _signature_path(directory: Path) -> Path:
    return directory / SIGNATURE_FILE


def _load_private_key(
    pem: bytes, source: str
) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise PolicyError(
            f"{source}: the private key is encrypted; decrypt it first "
            "(openssl pkey -in KEY -out PLAIN), encrypted keys are not read yet"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise PolicyError(
            f"{source}: not a PEM private key (PKCS#8 or EC PRIVATE KEY); cosign's "
            "encrypted key format is not read"
        ) from None
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise PolicyError(f"{source}: use an ECDSA, RSA or Ed25519 private key")
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    load_public_key(public, source=source)  # the same kinds and sizes a verifier accepts
    return key


def _sign(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey, data: bytes
) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data)


def previous_version(directory: Path) -> int:
    """The version of the signature already in ``directory`` (unverified), 0 when there is none.

    Raises:
        PolicyError: a signature file is there but cannot be read.
    """
    path = _signature_path(directory)
    if not path.exists():
        return 0
    manifest, _, _ = _read_signature(path)
    return parse_manifest(manifest).version


def sign_directory(
    directory: Path, private_key_pem: bytes, *, source: str, version: int, now: datetime
) -> Manifest:
    """Write ``DIR/.trustgate/signature.json`` over the manifest of ``directory``.

    ``source`` names the key in messages (its file); the key is never echoed.

    Raises:
        PolicyError: the key or the directory cannot be read, or the signature not written.
    """
    key = _load_private_key(private_key_pem, source)
    manifest = build_manifest(read_tree(directory), version, now)
    data = manifest_bytes(manifest)
    document = {
        "manifest": data.decode("ascii"),
        "key": {
            "fingerprint": key_fingerprint(key.public_key()),
            "signature": base64.b64encode(_sign(key, data)).decode("ascii"),
        },
    }
    path = _signature_path(directory)
    try:
        path.parent.mkdir(exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", "utf-8")
        temporary.replace(path)
    except OSError as exc:
        raise PolicyError(f"cannot write {path}: {exc.strerror}") from exc
    return manifest


def _read_signature(path: Path) -> tuple[bytes, str, bytes]:
    """The manifest bytes, the fingerprint and the signature of signature file ``path``."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_SIGNATURE_BYTES + 1)
    except OSError as exc:
        raise PolicySignatureError(
            f"cannot read the signature: {exc.strerror}", reason="invalid", file=str(path)
        ) from exc
    try:
        if len(raw) > MAX_SIGNATURE_BYTES:
            raise ValueError("too large")
        document = json.loads(raw)
        manifest = document["manifest"].encode("ascii")
        fingerprint = document["key"]["fingerprint"]
        signature = base64.b64decode(document["key"]["signature"], validate=True)
        if not isinstance(fingerprint, str):
            raise TypeError("fingerprint")
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        message = (
            "not a trustgate policy signature; sign the directory again with trustgate policy sign"
        )
        raise PolicySignatureError(message, reason="invalid", file=str(path)) from exc
    return manifest, fingerprint, signature


def verify_directory(directory: Path, authorities: Sequence[TrustedKey]) -> Signed:
    """Check that one of ``authorities`` signed ``directory`` exactly as it is now.

    Raises:
        PolicySignatureError: the directory is unsigned, the signature is not
            one of the authorities', or a file was added, removed, renamed or
            changed since signing (each named), or a link leads out of it.
        PolicyError: the directory does not exist.
    """
    if not directory.is_dir():
        raise PolicyError(f"{directory} is not a directory")
    path = _signature_path(directory)
    if not path.is_file():
        raise PolicySignatureError(
            f"{directory} is unsigned: there is no {SIGNATURE_FILE}; "
            f"sign it with trustgate policy sign {directory} --key KEY",
            reason="unsigned",
        )
    data, fingerprint, signature = _read_signature(path)
    signer = next((a for a in authorities if verify(a.key, signature, data)), None)
    if signer is None:
        names = ", ".join(a.name for a in authorities) or "none"
        named = [a.name for a in authorities if key_fingerprint(a.key) == fingerprint]
        if named:
            message = (
                f"the signature does not verify with the key of authority {named[0]!r}: "
                "the manifest or the signature was altered after signing"
            )
        else:
            message = (
                f"signed by key {fingerprint}, which is not an authority of "
                f"policies.signature (authorities: {names})"
            )
        reason = "altered" if named else "untrusted"
        raise PolicySignatureError(message, reason=reason, file=str(path))
    try:
        manifest = parse_manifest(data)
        files = read_tree(directory)
    except PolicyError as exc:
        raise PolicySignatureError(
            exc.message, reason="altered", file=exc.file and str(directory / exc.file)
        ) from exc
    differences = compare(manifest, files)
    if differences:
        lines = "; ".join(str(d) for d in differences)
        raise PolicySignatureError(
            f"{directory} differs from what {signer.name!r} signed "
            f"(version {manifest.version}): {lines}",
            reason="altered",
        )
    return Signed(signer.name, manifest)
