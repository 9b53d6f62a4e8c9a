"""Public key loading and raw signature verification."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, padding, rsa

from tests.support.cosign import KEY_KINDS, KeyKind, generate_key, public_pem, sign
from webhook.core.errors import PolicyError
from webhook.trust.keys import describe, load_public_key, verify

DATA = b"the exact bytes that were signed"


def _pem(public: object) -> bytes:
    assert hasattr(public, "public_bytes")
    encoded: bytes = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return encoded


@pytest.mark.parametrize(
    ("kind", "described"),
    [
        ("ecdsa-p256", "ECDSA P-256"),
        ("ecdsa-p384", "ECDSA P-384"),
        ("ecdsa-p521", "ECDSA P-521"),
        ("rsa", "RSA 2048"),
        ("ed25519", "Ed25519"),
    ],
)
def test_accepted_kinds_load_and_verify(kind: KeyKind, described: str) -> None:
    private = generate_key(kind)
    key = load_public_key(public_pem(private), source="keys/release.pub")
    assert describe(key) == described
    signature = sign(private, DATA)
    assert verify(key, signature, DATA)
    assert not verify(key, signature, DATA + b"!")
    assert not verify(key, signature[:-1] + bytes([signature[-1] ^ 1]), DATA)


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_wrong_key_does_not_verify(kind: KeyKind) -> None:
    signature = sign(generate_key(kind), DATA)
    other = load_public_key(public_pem(generate_key(kind)), source="other")
    assert not verify(other, signature, DATA)


@pytest.mark.parametrize("signature", [b"", b"\x00", b"not a signature at all", b"\x30" * 200])
@pytest.mark.parametrize("kind", KEY_KINDS)
def test_malformed_signatures_return_false(kind: KeyKind, signature: bytes) -> None:
    key = load_public_key(public_pem(generate_key(kind)), source="k")
    assert verify(key, signature, DATA) is False


@pytest.mark.parametrize(
    ("curve", "algorithm"),
    [
        (ec.SECP256R1(), hashes.SHA256()),
        (ec.SECP384R1(), hashes.SHA384()),
        (ec.SECP384R1(), hashes.SHA256()),
        (ec.SECP521R1(), hashes.SHA512()),
        (ec.SECP521R1(), hashes.SHA256()),
    ],
)
def test_ecdsa_hashes_accepted(curve: ec.EllipticCurve, algorithm: hashes.HashAlgorithm) -> None:
    private = ec.generate_private_key(curve)
    key = load_public_key(_pem(private.public_key()), source="k")
    assert verify(key, private.sign(DATA, ec.ECDSA(algorithm)), DATA)


@pytest.mark.parametrize(
    ("curve", "algorithm"),
    [(ec.SECP256R1(), hashes.SHA384()), (ec.SECP256R1(), hashes.SHA512())],
)
def test_p256_accepts_only_sha256(curve: ec.EllipticCurve, algorithm: hashes.HashAlgorithm) -> None:
    private = ec.generate_private_key(curve)
    key = load_public_key(_pem(private.public_key()), source="k")
    assert not verify(key, private.sign(DATA, ec.ECDSA(algorithm)), DATA)


def test_rsa_pss_and_pkcs1_accepted_but_not_sha1() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key = load_public_key(_pem(private.public_key()), source="k")
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
    assert verify(key, private.sign(DATA, pss, hashes.SHA256()), DATA)
    assert verify(key, private.sign(DATA, padding.PKCS1v15(), hashes.SHA256()), DATA)
    assert not verify(key, private.sign(DATA, padding.PKCS1v15(), hashes.SHA1()), DATA)


def test_real_cosign_public_key_loads() -> None:
    with open("tests/data/cosign/busybox.pub", "rb") as file:
        key = load_public_key(file.read(), source="busybox.pub")
    assert describe(key) == "ECDSA P-256"


def _rejected() -> list[tuple[str, bytes | str, str]]:
    p224 = ec.generate_private_key(ec.SECP224R1())
    k256 = ec.generate_private_key(ec.SECP256K1())
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    big = rsa.generate_private_key(public_exponent=65537, key_size=4104)
    dsa_key = dsa.generate_private_key(key_size=2048)
    ed448_key = ed448.Ed448PrivateKey.generate()
    private_pem = generate_key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    valid = public_pem(generate_key())
    return [
        ("p224", _pem(p224.public_key()), "EC curve secp224r1 is not accepted"),
        ("secp256k1", _pem(k256.public_key()), "EC curve secp256k1 is not accepted"),
        ("rsa1024", _pem(small.public_key()), "RSA key of 1024 bits is not accepted"),
        ("rsa4104", _pem(big.public_key()), "RSA key of 4104 bits is not accepted"),
        ("dsa", _pem(dsa_key.public_key()), "DSA keys are not accepted"),
        ("ed448", _pem(ed448_key.public_key()), "Ed448 keys are not accepted"),
        ("private", private_pem, r"is a private key \(PRIVATE KEY\); give the public key"),
        ("garbage", "not a key", "no PEM block found"),
        ("empty", b"", "no PEM block found"),
        ("two", valid + valid, "2 PEM blocks found; expected exactly one PUBLIC KEY"),
        (
            "certificate",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            "PEM block is CERTIFICATE, not PUBLIC KEY",
        ),
        (
            "corrupt",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            "PUBLIC KEY block is not a valid public key",
        ),
    ]


REJECTED = _rejected()


@pytest.mark.parametrize(("name", "pem", "message"), REJECTED, ids=[r[0] for r in REJECTED])
def test_rejected_keys_name_the_source(name: str, pem: bytes | str, message: str) -> None:
    with pytest.raises(PolicyError, match=rf"^authority release \({name}\): {message}"):
        load_public_key(pem, source=f"authority release ({name})")


def test_rejection_never_echoes_key_material() -> None:
    private_pem = generate_key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(PolicyError) as caught:
        load_public_key(private_pem, source="k")
    body = private_pem.decode().splitlines()[1]
    assert body not in str(caught.value)
