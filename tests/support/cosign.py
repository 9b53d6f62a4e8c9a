"""A test signer that writes cosign's formats byte for byte.

Keys, simple signing payloads and ``.sig`` manifests come from
webhook.sandbox.cosign (shared with ``make demo``); this module adds DSSE
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
from typing import Any

import nacl.exceptions
import nacl.secret
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from webhook.sandbox.cosign import (
    KEY_KINDS,
    OCI_CONFIG,
    OCI_MANIFEST,
    KeyKind,
    PrivateKey,
    generate_key,
    go_json,
    public_pem,
    sha256,
    sign,
    sign_b64,
    signature_manifest,
    simple_signing_payload,
)
from webhook.sandbox.registry import Registry, push_artifact
from webhook.signatures.cosign import IN_TOTO_PAYLOAD_TYPE, pae, signature_tag

__all__ = [
    "KEY_KINDS",
    "OCI_CONFIG",
    "OCI_MANIFEST",
    "KeyKind",
    "PrivateKey",
    "dsse_envelope",
    "encrypt_cosign_key",
    "generate_key",
    "go_json",
    "in_toto_statement",
    "load_encrypted_cosign_key",
    "public_pem",
    "push_signature",
    "sha256",
    "sign",
    "sign_b64",
    "signature_manifest",
    "simple_signing_payload",
]


def push_signature(
    registry: Registry,
    repository: str,
    digest: str,
    *keys: PrivateKey,
    signed_digest: str | None = None,
    annotations: dict[str, str] | None = None,
    reference: str | None = None,
) -> None:
    """Push cosign's ``.sig`` manifest for ``digest``, one layer per key.

    The payload names ``reference`` (default: the repository on the registry's own host) and
    ``signed_digest`` (default: ``digest``; another digest makes a signature for the wrong image).
    """
    name = reference or f"{registry.host}/{repository}"
    payload = simple_signing_payload(name, signed_digest or digest, annotations)
    manifest, blobs = signature_manifest([(payload, sign_b64(key, payload)) for key in keys])
    push_artifact(registry, repository, signature_tag(digest), manifest, blobs)


SIGSTORE_KEY_LABEL = "ENCRYPTED SIGSTORE PRIVATE KEY"
COSIGN_KEY_LABEL = "ENCRYPTED COSIGN PRIVATE KEY"
# What cosign generate-key-pair uses; tests pass a smaller N for speed.
DEFAULT_SCRYPT_N = 32768

_PEM = re.compile(r"-----BEGIN ([A-Z ]+)-----\s*(.*?)\s*-----END \1-----", re.S)


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
