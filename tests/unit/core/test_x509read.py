"""Certificates read from outside: what cryptography raises, caught in one tuple."""

from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.support.oddcerts import ODD_CASES, odd_certificates, odd_pem
from tests.support.sigstore_instance import Identity, SigstoreInstance
from webhook.core.x509read import CERTIFICATE_ERRORS, load_der, load_pem, load_pem_all, readable

#: What cryptography raises for each case: none of them a ValueError.
RAISES = {
    "an unknown X.509 version": x509.InvalidVersion,
    "a SAN given twice": x509.DuplicateExtension,
    "an x400Address SAN": x509.UnsupportedGeneralNameType,
}


@pytest.mark.parametrize("case", ODD_CASES)
def test_the_odd_certificates_raise_no_value_error(case: str) -> None:
    # Why the tuple exists: catching ValueError alone lets each of these out.
    assert not issubclass(RAISES[case], ValueError)
    with pytest.raises(RAISES[case]):
        readable(x509.load_der_x509_certificate(odd_certificates()[case]))


@pytest.mark.parametrize("case", ODD_CASES)
def test_every_loader_raises_one_of_the_tuple_at_load(case: str) -> None:
    pem = odd_pem(case)
    for load, data in ((load_der, odd_certificates()[case]), (load_pem, pem)):
        with pytest.raises(CERTIFICATE_ERRORS) as caught:
            load(data)
        assert isinstance(caught.value, RAISES[case])
    with pytest.raises(RAISES[case]):
        load_pem_all(pem)


def test_a_readable_certificate_loads_in_every_form() -> None:
    cert, _ = SigstoreInstance().ca.issue(Identity("dev@acme.test", "https://accounts.test"))
    der = cert.public_bytes(Encoding.DER)
    pem = cert.public_bytes(Encoding.PEM)
    assert load_der(der) == cert and load_pem(pem) == cert
    assert load_pem_all(pem + pem) == [cert, cert]
    assert readable(cert) is cert


@pytest.mark.parametrize("data", [b"", b"garbage", base64.b64encode(b"\x30\x03\x02\x01\x01")])
def test_garbage_is_a_value_error_in_the_tuple(data: bytes) -> None:
    for load in (load_der, load_pem, load_pem_all):
        with pytest.raises(CERTIFICATE_ERRORS):
            load(data)
