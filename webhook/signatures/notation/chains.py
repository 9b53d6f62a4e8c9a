"""Certificate chains of Notation signatures and timestamps: their requirements and their trust.

Two jobs, both per the Notary Project signature specification ("Certificate
Requirements") for code-signing and timestamping chains:

- ``check_chain``: the envelope's chain as given (signing certificate first)
  is ordered, complete and well-formed: each certificate issued by the next,
  the last self-signed, nothing unrelated; CAs with basicConstraints cA
  (critical) and keyUsage keyCertSign; the leaf with keyUsage
  digitalSignature and none of the key-management bits, cA false, an
  extended key usage for code signing, a key of at least RSA 2048 or EC
  P-256; no SHA-1 or MD5 signature anywhere. Validity is not looked at here:
  when a chain must be valid is the time step's question (``trust.py``).
- ``trusted_path``: a path from a leaf to an anchor of a trust store, with
  cryptography's X.509 path validation (``x509.verification``).

What cryptography's verifier covers (cryptography >= 45, with the two
extension policies below replacing its Web PKI ones): path building by name
and signature, every certificate X.509 v3 and valid at the given time,
serial numbers and validity encodings of RFC 5280, pathLenConstraint at each
depth, name constraints, issuer keys (RSA >= 2048, P-256/384/521) and
signature algorithms (PKCS#1 v1.5 or PSS with SHA-2, ECDSA with SHA-2), a
bounded depth. Its policies run the spec's extension rules through our
validators. What it does not: the leaf's own key size, the order and
completeness of the chain a signature carries, the self-signature of a root,
an extended key usage for code signing (its client profile asks for
clientAuth): those are ``check_chain``'s. Extensions other than
basicConstraints, keyUsage and extendedKeyUsage are not evaluated, as the
specification asks ("fail open"); cryptography still honours name
constraints, which only ever refuses more.

One deliberate choice beyond the specification: an extendedKeyUsage that is
present must include codeSigning (the specification forbids serverAuth,
clientAuth, emailProtection, timeStamping, OCSPSigning and
anyExtendedKeyUsage but would accept, say, only documentSigning). A
certificate restricted to other purposes was not issued to sign code; no
code-signing CA we know of issues one. A leaf without the extension is
accepted, as the specification says.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from webhook.core.untrusted import literal
from webhook.signatures.notation.model import NotationError

#: Longest chain looked at: leaf, four intermediates, root. Real ones have 2 or 3.
MAX_CHAIN: Final = 6
#: Extended key usages a code-signing leaf must not have.
_NOT_CODE_SIGNING: Final = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
}
_CURVES: Final = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
_WEAK_HASHES: Final = (hashes.SHA1, hashes.MD5)
_T = TypeVar("_T", bound=x509.ExtensionType)


@dataclass(frozen=True, slots=True)
class Purpose:
    """What a chain is for: the leaf's extended key usage rule and keyUsage criticality."""

    name: str
    critical_key_usage: bool
    extended_key_usage: Callable[[x509.Certificate, x509.ExtendedKeyUsage | None], None]


def _code_signing_eku(cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None) -> None:
    if eku is None:
        return
    for oid, label in _NOT_CODE_SIGNING.items():
        if oid in eku:
            raise ValueError(f"{_name(cert)} has extended key usage {label}, not for code signing")
    if ExtendedKeyUsageOID.CODE_SIGNING not in eku:
        raise ValueError(f"{_name(cert)} has an extended key usage without codeSigning")


def _timestamping_eku(cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None) -> None:
    if eku is None or list(eku) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise ValueError(
            f"{_name(cert)} must have timeStamping, and only it, as extended key usage"
        )
    extension = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    if not extension.critical:
        raise ValueError(f"{_name(cert)} must mark its extended key usage critical (RFC 3161)")


#: Chains of signing certificates (keyUsage critical).
CODE_SIGNING: Final = Purpose("code signing", True, _code_signing_eku)
#: Chains of TSA certificates (keyUsage should be critical, so not required).
TIMESTAMPING: Final = Purpose("timestamping", False, _timestamping_eku)


