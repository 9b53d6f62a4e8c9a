"""SSH signatures (SSHSIG) as ``git commit -S`` makes them with ``gpg.format ssh``, checked offline.

The format is OpenSSH's PROTOCOL.sshsig: an armored blob holding the signer's
public key, a namespace (``git`` for commits), the hash of the message
(SHA-256 or SHA-512) and a signature over a preamble that binds all three.
The only Python package that reads it (``sshsig``) verifies no ECDSA and
checks its input with ``assert``; the format is small enough to read here,
with ``cryptography`` doing every signature check.

Accepted signature algorithms: ``ssh-ed25519``, ``ecdsa-sha2-nistp256``,
``-nistp384`` and ``-nistp521`` (each with its curve's hash), ``rsa-sha2-256``
and ``rsa-sha2-512``. ``ssh-rsa`` (SHA-1) and security-key (``sk-``) keys are
refused, as are the key kinds and sizes ``trust/keys.py`` refuses.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from webhook.core.errors import PolicyError
from webhook.trust.keys import PublicKey, load_public_key

__all__ = [
    "KEY_TYPES",
    "SIGNATURE_ALGORITHMS",
    "SshSignature",
    "load_ssh_public_key",
    "parse_ssh_signature",
    "ssh_fingerprint",
    "ssh_key_blob",
    "verify_ssh_signature",
]

ARMOR_BEGIN = b"-----BEGIN SSH SIGNATURE-----"
ARMOR_END = b"-----END SSH SIGNATURE-----"
_MAGIC = b"SSHSIG"
#: Largest armored signature read: an RSA-4096 one is under 2 KiB.
MAX_SIGNATURE_BYTES = 16 * 1024
#: The key types an OpenSSH public key or allowed-signers line may name.
KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
)
_MESSAGE_HASHES = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}
_ECDSA: dict[str, tuple[str, hashes.HashAlgorithm]] = {
    "ecdsa-sha2-nistp256": ("secp256r1", hashes.SHA256()),
    "ecdsa-sha2-nistp384": ("secp384r1", hashes.SHA384()),
    "ecdsa-sha2-nistp521": ("secp521r1", hashes.SHA512()),
}
_RSA: dict[str, hashes.HashAlgorithm] = {
    "rsa-sha2-256": hashes.SHA256(),
    "rsa-sha2-512": hashes.SHA512(),
}
#: The signature algorithms accepted (not ssh-rsa: SHA-1).
SIGNATURE_ALGORITHMS = ("ssh-ed25519", *_ECDSA, *_RSA)


@dataclass(frozen=True, slots=True)
class SshSignature:
    """An SSHSIG blob, read but not verified."""

    public_key: bytes  # the signer's key, in SSH wire format
    namespace: str
    reserved: bytes
    hash_algorithm: str  # of the message: sha256 or sha512
    algorithm: str  # of the signature, e.g. rsa-sha2-512
    signature: bytes  # the algorithm's signature blob


class _Reader:
    """SSH wire format (RFC 4251): uint32 lengths, strings, mpints; never reads past the end."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, size: int) -> bytes:
        if size < 0 or self.at + size > len(self.data):
            raise ValueError("truncated")
        chunk = self.data[self.at : self.at + size]
        self.at += size
        return chunk

    def uint32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def string(self) -> bytes:
        return self.take(self.uint32())

    def mpint(self) -> int:
        value = int.from_bytes(self.string(), "big", signed=True)
        if value <= 0:
            raise ValueError("not a positive integer")
        return value

    def done(self) -> bool:
        return self.at == len(self.data)


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def parse_ssh_signature(armored: bytes) -> SshSignature:
    """The SSHSIG blob of ``armored`` (``-----BEGIN SSH SIGNATURE-----`` ... ``END``).

    Raises:
        PolicyError: not one armored SSH signature of version 1.
    """
    if len(armored) > MAX_SIGNATURE_BYTES:
        raise PolicyError(f"the SSH signature is larger than {MAX_SIGNATURE_BYTES} bytes")
    text = armored.strip()
    if not (text.startswith(ARMOR_BEGIN) and text.endswith(ARMOR_END)):
        raise PolicyError("not an armored SSH signature (-----BEGIN SSH SIGNATURE-----)")
    body = b"".join(text[len(ARMOR_BEGIN) : -len(ARMOR_END)].split())
    try:
        reader = _Reader(base64.b64decode(body, validate=True))
        if reader.take(6) != _MAGIC or reader.uint32() != 1:
            raise ValueError("not an SSHSIG blob of version 1")
        public_key, namespace, reserved = reader.string(), reader.string(), reader.string()
        hash_algorithm = reader.string().decode("ascii")
        inner = _Reader(reader.string())
        algorithm, signature = inner.string().decode("ascii"), inner.string()
        if not (reader.done() and inner.done()):
            raise ValueError("trailing bytes")
        return SshSignature(
            public_key, namespace.decode("utf-8"), reserved, hash_algorithm, algorithm, signature
        )
    except (ValueError, binascii.Error) as exc:
        raise PolicyError(f"the SSH signature cannot be read ({exc})") from None


