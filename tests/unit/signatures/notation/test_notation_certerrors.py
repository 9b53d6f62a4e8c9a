"""Notation's certificates that cryptography cannot read are refusals, not crashes.

The certificates of tests/support/oddcerts.py (unknown X.509 version, an
extension twice, an x400Address SAN) raise exceptions that are no ValueError,
two of them only when the extensions are first read. An envelope's chain, a
timestamp token's certificate bag, an OCSP responder's certificate and a
trust store file must each refuse them in their own words.
"""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp as x509_ocsp

from tests.support.notation_pki import TimestampAuthority
from tests.support.notation_revocation_pki import Authority, now
from tests.support.oddcerts import ODD_CASES, odd_certificates, odd_key, odd_pem
from webhook.core.errors import PolicyError
from webhook.signatures.notation.attributes import read_chain
from webhook.signatures.notation.certstatus import Unavailable
from webhook.signatures.notation.model import NotationError
from webhook.signatures.notation.ocsp import read_response, request_for
from webhook.signatures.notation.timestamps import verify_timestamp
from webhook.trust.notation.truststore import parse_certificates

SIGNATURE = b"the signature the token is about"
#: The cases that load, their extensions unread (an unknown version fails at load).
LAZY = ODD_CASES[1:]


@pytest.mark.parametrize("case", ODD_CASES)
def test_an_envelope_chain_with_an_unreadable_certificate_is_refused(case: str) -> None:
    good = Authority.root("chain").cert.public_bytes(Encoding.DER)
    with pytest.raises(NotationError, match=r"certificate 2 of the chain is not a DER X\.509 "):
        read_chain([good, odd_certificates()[case]])


@pytest.mark.parametrize("case", LAZY)
def test_a_timestamp_bag_with_an_unreadable_certificate_is_refused(case: str) -> None:
    tsa = TimestampAuthority("odd tsa")
    odd = x509.load_der_x509_certificate(odd_certificates()[case])
    token = tsa.token(SIGNATURE, bag=[tsa.cert, odd, tsa.intermediate.cert, tsa.root.cert])
    with pytest.raises(NotationError, match="certificate that cannot be read"):
        verify_timestamp(token, SIGNATURE, [tsa.root.cert])


@pytest.mark.parametrize("case", LAZY)
def test_an_ocsp_responder_certificate_that_cannot_be_read_is_unavailable(case: str) -> None:
    ca = Authority.root("ocsp")
    leaf = ca.issue("signer")
    odd = x509.load_der_x509_certificate(odd_certificates()[case])
    builder = (
        x509_ocsp.OCSPResponseBuilder()
        .add_response(
            leaf.cert,
            ca.cert,
            hashes.SHA1(),
            x509_ocsp.OCSPCertStatus.GOOD,
            now(),
            now() + dt.timedelta(days=1),
            None,
            None,
        )
        .responder_id(x509_ocsp.OCSPResponderEncoding.NAME, odd)
        .certificates([odd])
    )
    der = builder.sign(odd_key(), hashes.SHA256()).public_bytes(Encoding.DER)
    with pytest.raises(Unavailable, match="the OCSP response is malformed"):
        read_response(
            der,
            request_for(leaf.cert, ca.cert),
            ca.cert,
            source="http://ocsp.test",
            now=now(),
            skew=dt.timedelta(minutes=5),
            check_responder=lambda responder, issuer: None,
        )


@pytest.mark.parametrize("case", ODD_CASES)
@pytest.mark.parametrize("form", ["der", "pem"])
def test_a_trust_store_file_of_an_unreadable_certificate_is_a_policy_error(
    case: str, form: str
) -> None:
    data = odd_pem(case) if form == "pem" else odd_certificates()[case]
    with pytest.raises(PolicyError, match=r"^store/odd\.crt: ") as caught:
        parse_certificates(data, "store/odd.crt")
    assert "cryptography" in str(caught.value) or "CERTIFICATE block" in str(caught.value)