def check_chain(chain: Sequence[x509.Certificate], purpose: Purpose = CODE_SIGNING) -> None:
    """Whether ``chain`` (leaf first) meets the specification's certificate requirements.

    Raises NotationError naming the certificate and the rule it breaks.
    """
    if not chain:
        raise NotationError("the signature carries no certificate chain")
    if len(chain) > MAX_CHAIN:
        raise NotationError(
            f"the certificate chain has {len(chain)} certificates; at most {MAX_CHAIN}"
        )
    try:
        for cert in chain:
            _no_weak_hash(cert)
        if len(chain) == 1 and not _issued_by(chain[0], chain[0]):
            raise ValueError(
                f"{_name(chain[0])} is alone in the chain but not self-signed; the chain must "
                "end with its root"
            )
        for index, cert in enumerate(chain[:-1]):
            if _issued_by(cert, cert):
                raise ValueError(f"{_name(cert)} is self-signed but not last in the chain")
            if not _issued_by(cert, chain[index + 1]):
                raise ValueError(
                    f"{_name(cert)} is not issued by {_name(chain[index + 1])}, the next "
                    "certificate in the chain; it must be ordered from the signing certificate "
                    "to the root"
                )
        if len(chain) > 1 and not _issued_by(chain[-1], chain[-1]):
            raise ValueError(f"{_name(chain[-1])} ends the chain but is not a self-signed root")
        _leaf(chain[0], purpose)
        for depth, cert in enumerate(chain[1:]):
            _ca(cert, depth, purpose)
    except ValueError as exc:
        raise NotationError(f"invalid {purpose.name} certificate chain: {exc}") from None


def trusted_path(
    leaf: x509.Certificate,
    others: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    moment: dt.datetime,
    purpose: Purpose = CODE_SIGNING,
) -> tuple[x509.Certificate, ...]:
    """The path from ``leaf`` through ``others`` to one of ``anchors``, valid at ``moment``.

    Raises NotationError when there is none, with cryptography's reason.
    """
    if not anchors:
        raise NotationError(f"the trust store holds no certificate for {purpose.name}")
    verifier = (
        PolicyBuilder()
        .store(Store(list(anchors)))
        .time(moment)
        .max_chain_depth(MAX_CHAIN - 2)
        .extension_policies(ca_policy=_ca_policy(purpose), ee_policy=_ee_policy(purpose))
        .build_client_verifier()
    )
    try:
        return tuple(verifier.verify(leaf, list(others[: MAX_CHAIN * 2])).chain)
    except VerificationError as exc:
        raise NotationError(
            f"{_name(leaf)} does not chain to the trust store: {_reason(exc)}"
        ) from None


def validity_window(chain: Sequence[x509.Certificate]) -> tuple[dt.datetime, dt.datetime]:
    """When every certificate of ``chain`` is valid at once: (latest start, earliest end).

    The start is after the end when the certificates were never all valid together.
    """
    start = max(cert.not_valid_before_utc for cert in chain)
    end = min(cert.not_valid_after_utc for cert in chain)
    return start, end


def _leaf(cert: x509.Certificate, purpose: Purpose) -> None:
    _leaf_extensions(cert, purpose)
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise ValueError(f"{_name(cert)} has an RSA key of {key.key_size} bits; at least 2048")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _CURVES):
            raise ValueError(
                f"{_name(cert)} has an EC key on {key.curve.name}; use P-256, P-384 or P-521"
            )
    else:
        raise ValueError(f"{_name(cert)} has a {type(key).__name__}; only RSA and EC keys sign")


def _leaf_extensions(cert: x509.Certificate, purpose: Purpose) -> None:
    constraints = _extension(cert, x509.BasicConstraints)
    if constraints is not None and constraints.value.ca:
        raise ValueError(f"{_name(cert)} signs but is a CA (basicConstraints cA is true)")
    usage = _extension(cert, x509.KeyUsage)
    if usage is None or (purpose.critical_key_usage and not usage.critical):
        critical = " and critical" if purpose.critical_key_usage else ""
        raise ValueError(f"{_name(cert)} must have a keyUsage extension{critical}")
    _leaf_key_usage(cert, usage.value)
    eku = _extension(cert, x509.ExtendedKeyUsage)
    purpose.extended_key_usage(cert, eku.value if eku is not None else None)


