"""OCSP requests and responses, sans-I/O: which responses are believed, and what they say.

The responses are real DER from cryptography's builder; the cases its builder cannot make
(several single responses, a signature by another key) are spliced with pyasn1 and signed
again, as ``tests/support/notation_revocation.resigned`` does.
"""

from __future__ import annotations

import base64
import datetime as dt
from urllib.parse import unquote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp as x509_ocsp
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import univ
from pyasn1_modules import rfc6960

from tests.support.notation_revocation_pki import Authority, Issued, Key, now, resigned
from webhook.signatures.notation.certstatus import Unavailable
from webhook.signatures.notation.ocsp import read_response, request_for, request_url

SKEW = dt.timedelta(minutes=5)
GOOD = x509_ocsp.OCSPCertStatus.GOOD
REVOKED = x509_ocsp.OCSPCertStatus.REVOKED


def response(
    ca: Authority,
    cert: x509.Certificate,
    status: x509_ocsp.OCSPCertStatus = GOOD,
    *,
    signer: Issued | None = None,
    encoding: x509_ocsp.OCSPResponderEncoding = x509_ocsp.OCSPResponderEncoding.NAME,
) -> bytes:
    at = now() - dt.timedelta(hours=1) if status is REVOKED else None
    reason = x509.ReasonFlags.key_compromise if status is REVOKED else None
    builder = x509_ocsp.OCSPResponseBuilder().add_response(
        cert, ca.cert, hashes.SHA1(), status, now(), now() + dt.timedelta(days=1), at, reason
    )
    signing = signer or Issued(ca.cert, ca.key)
    builder = builder.responder_id(encoding, signing.cert)
    if signer is not None:
        builder = builder.certificates([signer.cert])
    algorithm = None if isinstance(signing.key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signing.key, algorithm).public_bytes(Encoding.DER)


def read(der: bytes, cert: x509.Certificate, ca: Authority, **checks: object) -> bool:
    checked: list[x509.Certificate] = []
    finding = read_response(
        der,
        request_for(cert, ca.cert),
        ca.cert,
        source="http://ocsp.test",
        now=now(),
        skew=SKEW,
        check_responder=lambda responder, issuer: checked.append(responder),
    )
    assert checks.get("checked", []) == checked
    return finding.revoked


def test_the_request_url_is_the_url_encoded_base64_der() -> None:
    ca = Authority.root("url")
    leaf = ca.issue("signer")
    request = request_for(leaf.cert, ca.cert)
    for base in ("http://ocsp.test", "http://ocsp.test/"):
        url = request_url(base, request)
        assert url.startswith("http://ocsp.test/") and "//" not in url[7:]
        encoded = url.removeprefix("http://ocsp.test/")
        assert "/" not in encoded and "+" not in encoded and "=" not in encoded
        assert base64.b64decode(unquote(encoded)) == request.public_bytes(Encoding.DER)
    assert request.hash_algorithm.name == "sha1"
    assert request.serial_number == leaf.cert.serial_number
    assert len(request_url("http://o.test", request)) < 255 + len("http://o.test/")


@pytest.mark.parametrize("encoding", list(x509_ocsp.OCSPResponderEncoding))
def test_the_issuer_named_either_way_signs(encoding: x509_ocsp.OCSPResponderEncoding) -> None:
    ca = Authority.root("either")
    leaf = ca.issue("signer")
    assert read(response(ca, leaf.cert, REVOKED, encoding=encoding), leaf.cert, ca)
    assert not read(response(ca, leaf.cert, encoding=encoding), leaf.cert, ca)


def test_ed25519_responders_are_verified() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "edwards")])
    start = now() - dt.timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=9))
        .sign(key, None)
    )
    ed = Authority("edwards", cert, key)
    leaf = ed.issue("signer")
    assert read(response(ed, leaf.cert, REVOKED), leaf.cert, ed)


def test_a_delegated_responder_without_nocheck_is_handed_to_the_check() -> None:
    ca = Authority.root("delegating")
    leaf = ca.issue("signer")
    responder = ca.issue("responder", eku=x509.ExtendedKeyUsageOID.OCSP_SIGNING)
    der = response(ca, leaf.cert, signer=responder)
    assert not read(der, leaf.cert, ca, checked=[responder.cert])


def test_an_expired_delegated_responder_is_refused() -> None:
    ca = Authority.root("expired")
    leaf = ca.issue("signer")
    responder = ca.issue("responder", eku=x509.ExtendedKeyUsageOID.OCSP_SIGNING, days=0)
    with pytest.raises(Unavailable, match="is not valid now"):
        read(response(ca, leaf.cert, signer=responder), leaf.cert, ca)


def _merged(first: bytes, second: bytes, key: Key) -> bytes:
    """``first`` with the single response of ``second`` appended, signed again."""
    outer, _ = decoder.decode(first, asn1Spec=rfc6960.OCSPResponse())
    basic, _ = decoder.decode(
        bytes(outer["responseBytes"]["response"]), asn1Spec=rfc6960.BasicOCSPResponse()
    )
    other, _ = decoder.decode(second, asn1Spec=rfc6960.OCSPResponse())
    other_basic, _ = decoder.decode(
        bytes(other["responseBytes"]["response"]), asn1Spec=rfc6960.BasicOCSPResponse()
    )
    basic["tbsResponseData"]["responses"].append(other_basic["tbsResponseData"]["responses"][0])
    outer["responseBytes"]["response"] = univ.OctetString(encoder.encode(basic))
    return resigned(encoder.encode(outer), key)


def test_among_several_single_responses_the_one_asked_about_counts() -> None:
    ca = Authority.root("several")
    leaf, other = ca.issue("signer"), ca.issue("other")
    der = _merged(response(ca, other.cert, REVOKED), response(ca, leaf.cert), ca.key)
    assert len(list(x509_ocsp.load_der_ocsp_response(der).responses)) == 2
    assert not read(der, leaf.cert, ca)
    assert read(der, other.cert, ca)


def test_a_response_about_another_issuers_certificate_of_the_same_serial_is_refused() -> None:
    ca, twin = Authority.root("one"), Authority.root("two")
    leaf = ca.issue("signer")
    forged = twin.issue("forged")
    with pytest.raises(Unavailable, match="about another certificate"):
        read(response(twin, forged.cert, REVOKED), leaf.cert, ca)


def test_a_response_signed_by_another_key_in_the_issuers_name_is_refused() -> None:
    ca, stranger = Authority.root("named"), Authority.root("stranger")
    leaf = ca.issue("signer")
    forged = resigned(response(ca, leaf.cert, REVOKED), stranger.key)
    with pytest.raises(Unavailable, match="signature does not verify with the key of"):
        read(forged, leaf.cert, ca)
