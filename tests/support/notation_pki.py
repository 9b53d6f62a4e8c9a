"""A test PKI for Notation: CAs, signing certificates, and a TSA making RFC 3161 tokens.

``Authority`` is a CA (a root, or an intermediate another issued) that
issues code-signing leaves and sub-CAs with whatever extensions a test
needs, including the wrong ones (a leaf that is a CA, serverAuth only, an
intermediate without basicConstraints). ``TimestampAuthority`` is a TSA
behind a root and an intermediate; ``token(message)`` is the DER
TimeStampToken (a CMS SignedData over a TSTInfo) a real TSA returns for the
hash of ``message``, with knobs for what an attacker would change: another
signer key, a forged or extra certificate in the bag, no
signing-certificate-v2 attribute, the time and accuracy. The tokens are
built with pyasn1-modules' RFC 5652 and RFC 3161 structures and verified in
the tests by trustgate, which parses them with rfc3161-client.

``envelope`` builds a parsed ``Envelope`` directly (the envelope parser is
tested apart, with real JWS and COSE signatures).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import univ, useful
from pyasn1_modules import rfc3161, rfc5035, rfc5280, rfc5652

from webhook.signatures.notation.model import PAYLOAD_TYPE, X509, Envelope, TargetDescriptor
from webhook.trust.notation.truststore import parse_certificates

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
FIXTURES = Path(__file__).parents[1] / "data" / "notation" / "timestamp"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = dt.timedelta(days=1)
_HASH_OIDS = {
    "sha256": "2.16.840.1.101.3.4.2.1",
    "sha384": "2.16.840.1.101.3.4.2.2",
    "sha512": "2.16.840.1.101.3.4.2.3",
}
_ECDSA_SHA256 = "1.2.840.10045.4.3.2"
_POLICY = "1.3.6.1.4.1.57264.99.1"


def key(kind: str = "ec256") -> PrivateKey:
    """A fresh key: ec256, ec384, ec521, rsa1024, rsa2048, rsa3072."""
    curves = {"ec256": ec.SECP256R1, "ec384": ec.SECP384R1, "ec521": ec.SECP521R1}
    if kind in curves:
        return ec.generate_private_key(curves[kind]())
    return rsa.generate_private_key(65537, int(kind.removeprefix("rsa")))


def name(cn: str, *, org: str = "acme-rabbits", **more: str) -> x509.Name:
    """C=US, ST=WA, L=Seattle, O=org, [OU=..], CN=cn, as Notation's examples spell subjects."""
    attributes = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "WA"),
        x509.NameAttribute(NameOID.LOCALITY_NAME, "Seattle"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
    ]
    for ou in more.get("ou", "").split("|") if more.get("ou") else []:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attributes)


def usage(*, sign: bool = False, cert_sign: bool = False, encipher: bool = False) -> x509.KeyUsage:
    """A keyUsage: digitalSignature, keyCertSign + cRLSign, keyEncipherment as asked."""
    return x509.KeyUsage(sign, False, encipher, False, False, cert_sign, cert_sign, False, False)


def issue(
    subject: x509.Name,
    public: Any,
    issuer: x509.Name,
    signer: PrivateKey,
    *,
    ca: bool | None = False,
    path_length: int | None = None,
    key_usage: x509.KeyUsage | None = None,
    key_usage_critical: bool = True,
    eku: Sequence[x509.ObjectIdentifier] | None = None,
    eku_critical: bool = False,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    digest: hashes.HashAlgorithm | None = None,
) -> x509.Certificate:
    """One certificate; ``ca=None`` leaves basicConstraints out, ``key_usage=None`` keyUsage."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start or NOW - DAY)
        .not_valid_after(end or NOW + 365 * DAY)
    )
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca, path_length), critical=True)
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=key_usage_critical)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=eku_critical)
    return builder.sign(signer, digest if digest is not None else hashes.SHA256())


@dataclass
class Authority:
    """A CA: its key, its certificate, and the chain above it (itself first)."""

    key: PrivateKey
    cert: x509.Certificate
    above: tuple[x509.Certificate, ...] = ()

    @classmethod
    def root(cls, cn: str = "wabbit root", kind: str = "ec256", **options: Any) -> Authority:
        """A self-signed root CA."""
        private = key(kind)
        subject = name(cn)
        options.setdefault("key_usage", usage(cert_sign=True))
        options.setdefault("ca", True)
        cert = issue(subject, private.public_key(), subject, private, **options)
        return cls(private, cert)

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """This CA's certificate and those above it, up to the root."""
        return (self.cert, *self.above)

    def intermediate(self, cn: str = "wabbit intermediate", **options: Any) -> Authority:
        """A sub-CA of this one (options as ``issue``: pass ca=False for a broken one)."""
        private = key(options.pop("kind", "ec256"))
        options.setdefault("key_usage", usage(cert_sign=True))
        options.setdefault("ca", True)
        cert = issue(name(cn), private.public_key(), self.cert.subject, self.key, **options)
        return Authority(private, cert, self.chain)

    def leaf(self, cn: str = "builder", **options: Any) -> Signing:
        """A code-signing certificate (keyUsage digitalSignature critical, EKU codeSigning)."""
        private = key(options.pop("kind", "ec256"))
        subject = options.pop("subject", None) or name(cn)
        options.setdefault("key_usage", usage(sign=True))
        options.setdefault("eku", [ExtendedKeyUsageOID.CODE_SIGNING])
        cert = issue(subject, private.public_key(), self.cert.subject, self.key, **options)
        return Signing(private, (cert, *self.chain))