def _leaf_key_usage(cert: x509.Certificate, usage: x509.KeyUsage) -> None:
    if not usage.digital_signature:
        raise ValueError(f"{_name(cert)} keyUsage lacks digitalSignature")
    forbidden = [
        ("keyEncipherment", usage.key_encipherment),
        ("dataEncipherment", usage.data_encipherment),
        ("keyAgreement", usage.key_agreement),
        ("keyCertSign", usage.key_cert_sign),
        ("cRLSign", usage.crl_sign),
    ]
    if usage.key_agreement:
        forbidden += [("encipherOnly", usage.encipher_only), ("decipherOnly", usage.decipher_only)]
    found = [name for name, present in forbidden if present]
    if found:
        raise ValueError(
            f"{_name(cert)} keyUsage must be digitalSignature only, has {', '.join(found)}"
        )


def _ca(cert: x509.Certificate, depth: int, purpose: Purpose) -> None:
    """A CA ``depth`` intermediates above the leaf (0: the leaf's issuer)."""
    constraints = _extension(cert, x509.BasicConstraints)
    if constraints is None or not constraints.critical or not constraints.value.ca:
        raise ValueError(f"{_name(cert)} issues certificates but is not a CA (basicConstraints)")
    limit = constraints.value.path_length
    if limit is not None and limit < depth:
        raise ValueError(
            f"{_name(cert)} allows {limit} intermediates below it; the chain has {depth}"
        )
    usage = _extension(cert, x509.KeyUsage)
    if usage is None or (purpose.critical_key_usage and not usage.critical):
        raise ValueError(f"{_name(cert)} must have a critical keyUsage extension")
    if not usage.value.key_cert_sign:
        raise ValueError(f"{_name(cert)} keyUsage lacks keyCertSign")


def _ee_policy(purpose: Purpose) -> ExtensionPolicy:
    def key_usage(_: Policy, cert: x509.Certificate, usage: x509.KeyUsage) -> None:
        _leaf_key_usage(cert, usage)

    def constraints(_: Policy, cert: x509.Certificate, value: x509.BasicConstraints | None) -> None:
        if value is not None and value.ca:
            raise ValueError(f"{_name(cert)} signs but is a CA (basicConstraints cA is true)")

    def eku(_: Policy, cert: x509.Certificate, value: x509.ExtendedKeyUsage | None) -> None:
        purpose.extended_key_usage(cert, value)

    criticality = Criticality.CRITICAL if purpose.critical_key_usage else Criticality.AGNOSTIC
    return (
        ExtensionPolicy.permit_all()
        .require_present(x509.KeyUsage, criticality, key_usage)
        .may_be_present(x509.BasicConstraints, Criticality.AGNOSTIC, constraints)
        .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, eku)
    )


def _ca_policy(purpose: Purpose) -> ExtensionPolicy:
    def constraints(_: Policy, cert: x509.Certificate, value: x509.BasicConstraints) -> None:
        if not value.ca:
            raise ValueError(
                f"{_name(cert)} issues certificates but is not a CA (basicConstraints)"
            )

    def key_usage(_: Policy, cert: x509.Certificate, usage: x509.KeyUsage) -> None:
        if not usage.key_cert_sign:
            raise ValueError(f"{_name(cert)} keyUsage lacks keyCertSign")

    criticality = Criticality.CRITICAL if purpose.critical_key_usage else Criticality.AGNOSTIC
    return (
        ExtensionPolicy.permit_all()
        .require_present(x509.BasicConstraints, Criticality.CRITICAL, constraints)
        .require_present(x509.KeyUsage, criticality, key_usage)
    )


def _no_weak_hash(cert: x509.Certificate) -> None:
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:  # not one cryptography knows, so not SHA-1 or MD5
        return
    if isinstance(algorithm, _WEAK_HASHES):
        raise ValueError(f"{_name(cert)} is signed with {algorithm.name}, which is not allowed")


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _extension(cert: x509.Certificate, kind: type[_T]) -> x509.Extension[_T] | None:
    try:
        return cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return None


def _reason(exc: VerificationError) -> str:
    text = str(exc).split(" (encountered processing", 1)[0]
    for prefix in ("validation failed: ", "Python extension validator failed: ValueError: "):
        text = text.removeprefix(prefix)
    return text[:300]


def _name(cert: x509.Certificate) -> str:
    """A certificate in a message: its subject, quoted (it is the signer's text)."""
    return "certificate " + literal(cert.subject.rfc4514_string())
