"""A test RFC 3161 timestamp authority: a CA, a timestamping certificate, signed tokens.

``TimestampAuthority.stamp(message)`` answers as a real TSA does to a request over the
SHA-256 of ``message``: a TimeStampResp (status granted) holding a CMS SignedData whose
content is a TSTInfo, signed by the TSA's certificate (extended key usage timeStamping,
critical) with the signed attributes RFC 3161 and RFC 5816 ask for (content type, message
digest, ESS signing-certificate-v2). ``trusted_root_entry()`` is the ``timestampAuthorities``
entry of a ``trusted_root.json`` that trusts it. The DER is written out by hand (the
``cryptography`` package builds certificates but no timestamp tokens); rfc3161-client,
which sigstore-python and trustgate verify timestamps with, parses and checks it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_SHA256 = "2.16.840.1.101.3.4.2.1"
_ECDSA_SHA256 = "1.2.840.10045.4.3.2"
_SIGNED_DATA = "1.2.840.113549.1.7.2"
_TST_INFO = "1.2.840.113549.1.9.16.1.4"
_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"
_POLICY = "1.3.6.1.4.1.57264.2"


def _tlv(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(encoded)]) + encoded + content


def _seq(*parts: bytes) -> bytes:
    return _tlv(0x30, b"".join(parts))


def _set(*parts: bytes) -> bytes:
    return _tlv(0x31, b"".join(sorted(parts)))


def _int(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def _oid(dotted: str) -> bytes:
    numbers = [int(part) for part in dotted.split(".")]
    body = bytes([40 * numbers[0] + numbers[1]])
    for number in numbers[2:]:
        chunk = [number & 0x7F]
        number >>= 7
        while number:
            chunk.append(0x80 | (number & 0x7F))
            number >>= 7
        body += bytes(reversed(chunk))
    return _tlv(0x06, body)


def _octets(data: bytes) -> bytes:
    return _tlv(0x04, data)


def _explicit(number: int, content: bytes) -> bytes:
    return _tlv(0xA0 + number, content)


def _algorithm(dotted: str) -> bytes:
    return _seq(_oid(dotted))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class TimestampAuthority:
    """A root CA and a timestamping leaf it issued, valid from ``start`` for a year."""

    def __init__(self, name: str = "trustgate-test-tsa") -> None:
        self.start = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
        end = self.start + dt.timedelta(days=365)
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} root")])
        self.root = (
            x509.CertificateBuilder()
            .subject_name(root_name)
            .issuer_name(root_name)
            .public_key(self.root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(self.root_key, hashes.SHA256())
        )
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(root_name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True
            )
            .sign(self.root_key, hashes.SHA256())
        )
        self._serial = 1

    def trusted_root_entry(self) -> dict[str, Any]:
        """The ``timestampAuthorities`` item of a trusted root that trusts this TSA."""
        der = serialization.Encoding.DER
        return {
            "subject": {"organization": "trustgate.test", "commonName": "tsa"},
            "uri": "https://tsa.trustgate.test",
            "certChain": {
                "certificates": [
                    {"rawBytes": _b64(self.cert.public_bytes(der))},
                    {"rawBytes": _b64(self.root.public_bytes(der))},
                ]
            },
            "validFor": {"start": self.start.strftime("%Y-%m-%dT%H:%M:%SZ")},
        }

    def stamp(self, message: bytes, when: dt.datetime | None = None) -> bytes:
        """A granted TimeStampResp (DER) over the SHA-256 of ``message``, made at ``when``."""
        self._serial += 1
        moment = (when or dt.datetime.now(dt.UTC)).strftime("%Y%m%d%H%M%SZ").encode()
        tst_info = _seq(
            _int(1),
            _oid(_POLICY),
            _seq(_algorithm(_SHA256), _octets(hashlib.sha256(message).digest())),
            _int(self._serial),
            _tlv(0x18, moment),
        )
        der = self.cert.public_bytes(serialization.Encoding.DER)
        cert_id = _seq(_seq(_seq(_octets(hashlib.sha256(der).digest()))))
        attributes = [
            _seq(_oid(_CONTENT_TYPE), _set(_oid(_TST_INFO))),
            _seq(_oid(_MESSAGE_DIGEST), _set(_octets(hashlib.sha256(tst_info).digest()))),
            _seq(_oid(_SIGNING_CERTIFICATE_V2), _set(cert_id)),
        ]
        content = b"".join(sorted(attributes))
        # The signature covers the attributes as a SET; the token holds them as [0] IMPLICIT.
        signature = self.key.sign(_tlv(0x31, content), ec.ECDSA(hashes.SHA256()))
        issuer = self.cert.issuer.public_bytes()
        signer_info = _seq(
            _int(1),
            _seq(issuer, _int(self.cert.serial_number)),
            _algorithm(_SHA256),
            _tlv(0xA0, content),
            _algorithm(_ECDSA_SHA256),
            _octets(signature),
        )
        signed_data = _seq(
            _int(3),
            _set(_algorithm(_SHA256)),
            _seq(_oid(_TST_INFO), _explicit(0, _octets(tst_info))),
            _tlv(0xA0, der),
            _set(signer_info),
        )
        token = _seq(_oid(_SIGNED_DATA), _explicit(0, signed_data))
        return _seq(_seq(_int(0)), token)
