"""The signature algorithms a Notation signature may use, and the check of one signature.

The Notary Project signature specification ("Algorithm Selection") allows six:
RSASSA-PSS with SHA-256, SHA-384 or SHA-512 on RSA keys of 2048, 3072 or 4096
bits, and ECDSA on P-256, P-384 or P-521 with the matching hash. The signing
certificate's key decides which one applies, and the envelope's ``alg`` header
must name exactly that one: a verifier that took ``alg`` at its word could be
led to check a signature under an algorithm the signer never used (algorithm
substitution). PKCS#1 v1.5, EdDSA, other curves and other key sizes are never
accepted, whatever the header says.

Algorithms are named as in JWS (``PS256`` ... ``ES512``, RFC 7518); COSE's
integer identifiers (RFC 9053, RFC 8230) map onto the same names. PSS uses MGF1
with the same hash and a salt as long as the hash (RFC 7518 section 3.5, RFC
8230 section 2), as Notation signs. JWS and COSE both carry an ECDSA signature
as the fixed-width concatenation ``r || s``, not DER.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from webhook.core.untrusted import shown
from webhook.signatures.notation.model import NotationError


@dataclass(frozen=True, slots=True)
class Algorithm:
    """One allowed signature algorithm: its JWS name, hash and key."""

    name: str
    description: str
    hash: type[hashes.SHA256 | hashes.SHA384 | hashes.SHA512]
    #: RSA modulus size in bits, or the EC curve's name.
    key: int | str


_ALGORITHMS: Final = (
    Algorithm("PS256", "RSASSA-PSS with SHA-256", hashes.SHA256, 2048),
    Algorithm("PS384", "RSASSA-PSS with SHA-384", hashes.SHA384, 3072),
    Algorithm("PS512", "RSASSA-PSS with SHA-512", hashes.SHA512, 4096),
    Algorithm("ES256", "ECDSA on secp256r1 with SHA-256", hashes.SHA256, "secp256r1"),
    Algorithm("ES384", "ECDSA on secp384r1 with SHA-384", hashes.SHA384, "secp384r1"),
    Algorithm("ES512", "ECDSA on secp521r1 with SHA-512", hashes.SHA512, "secp521r1"),
)
#: The allowed algorithms by JWS name.
ALGORITHMS: Final = {algorithm.name: algorithm for algorithm in _ALGORITHMS}
#: COSE algorithm identifiers (IANA "COSE Algorithms") of the allowed algorithms.
COSE_ALGORITHMS: Final = {
    -37: "PS256",
    -38: "PS384",
    -39: "PS512",
    -7: "ES256",
    -35: "ES384",
    -36: "ES512",
}
_BY_KEY: Final = {algorithm.key: algorithm for algorithm in _ALGORITHMS}
_ALLOWED_KEYS: Final = "RSA 2048, 3072 or 4096 bits, or EC P-256, P-384 or P-521"

#: Well-known algorithms that are refused, to say why rather than "unknown".
_REFUSED: Final = {
    "none": "an unsigned JWS",
    "HS256": "HMAC, a symmetric algorithm",
    "HS384": "HMAC, a symmetric algorithm",
    "HS512": "HMAC, a symmetric algorithm",
    "RS256": "RSASSA-PKCS1-v1_5",
    "RS384": "RSASSA-PKCS1-v1_5",
    "RS512": "RSASSA-PKCS1-v1_5",
    "EdDSA": "EdDSA",
    "ES256K": "ECDSA on secp256k1",
    -257: "RSASSA-PKCS1-v1_5",
    -258: "RSASSA-PKCS1-v1_5",
    -259: "RSASSA-PKCS1-v1_5",
    -8: "EdDSA",
    -47: "ECDSA on secp256k1",
    5: "HMAC, a symmetric algorithm",
    6: "HMAC, a symmetric algorithm",
    7: "HMAC, a symmetric algorithm",
}


def named(alg: object, header: str) -> Algorithm:
    """The allowed algorithm that a JWS ``alg`` value (or a COSE identifier mapped
    through COSE_ALGORITHMS) names.

    Raises:
        NotationError: ``alg`` names no algorithm the specification allows.
    """
    if isinstance(alg, str) and alg in ALGORITHMS:
        return ALGORITHMS[alg]
    shown_alg = shown(alg, 40) if isinstance(alg, str) else repr(alg)[:40]
    why = _REFUSED.get(alg) if isinstance(alg, (str, int)) else None
    reason = f" ({why})" if why else ""
    raise NotationError(
        f"{header} is {shown_alg}{reason}, which the Notary Project signature specification "
        f"does not allow: only RSASSA-PSS (PS256, PS384, PS512) and ECDSA (ES256, ES384, "
        f"ES512) are accepted"
    )


def for_certificate(certificate: x509.Certificate) -> Algorithm:
    """The one algorithm the signing certificate's key signs with.

    Raises:
        NotationError: the key is of a type or size the specification does not allow.
    """
    try:
        key = certificate.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise NotationError(
            f"the signing certificate's public key cannot be read ({exc}); a Notation "
            f"signing key is {_ALLOWED_KEYS}"
        ) from None
    described = describe(key)
    if isinstance(key, rsa.RSAPublicKey):
        found = _BY_KEY.get(key.key_size)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        found = _BY_KEY.get(key.curve.name)
    else:
        found = None
    if found is None:
        raise NotationError(
            f"the signing certificate has {described}, which the Notary Project signature "
            f"specification does not allow: a signing key is {_ALLOWED_KEYS}"
        )
    return found


def describe(key: object) -> str:
    """A key's type and size in words, e.g. ``an RSA 3072-bit key``."""
    if isinstance(key, rsa.RSAPublicKey):
        return f"an RSA {key.key_size}-bit key"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"an EC {key.curve.name} key"
    name = type(key).__name__.removeprefix("_").removesuffix("PublicKey") or "unknown"
    return f"{'an' if name[0] in 'AEIOU' else 'a'} {name} key"