@dataclass
class Signing:
    """A signing key and its chain, signing certificate first, root last."""

    key: PrivateKey
    chain: tuple[x509.Certificate, ...]


def self_signed(cn: str = "alpine", **options: Any) -> Signing:
    """A self-signed signing certificate (a store may trust it directly)."""
    private = key(options.pop("kind", "ec256"))
    subject = name(cn)
    options.setdefault("key_usage", usage(sign=True))
    options.setdefault("eku", [ExtendedKeyUsageOID.CODE_SIGNING])
    options.setdefault("ca", None)
    cert = issue(subject, private.public_key(), subject, private, **options)
    return Signing(private, (cert,))


def envelope(
    chain: Sequence[x509.Certificate],
    *,
    signature: bytes = b"\x30" * 64,
    scheme: str = X509,
    timestamp: bytes | None = None,
    expiry: dt.datetime | None = None,
    authentic_signing_time: dt.datetime | None = None,
) -> Envelope:
    """A parsed envelope of ``chain`` (the signature value is what a timestamp covers)."""
    return Envelope(
        media_type="application/jose+json",
        target=TargetDescriptor(PAYLOAD_TYPE, "sha256:" + "0" * 64, 1),
        signing_scheme=scheme,
        signature_algorithm="ECDSA-SHA-256",
        chain=tuple(chain),
        signature=signature,
        signing_time=NOW,
        authentic_signing_time=authentic_signing_time,
        expiry=expiry,
        timestamp=timestamp,
    )


@dataclass
class TimestampAuthority:
    """A TSA: a root, an intermediate, and a timestamping certificate, each valid a year."""

    name: str = "wabbit tsa"
    root: Authority = field(init=False)
    intermediate: Authority = field(init=False)
    key: PrivateKey = field(init=False)
    cert: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        self.root = Authority.root(f"{self.name} root")
        self.intermediate = self.root.intermediate(f"{self.name} CA")
        self.key = key()
        self.cert = self.issue_signer(self.key)
        self._serial = 1

    def issue_signer(self, private: PrivateKey, **options: Any) -> x509.Certificate:
        """A timestamping certificate for ``private``, issued by the intermediate."""
        options.setdefault("key_usage", usage(sign=True))
        options.setdefault("eku", [ExtendedKeyUsageOID.TIME_STAMPING])
        options.setdefault("eku_critical", True)
        return issue(
            name(self.name),
            private.public_key(),
            self.intermediate.cert.subject,
            self.intermediate.key,
            **options,
        )

    def token(
        self,
        message: bytes,
        *,
        when: dt.datetime | None = None,
        digest: str = "sha256",
        accuracy: tuple[int, int] | None = (1, 0),
        policy: str = _POLICY,
        signing_certificate: bool = True,
        signer: tuple[PrivateKey, x509.Certificate] | None = None,
        bag: Sequence[x509.Certificate] | None = None,
    ) -> bytes:
        """A DER TimeStampToken over ``message`` (its ``digest``), made at ``when``.

        ``signer`` replaces the TSA's key and certificate; ``bag`` the
        certificates the token carries (default: signer, intermediate, root).
        """
        private, cert = signer if signer is not None else (self.key, self.cert)
        if bag is None:
            bag = [cert, self.intermediate.cert, self.root.cert]
        self._serial += 1
        tst = _tst_info(message, when or NOW, digest, accuracy, policy, self._serial)
        attributes = [
            _attribute(rfc5652.id_contentType, rfc3161.id_ct_TSTInfo),
            _attribute(rfc5652.id_messageDigest, univ.OctetString(hashlib.sha256(tst).digest())),
        ]
        if signing_certificate:
            attributes.append(_signing_certificate(cert))
        return _signed_data(tst, attributes, private, cert, bag)


