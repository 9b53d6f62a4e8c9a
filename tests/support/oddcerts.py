"""Certificates cryptography cannot read, made by DER surgery on a real one.

cryptography raises something other than ``ValueError`` for each of them, and
for two only when ``.extensions`` is first read: an unknown X.509 version
(``InvalidVersion`` at load), an extension given twice (``DuplicateExtension``)
and a SAN of a general name type it does not model (an x400Address:
``UnsupportedGeneralNameType``). A registry or a signer can serve any of them.
"""

from __future__ import annotations

import base64
import functools
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

EMAIL = "mallory@example.com"
#: The cases of ``odd_certificates``, by the words a test id shows.
ODD_CASES = ("an unknown X.509 version", "a SAN given twice", "an x400Address SAN")


@functools.cache
def odd_key() -> ec.EllipticCurvePrivateKey:
    """The key of every odd certificate (each is self-signed before the surgery)."""
    return ec.generate_private_key(ec.SECP256R1())


@functools.cache
def odd_certificates() -> dict[str, bytes]:
    """DER certificates, by case: version 95, the SAN twice, an x400Address in the SAN."""
    key = odd_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mallory")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(5)
        .not_valid_before(datetime(2020, 1, 1))
        .not_valid_after(datetime(2040, 1, 1))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(EMAIL)]), critical=False)
        .add_extension(
            x509.UnrecognizedExtension(ObjectIdentifier("2.5.29.99"), b"\x30\x00"), False
        )
    )
    der = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    # 2.5.29.99 becomes 2.5.29.17: a second subjectAltName.
    twice = der.replace(b"\x06\x03\x55\x1d\x63", b"\x06\x03\x55\x1d\x11")
    # The version field [0] INTEGER 2 (v3) becomes 94 (v95).
    version = der.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x5e", 1)
    # The rfc822Name [1] becomes an x400Address [3] (a constructed ORAddress).
    email = EMAIL.encode()
    x400 = der.replace(b"\x81" + bytes([len(email)]) + email, b"\xa3" + bytes([len(email)]) + email)
    cases = dict(zip(ODD_CASES, (version, twice, x400), strict=True))
    assert len(set(cases.values()) | {der}) == 4, "the DER surgery found nothing to change"
    return cases


def odd_pem(case: str) -> bytes:
    """The certificate of ``case`` as one PEM CERTIFICATE block."""
    body = base64.encodebytes(odd_certificates()[case]).decode().replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (
        "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"
    ).encode()