def check_fit(algorithm: Algorithm, certificate: x509.Certificate) -> None:
    """Refuse ``algorithm`` unless it is the one the signing certificate's key signs with.

    Raises:
        NotationError: the key is not allowed, or the header names another algorithm.
    """
    expected = for_certificate(certificate)
    if algorithm != expected:
        raise NotationError(
            f"the header's algorithm {algorithm.name} ({algorithm.description}) does not fit "
            f"the signing certificate, which has {describe(certificate.public_key())} and "
            f"signs with {expected.name} ({expected.description}); a signature whose header "
            f"and key disagree is refused (algorithm substitution)"
        )


def verify(
    algorithm: Algorithm, certificate: x509.Certificate, signature: bytes, signed: bytes
) -> None:
    """Check ``signature`` over ``signed`` with the certificate's key under ``algorithm``.

    Call ``check_fit`` first: this checks the signature only.

    Raises:
        NotationError: the signature does not verify.
    """
    key = certificate.public_key()
    digest = algorithm.hash()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
            key.verify(signature, signed, pss, digest)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(_der(signature, key), signed, ec.ECDSA(digest))
        else:  # check_fit refused it already
            raise InvalidSignature
    except InvalidSignature:
        raise NotationError(
            f"the signature does not verify with the signing certificate's key under "
            f"{algorithm.name} ({algorithm.description}): the envelope was altered after "
            f"signing, or signed by another key or in another way"
        ) from None


def _der(signature: bytes, key: ec.EllipticCurvePublicKey) -> bytes:
    """The DER ECDSA-Sig-Value of JWS/COSE's fixed-width ``r || s``."""
    width = (key.curve.key_size + 7) // 8
    if len(signature) != 2 * width:
        raise InvalidSignature
    r = int.from_bytes(signature[:width], "big")
    s = int.from_bytes(signature[width:], "big")
    return encode_dss_signature(r, s)
