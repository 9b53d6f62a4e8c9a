"""A test PKI for revocation: CAs that issue code signing chains and record what they revoked.

``Authority`` is a CA (P-256 by default, RSA or Ed25519 on request) whose
certificates name whatever OCSP and CRL URLs a test gives; ``revoke`` records
what its OCSP responder and CRL (tests/support/notation_revocation.py) then
say. ``resigned`` forges or amends an OCSP response where cryptography's
builder cannot.

This PKI is the revocation tests' own: the trust tests' PKI lives in
notation_pki.py, built in parallel.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import univ, useful
from pyasn1_modules import rfc5280, rfc6960

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def new_key(kind: str = "ec") -> Key:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "trustgate tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


@dataclass
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: Key


@dataclass
class Authority:
    """A CA: its certificate and key, and what it revoked (serial -> time, reason, invalidity)."""

    name: str
    cert: x509.Certificate
    key: Key
    revoked: dict[int, tuple[dt.datetime, x509.ReasonFlags | None, dt.datetime | None]] = field(
        default_factory=dict
    )
    #: Entries of the delta CRL (served in "delta" mode), as ``revoked``.
    delta: dict[int, tuple[dt.datetime, x509.ReasonFlags | None, dt.datetime | None]] = field(
        default_factory=dict
    )
    responder: Issued | None = None  # delegated, with nocheck
    checked_responder: Issued | None = None  # delegated, without nocheck
    plain: Issued | None = None  # CA-issued, no OCSP signing EKU

    @classmethod
    def root(cls, name: str, *, kind: str = "ec") -> Authority:
        key = new_key(kind)
        subject = _name(f"{name} root")
        cert = (
            _builder(subject, subject, key, days=3650)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(name, cert, key)

    def issue(
        self,
        common_name: str,
        *,
        ca: bool = False,
        ocsp_url: str | None = None,
        crl_url: str | None = None,
        eku: x509.ObjectIdentifier | None = ExtendedKeyUsageOID.CODE_SIGNING,
        extra: Iterable[tuple[x509.ExtensionType, bool]] = (),
        kind: str = "ec",
        days: int = 365,
    ) -> Issued:
        """A certificate issued by this CA naming ``ocsp_url`` and ``crl_url``."""
        key = new_key(kind)
        builder = _builder(_name(common_name), self.cert.subject, key, days=days)
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=None), critical=True
        ).add_extension(_ca_usage() if ca else x509.KeyUsage(True, *[False] * 8), critical=True)
        if eku is not None and not ca:
            builder = builder.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        if ocsp_url is not None:
            access = x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
            )
            builder = builder.add_extension(
                x509.AuthorityInformationAccess([access]), critical=False
            )
        if crl_url is not None:
            point = x509.DistributionPoint(
                [x509.UniformResourceIdentifier(crl_url)], None, None, None
            )
            builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
        for extension, critical in extra:
            builder = builder.add_extension(extension, critical=critical)
        return Issued(builder.sign(self.key, _hash(self.key)), key)

    def sub(
        self,
        name: str,
        *,
        ocsp_url: str | None = None,
        crl_url: str | None = None,
        kind: str = "ec",
    ) -> Authority:
        """An intermediate CA issued by this one, naming ``ocsp_url`` and ``crl_url``."""
        issued = self.issue(
            f"{name} intermediate", ca=True, ocsp_url=ocsp_url, crl_url=crl_url, kind=kind
        )
        return Authority(name, issued.cert, issued.key)

    def revoke(
        self,
        cert: x509.Certificate,
        *,
        at: dt.datetime | None = None,
        reason: x509.ReasonFlags | None = x509.ReasonFlags.key_compromise,
        invalid_since: dt.datetime | None = None,
        delta: bool = False,
    ) -> None:
        when = at or now() - dt.timedelta(hours=1)
        (self.delta if delta else self.revoked)[cert.serial_number] = (when, reason, invalid_since)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: Key, *, days: int
) -> x509.CertificateBuilder:
    start = now() - dt.timedelta(days=1)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
    )


def _hash(key: Key) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(True, False, False, False, False, True, True, False, False)


def resigned(der: bytes, key: Key, *, invalid_since: dt.datetime | None = None) -> bytes:
    """The OCSP response ``der`` signed again with ``key``, with an invalidity date if given.

    cryptography builds response extensions but not single ones (RFC 6960 4.4.7 lets a
    responder carry CRL entry extensions there), so pyasn1 splices the date in.
    """
    outer, _ = decoder.decode(der, asn1Spec=rfc6960.OCSPResponse())
    basic, _ = decoder.decode(
        bytes(outer["responseBytes"]["response"]), asn1Spec=rfc6960.BasicOCSPResponse()
    )
    if invalid_since is not None:
        single = basic["tbsResponseData"]["responses"][0]
        extension = rfc5280.Extension()
        extension["extnID"] = rfc5280.id_ce_invalidityDate
        extension["critical"] = False
        when = invalid_since.astimezone(dt.UTC).strftime("%Y%m%d%H%M%SZ")
        extension["extnValue"] = univ.OctetString(encoder.encode(useful.GeneralizedTime(when)))
        single["singleExtensions"].append(extension)
    tbs = encoder.encode(basic["tbsResponseData"])
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(tbs)
    else:
        signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    basic["signature"] = univ.BitString.fromOctetString(signature)
    outer["responseBytes"]["response"] = univ.OctetString(encoder.encode(basic))
    return encoder.encode(outer)