def _tst_info(
    message: bytes,
    when: dt.datetime,
    digest: str,
    accuracy: tuple[int, int] | None,
    policy: str,
    serial: int,
) -> bytes:
    info = rfc3161.TSTInfo()
    info["version"] = 1
    info["policy"] = univ.ObjectIdentifier(policy)
    imprint = info["messageImprint"]
    imprint["hashAlgorithm"]["algorithm"] = univ.ObjectIdentifier(_HASH_OIDS[digest])
    imprint["hashedMessage"] = hashlib.new(digest, message).digest()
    info["serialNumber"] = serial
    info["genTime"] = useful.GeneralizedTime(when.astimezone(dt.UTC).strftime("%Y%m%d%H%M%SZ"))
    if accuracy is not None:
        info["accuracy"]["seconds"] = accuracy[0]
        if accuracy[1]:
            info["accuracy"]["millis"] = accuracy[1]
    return der_encoder.encode(info)


def _attribute(kind: univ.ObjectIdentifier, value: Any) -> rfc5652.Attribute:
    attribute = rfc5652.Attribute()
    attribute["attrType"] = kind
    attribute["attrValues"].append(univ.Any(der_encoder.encode(value)))
    return attribute


def _signing_certificate(cert: x509.Certificate) -> rfc5652.Attribute:
    """signing-certificate-v2 (RFC 5035) naming ``cert`` by its SHA-256."""
    certificate_id = rfc5035.ESSCertIDv2()
    certificate_id["certHash"] = hashlib.sha256(cert.public_bytes(Encoding.DER)).digest()
    value = rfc5035.SigningCertificateV2()
    value["certs"].append(certificate_id)
    return _attribute(rfc5035.id_aa_signingCertificateV2, value)


def _signed_data(
    tst: bytes,
    attributes: list[rfc5652.Attribute],
    private: PrivateKey,
    cert: x509.Certificate,
    bag: Sequence[x509.Certificate],
) -> bytes:
    data = rfc5652.SignedData()
    data["version"] = 3
    sha256 = rfc5280.AlgorithmIdentifier()
    sha256["algorithm"] = univ.ObjectIdentifier(_HASH_OIDS["sha256"])
    data["digestAlgorithms"].append(sha256)
    data["encapContentInfo"]["eContentType"] = rfc3161.id_ct_TSTInfo
    data["encapContentInfo"]["eContent"] = tst
    for member in bag:
        choice = rfc5652.CertificateChoices()
        choice["certificate"] = der_decoder.decode(
            member.public_bytes(Encoding.DER), asn1Spec=rfc5280.Certificate()
        )[0]
        data["certificates"].append(choice)
    info = data["signerInfos"].getComponentByPosition(0, instantiate=True)
    info["version"] = 1
    sid = info["sid"]["issuerAndSerialNumber"]
    sid["issuer"] = der_decoder.decode(cert.issuer.public_bytes(), asn1Spec=rfc5280.Name())[0]
    sid["serialNumber"] = cert.serial_number
    info["digestAlgorithm"] = sha256
    for attribute in attributes:
        info["signedAttrs"].append(attribute)
    signed = bytearray(der_encoder.encode(info["signedAttrs"]))
    signed[0] = 0x31  # the signature covers the attributes as a SET, not as [0] IMPLICIT
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise TypeError("the test TSA signs with EC keys")
    signature = private.sign(bytes(signed), ec.ECDSA(hashes.SHA256()))
    info["signatureAlgorithm"]["algorithm"] = univ.ObjectIdentifier(_ECDSA_SHA256)
    info["signature"] = signature
    content = rfc5652.ContentInfo()
    content["contentType"] = rfc5652.id_signedData
    content["content"] = univ.Any(der_encoder.encode(data))
    return der_encoder.encode(content)


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def real_jws(name: str) -> tuple[bytes, bytes, list[x509.Certificate]]:
    """(timestamp token, signature value, certificate chain) of a notation-go JWS fixture."""
    envelope = json.loads((FIXTURES / name).read_bytes())
    header = envelope["header"]
    token = base64.b64decode(header["io.cncf.notary.timestampSignature"])
    chain = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in header["x5c"]]
    return token, _b64url(envelope["signature"]), chain


def fixture_certificates(name: str) -> tuple[x509.Certificate, ...]:
    """The certificates of a fixture file, as a trust store reads them."""
    return parse_certificates((FIXTURES / name).read_bytes(), name)
