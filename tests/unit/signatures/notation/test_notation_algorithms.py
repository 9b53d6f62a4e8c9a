"""The six algorithms, which key each fits, and the check of one signature."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from tests.support import notation as signer
from webhook.signatures.notation import algorithms
from webhook.signatures.notation.model import NotationError

DATA = b"the signing input"


def _leaf(kind: str) -> x509.Certificate:
    return signer.signing_chain(kind).certificates[0]


@pytest.mark.parametrize(("kind", "name"), list(signer.KEY_KINDS.items()))
def test_each_allowed_key_signs_with_one_algorithm(kind: str, name: str) -> None:
    assert algorithms.for_certificate(_leaf(kind)).name == name
    algorithm = algorithms.named(name, "alg")
    algorithms.check_fit(algorithm, _leaf(kind))
    signature = signer.raw_signature(signer.signing_chain(kind).key, name, DATA)
    algorithms.verify(algorithm, _leaf(kind), signature, DATA)
    with pytest.raises(
        NotationError, match=f"does not verify with the signing certificate's key under {name}"
    ):
        algorithms.verify(algorithm, _leaf(kind), signature, DATA + b".")


@pytest.mark.parametrize(
    ("kind", "described"),
    [
        ("rsa1024", "an RSA 1024-bit key"),
        ("rsa2560", "an RSA 2560-bit key"),
        ("p192", "an EC secp192r1 key"),
        ("k256", "an EC secp256k1 key"),
    ],
)
def test_keys_off_the_list_are_refused(kind: str, described: str) -> None:
    with pytest.raises(
        NotationError, match=f"the signing certificate has {described}, which the Notary Project"
    ):
        algorithms.for_certificate(_leaf(kind))


def test_an_ed25519_key_is_refused() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "ed")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2034, 1, 1, tzinfo=dt.UTC))
        .sign(key, None)
    )
    with pytest.raises(NotationError, match="has an Ed25519 key, which the Notary Project"):
        algorithms.for_certificate(certificate)


@pytest.mark.parametrize(
    ("alg", "reason"),
    [
        ("RS256", "RSASSA-PKCS1-v1_5"),
        ("none", "an unsigned JWS"),
        ("HS512", "HMAC, a symmetric algorithm"),
        ("EdDSA", "EdDSA"),
        ("ES256K", "ECDSA on secp256k1"),
        (-257, "RSASSA-PKCS1-v1_5"),
        (-8, "EdDSA"),
    ],
)
def test_refused_algorithms_say_what_they_are(alg: object, reason: str) -> None:
    with pytest.raises(
        NotationError,
        match=rf"alg is .* \({reason}\), which the Notary Project signature specification "
        "does not allow",
    ):
        algorithms.named(alg, "alg")


@pytest.mark.parametrize("alg", ["ps256", "PS1024", "", -1, None])
def test_unknown_algorithms_are_refused(alg: object) -> None:
    with pytest.raises(NotationError, match="does not allow: only RSASSA-PSS"):
        algorithms.named(alg, "alg")


def test_cose_identifiers_name_the_same_algorithms() -> None:
    assert {
        algorithms.named(name, "alg").name for name in algorithms.COSE_ALGORITHMS.values()
    } == set(signer.KEY_KINDS.values())
    assert {
        identifier: name for name, identifier in signer.COSE_ALGS.items()
    } == algorithms.COSE_ALGORITHMS


def test_the_header_must_name_the_keys_algorithm() -> None:
    with pytest.raises(
        NotationError,
        match=r"PS512 .* does not fit the signing certificate, which has an RSA 2048-bit key "
        "and signs with PS256",
    ):
        algorithms.check_fit(algorithms.ALGORITHMS["PS512"], _leaf("rsa2048"))
    with pytest.raises(
        NotationError, match=r"ES512 .* does not fit .* an EC secp256r1 key and signs with ES256"
    ):
        algorithms.check_fit(algorithms.ALGORITHMS["ES512"], _leaf("p256"))


def test_rsa_signatures_must_be_pss_with_a_hash_long_salt() -> None:
    key = signer.signing_chain("rsa2048").key
    assert isinstance(key, rsa.RSAPrivateKey)
    algorithm = algorithms.ALGORITHMS["PS256"]
    digest = hashes.SHA256()
    pads: list[padding.AsymmetricPadding] = [
        padding.PKCS1v15(),
        padding.PSS(mgf=padding.MGF1(digest), salt_length=padding.PSS.MAX_LENGTH),
    ]
    for pad in pads:
        signature = key.sign(DATA, pad, digest)
        with pytest.raises(NotationError, match="does not verify"):
            algorithms.verify(algorithm, _leaf("rsa2048"), signature, DATA)


def test_ecdsa_signatures_are_fixed_width_r_and_s_not_der() -> None:
    key = signer.signing_chain("p256").key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    der = key.sign(DATA, ec.ECDSA(hashes.SHA256()))
    algorithm = algorithms.ALGORITHMS["ES256"]
    for signature in (der, b"\x00" * 63, b"\x00" * 65, b""):
        with pytest.raises(NotationError, match="does not verify"):
            algorithms.verify(algorithm, _leaf("p256"), signature, DATA)
