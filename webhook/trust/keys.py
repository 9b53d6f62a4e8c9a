"""Public keys that authorities sign with, and raw signature verification.

Accepted keys are the ones cosign and sigstore accept: ECDSA on P-256, P-384
and P-521, RSA from 2048 to 4096 bits, and Ed25519, given as a PEM
``PUBLIC KEY`` (SubjectPublicKeyInfo). Everything else is refused when the
policy loads, never at admission time.
"""

from __future__ import annotations

import hashlib
import re
from typing import TypeAlias

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from webhook.core.errors import PolicyError

PublicKey: TypeAlias = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

RSA_MIN_BITS = 2048
RSA_MAX_BITS = 4096

# Each curve's natural hash first. cosign's key-file verification hashes with
# SHA-256 whatever the curve (its --signature-digest-algorithm default), so
# SHA-256 is accepted on the larger curves too.
_EC_HASHES: dict[str, tuple[type[hashes.HashAlgorithm], ...]] = {
    "secp256r1": (hashes.SHA256,),
    "secp384r1": (hashes.SHA384, hashes.SHA256),
    "secp521r1": (hashes.SHA512, hashes.SHA256),
}
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_ACCEPTED = "use ECDSA P-256/P-384/P-521, RSA 2048-4096 bits or Ed25519"
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")


def load_public_key(pem: str | bytes, *, source: str) -> PublicKey:
    """Parse one PEM ``PUBLIC KEY`` block and check that trustgate accepts it.

    ``source`` names where the key came from (a file, an authority) and
    prefixes every message. No key material is ever echoed.

    Raises PolicyError for anything but exactly one public key of an accepted
    kind: certificates, private keys, DSA, other curves, RSA outside 2048-4096
    bits, and text that is not PEM.
    """
    data = pem.encode() if isinstance(pem, str) else pem
    labels = [match.group(1).decode() for match in _PEM_BEGIN.finditer(data)]
    if not labels:
        raise PolicyError(f"{source}: no PEM block found; expected a PEM PUBLIC KEY")
    if len(labels) > 1:
        raise PolicyError(
            f"{source}: {len(labels)} PEM blocks found; expected exactly one PUBLIC KEY"
        )
    label = labels[0]
    if "PRIVATE KEY" in label:
        raise PolicyError(
            f"{source}: is a private key ({label}); give the public key, never the private one"
        )
    if label != "PUBLIC KEY":
        raise PolicyError(f"{source}: PEM block is {label}, not PUBLIC KEY")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise PolicyError(f"{source}: PUBLIC KEY block is not a valid public key") from None
    return _accepted(key, source)


def _accepted(key: object, source: str) -> PublicKey:
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _EC_HASHES:
            raise PolicyError(f"{source}: EC curve {key.curve.name} is not accepted; {_ACCEPTED}")
        return key
    if isinstance(key, rsa.RSAPublicKey):
        if not RSA_MIN_BITS <= key.key_size <= RSA_MAX_BITS:
            raise PolicyError(
                f"{source}: RSA key of {key.key_size} bits is not accepted; {_ACCEPTED}"
            )
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    kind = type(key).__name__.removeprefix("_").replace("PublicKey", "") or "unknown"
    raise PolicyError(f"{source}: {kind} keys are not accepted; {_ACCEPTED}")


def describe(key: PublicKey) -> str:
    """A short human name for the kind of ``key``, e.g. ``ECDSA P-256``."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {_CURVE_NAMES.get(key.curve.name, key.curve.name)}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    return "Ed25519"


def verify(key: PublicKey, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` is ``key``'s signature over exactly ``data``.

    ECDSA signatures are ASN.1 DER over the curve's hash (SHA-256 also on
    P-384 and P-521, as cosign signs by default); RSA signatures are PKCS#1
    v1.5 or PSS with SHA-256; Ed25519 is pure Ed25519. Never raises for a bad
    or malformed signature: returns False.
    """
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            return any(
                _verifies_ecdsa(key, signature, data, algorithm())
                for algorithm in _EC_HASHES.get(key.curve.name, ())
            )
        if isinstance(key, rsa.RSAPublicKey):
            return _verifies_rsa(key, signature, data, padding.PKCS1v15()) or _verifies_rsa(
                key, signature, data, _PSS
            )
        key.verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_digest(key: PublicKey, signature: bytes, digest: bytes) -> bool:
    """Whether ``signature`` is ``key``'s signature over the data whose SHA-256 is ``digest``.

    What a message-signature bundle holds: the signer hashed the artifact (an
    image manifest) with SHA-256 and signed that. ECDSA and RSA (PKCS#1 v1.5 or
    PSS) verify a prehashed digest; pure Ed25519 signs the message itself, so
    an Ed25519 key never verifies a bare digest. Never raises: returns False.
    """
    if len(digest) != hashes.SHA256.digest_size:
        return False
    prehashed = Prehashed(hashes.SHA256())
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, digest, ec.ECDSA(prehashed))
            return True
        if isinstance(key, rsa.RSAPublicKey):
            for scheme in (padding.PKCS1v15(), _PSS):
                try:
                    key.verify(signature, digest, scheme, prehashed)
                    return True
                except InvalidSignature:
                    continue
    except (InvalidSignature, ValueError):
        return False
    return False


def _verifies_ecdsa(
    key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes, algorithm: hashes.HashAlgorithm
) -> bool:
    try:
        key.verify(signature, data, ec.ECDSA(algorithm))
    except (InvalidSignature, ValueError):
        return False
    return True


def _verifies_rsa(
    key: rsa.RSAPublicKey, signature: bytes, data: bytes, scheme: padding.AsymmetricPadding
) -> bool:
    try:
        key.verify(signature, data, scheme, hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def key_fingerprint(key: object) -> str:
    """``sha256:<hex>`` of a public key's DER SubjectPublicKeyInfo: equal keys, equal prints.

    Raises TypeError for anything but an EC, RSA or Ed25519 public key.
    """
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise TypeError(f"not a supported public key: {type(key).__name__}")
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()