def ssh_key_blob(line: str, *, source: str) -> tuple[str, bytes]:
    """The key type and SSH wire blob of ``TYPE BASE64`` (the start of an OpenSSH key line).

    Raises:
        PolicyError: an unknown key type, or a blob that is not base64 of that type.
    """
    fields = line.split()
    if len(fields) < 2:
        raise PolicyError(f"{source}: expected an OpenSSH public key (TYPE BASE64 [COMMENT])")
    kind = fields[0]
    if kind not in KEY_TYPES:
        refused = "security-key (sk-) keys" if kind.startswith("sk-") else f"key type {kind!r}"
        raise PolicyError(
            f"{source}: {refused} not accepted; use one of {', '.join(KEY_TYPES)}"
            + (" (SSH certificates are not read)" if "-cert-" in kind else "")
        )
    try:
        blob = base64.b64decode(fields[1], validate=True)
        embedded = _Reader(blob).string().decode("ascii")
    except (ValueError, binascii.Error):
        raise PolicyError(f"{source}: the {kind} key is not valid base64 of an SSH key") from None
    if embedded != kind:
        raise PolicyError(f"{source}: the key says it is {embedded!r}, the line says {kind!r}")
    return kind, blob


def load_ssh_public_key(blob: bytes, *, source: str) -> PublicKey:
    """The public key of SSH wire ``blob``, if trustgate accepts its kind and size.

    Raises:
        PolicyError: the blob is no SSH public key, or of a kind or size refused.
    """
    try:
        kind = _Reader(blob).string().decode("ascii")
        if kind not in KEY_TYPES:
            raise ValueError(kind)
        key = serialization.load_ssh_public_key(kind.encode() + b" " + base64.b64encode(blob))
    except (ValueError, UnsupportedAlgorithm, NotImplementedError):
        # NotImplementedError: cryptography's answer to a compressed EC point.
        raise PolicyError(f"{source}: not an accepted SSH public key") from None
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return load_public_key(pem, source=source)  # the kinds and sizes every verifier accepts


def ssh_fingerprint(blob: bytes) -> str:
    """``SHA256:...`` as ``ssh-keygen -l`` prints a key's fingerprint."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).rstrip(b"=")
    return "SHA256:" + digest.decode("ascii")


def verify_ssh_signature(
    signature: SshSignature, key: PublicKey, message: bytes, *, namespace: str
) -> bool:
    """Whether ``signature`` is ``key``'s SSHSIG over ``message`` in ``namespace``.

    The caller has matched ``signature.public_key`` to ``key``. Never raises
    for a bad, malformed or mismatched signature: returns False.
    """
    hasher = _MESSAGE_HASHES.get(signature.hash_algorithm)
    if hasher is None or signature.namespace != namespace:
        return False
    signed = (
        _MAGIC
        + _string(namespace.encode("utf-8"))
        + _string(signature.reserved)
        + _string(signature.hash_algorithm.encode("ascii"))
        + _string(hasher(message).digest())
    )
    try:
        return _verify(signature.algorithm, signature.signature, key, signed)
    except (InvalidSignature, ValueError):
        return False


def _verify(algorithm: str, blob: bytes, key: PublicKey, data: bytes) -> bool:
    if algorithm == "ssh-ed25519" and isinstance(key, ed25519.Ed25519PublicKey):
        key.verify(blob, data)
        return True
    if algorithm in _ECDSA and isinstance(key, ec.EllipticCurvePublicKey):
        curve, algorithm_hash = _ECDSA[algorithm]
        if key.curve.name != curve:
            return False
        reader = _Reader(blob)
        r, s = reader.mpint(), reader.mpint()
        if not reader.done():
            return False
        key.verify(encode_dss_signature(r, s), data, ec.ECDSA(algorithm_hash))
        return True
    if algorithm in _RSA and isinstance(key, rsa.RSAPublicKey):
        key.verify(blob, data, padding.PKCS1v15(), _RSA[algorithm])
        return True
    return False
