"""RFC 3161 countersignatures: real GlobalSign tokens, and every way a token can lie."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from tests.support.notation_pki import DAY, FIXTURES, NOW, TimestampAuthority, key, real_jws
from tests.support.notation_pki import fixture_certificates as store
from webhook.signatures.notation.model import NotationError
from webhook.signatures.notation.timestamps import MAX_TOKEN_BYTES, verify_timestamp

#: The fixtures as copied from notation-go (README.md there): byte-exact.
DIGESTS = {
    "jwsWithTimestamp.sig": "e35cc96b32bda7060fd4d7fde07486fdc21c8b0c6a7bebe9afc5999b14db76bd",
    "jwsExpiredWithTimestamp.sig": (
        "94cbaafe2160ebf0ef4b60de911af5970ebb106b61ede8d698f7f952a5004f6f"
    ),
    "globalsignRoot.cer": "2cabeafe37d06ca22aba7391c0033d25982952c453647349763a3ab5ad6ccf69",
    "TestTimestamp.crt": "714cc493189e86b383095b0c6f23ac0d110290c2640b7a913e73beb427fa0805",
    "DigiCertTSARootSHA384.cer": "552f7bdcf1a7af9e6ce672017f4f12abf77240c78e761ac203d1d9d20ac89988",
}
SIGNATURE = b"the signature value of an envelope"


@pytest.fixture(scope="module")
def tsa() -> TimestampAuthority:
    return TimestampAuthority()


def test_the_fixtures_are_byte_exact() -> None:
    for name, digest in DIGESTS.items():
        assert hashlib.sha256((FIXTURES / name).read_bytes()).hexdigest() == digest, name


@pytest.mark.parametrize(
    ("name", "when"),
    [
        ("jwsWithTimestamp.sig", "2024-06-18T06:29:37"),
        ("jwsExpiredWithTimestamp.sig", "2024-06-18T07:21:42"),
    ],
)
def test_real_globalsign_tokens_verify(name: str, when: str) -> None:
    # GlobalSign's tokens hold their certificates out of DER order; they verify all the same.
    token, signature, _ = real_jws(name)
    stamp = verify_timestamp(token, signature, store("globalsignRoot.cer"))
    assert stamp.time.isoformat() == when + "+00:00"
    assert (stamp.latest - stamp.time).total_seconds() == 1  # the token's accuracy
    assert stamp.authority.startswith("CN=Globalsign TSA for Advanced - G4")
    assert [c.subject.rfc4514_string() for c in stamp.chain][-1].startswith("CN=GlobalSign")


def test_a_real_token_under_another_tsa_root_is_refused() -> None:
    token, signature, _ = real_jws("jwsWithTimestamp.sig")
    with pytest.raises(NotationError, match="does not chain to the trust store"):
        verify_timestamp(token, signature, store("DigiCertTSARootSHA384.cer"))


def test_a_real_token_for_another_signature_is_refused() -> None:
    token, _, _ = real_jws("jwsWithTimestamp.sig")
    _, other, _ = real_jws("jwsExpiredWithTimestamp.sig")
    with pytest.raises(NotationError, match="for another signature"):
        verify_timestamp(token, other, store("globalsignRoot.cer"))


@pytest.mark.parametrize("digest", ["sha256", "sha384", "sha512"])
def test_test_tokens_verify_with_each_hash(tsa: TimestampAuthority, digest: str) -> None:
    stamp = verify_timestamp(tsa.token(SIGNATURE, digest=digest), SIGNATURE, [tsa.root.cert])
    assert stamp.time == NOW
    assert stamp.chain == (tsa.cert, tsa.intermediate.cert, tsa.root.cert)


@pytest.mark.parametrize(
    ("accuracy", "policy", "seconds"),
    [
        ((2, 500), "1.3.6.1.4.1.57264.99.1", 2.5),
        (None, "1.3.6.1.4.1.57264.99.1", 0),
        (None, "0.4.0.2023.1.1", 1),  # RFC 3628's baseline policy: 1 s when unstated
    ],
)
def test_the_accuracy_bounds_the_time(
    tsa: TimestampAuthority, accuracy: tuple[int, int] | None, policy: str, seconds: float
) -> None:
    stamp = verify_timestamp(
        tsa.token(SIGNATURE, accuracy=accuracy, policy=policy), SIGNATURE, [tsa.root.cert]
    )
    assert (stamp.latest - stamp.time).total_seconds() == seconds
    assert (stamp.time - stamp.earliest).total_seconds() == seconds


def _forged_signer(tsa: TimestampAuthority) -> bytes:
    """A token signed by an attacker's key, under a certificate copying the TSA's names and
    serial, claiming the TSA's intermediate as issuer but signed by the attacker."""
    private = key()
    genuine = tsa.cert
    forged = (
        x509.CertificateBuilder()
        .subject_name(genuine.subject)
        .issuer_name(genuine.issuer)
        .public_key(private.public_key())
        .serial_number(genuine.serial_number)
        .not_valid_before(genuine.not_valid_before_utc)
        .not_valid_after(genuine.not_valid_after_utc)
    )
    for extension in genuine.extensions:
        forged = forged.add_extension(extension.value, extension.critical)
    cert = forged.sign(private, hashes.SHA256())
    bag = [cert, tsa.intermediate.cert, tsa.root.cert]
    return tsa.token(SIGNATURE, signer=(private, cert), bag=bag)


def _token_by(tsa: TimestampAuthority, **options: object) -> bytes:
    """A token by a new key, certified by the TSA's intermediate with ``options``."""
    private = key()
    return tsa.token(SIGNATURE, signer=(private, tsa.issue_signer(private, **options)))


def _another_tsa_behind_ours(tsa: TimestampAuthority) -> bytes:
    """A genuine token of an untrusted TSA, the trusted TSA's certificates first in its bag.

    rfc3161-client before 1.0.6 took the bag's first certificate as the signer's.
    """
    other = TimestampAuthority("other tsa")
    bag = [tsa.cert, tsa.intermediate.cert, tsa.root.cert, other.cert, other.intermediate.cert]
    return other.token(SIGNATURE, bag=bag)


HOSTILE: list[tuple[str, Callable[[TimestampAuthority], bytes], str]] = [
    (
        "a token for another signature",
        lambda t: t.token(b"another signature"),
        "for another signature",
    ),
    (
        "a forged certificate in the bag, and the token signed by its key",
        _forged_signer,
        "does not chain to the trust store",
    ),
    (
        "a forged certificate with the signer's issuer and serial before the genuine one",
        lambda t: t.token(
            SIGNATURE,
            bag=[
                x509.load_der_x509_certificate(_forged_bag_member(t)),
                t.cert,
                t.intermediate.cert,
                t.root.cert,
            ],
        ),
        "does not hold its signer's certificate exactly once",
    ),
    (
        "a token of a TSA not in the store",
        lambda t: TimestampAuthority("other tsa").token(SIGNATURE),
        "does not chain to the trust store",
    ),
    (
        "another TSA's token with the trusted TSA's certificates put first in the bag",
        _another_tsa_behind_ours,
        "does not chain to the trust store",
    ),
    (
        "a token whose signer certificate is missing from the bag",
        lambda t: t.token(SIGNATURE, bag=[t.intermediate.cert, t.root.cert]),
        "does not hold its signer's certificate",
    ),
    (
        "a token without signing-certificate-v2",
        lambda t: t.token(SIGNATURE, signing_certificate=False),
        "no signing-certificate-v2 attribute",
    ),
    (
        "a TSA certificate without the timeStamping usage",
        lambda t: _token_by(t, eku=[x509.ObjectIdentifier("1.3.6.1.5.5.7.3.3")]),
        "must have timeStamping",
    ),
    (
        "a token made when the TSA certificate was not yet valid",
        lambda t: t.token(SIGNATURE, when=NOW - 30 * DAY),
        "not valid at validation time",
    ),
]


def _forged_bag_member(tsa: TimestampAuthority) -> bytes:
    """A self-made certificate with the genuine TSA certificate's issuer and serial."""
    private = key()
    genuine = tsa.cert
    forged = (
        x509.CertificateBuilder()
        .subject_name(genuine.subject)
        .issuer_name(genuine.issuer)
        .public_key(private.public_key())
        .serial_number(genuine.serial_number)
        .not_valid_before(genuine.not_valid_before_utc)
        .not_valid_after(genuine.not_valid_after_utc)
        .sign(private, hashes.SHA256())
    )
    return forged.public_bytes(Encoding.DER)


@pytest.mark.parametrize(("case", "make", "message"), HOSTILE, ids=[c for c, _, _ in HOSTILE])
def test_hostile_tokens_are_refused(
    case: str, make: Callable[[TimestampAuthority], bytes], message: str, tsa: TimestampAuthority
) -> None:
    with pytest.raises(NotationError, match=message):
        verify_timestamp(make(tsa), SIGNATURE, [tsa.root.cert])


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (b"", "not an RFC 3161 TimeStampToken"),
        (b"\x30\x03\x02\x01\x01", "not an RFC 3161 TimeStampToken"),
        (b"garbage" * 10, "not an RFC 3161 TimeStampToken"),
        (b"\x30" + b"\x84\xff\xff\xff\xff", "not an RFC 3161 TimeStampToken"),
        (b"\x30" * (MAX_TOKEN_BYTES + 1), f"over {MAX_TOKEN_BYTES} bytes"),
        (b"\x30\x80" * 30000, "not an RFC 3161 TimeStampToken"),  # nested indefinite lengths
    ],
)
def test_malformed_tokens_are_refused(tsa: TimestampAuthority, token: bytes, message: str) -> None:
    with pytest.raises(NotationError, match=message):
        verify_timestamp(token, SIGNATURE, [tsa.root.cert])


def test_a_token_with_trailing_bytes_is_refused(tsa: TimestampAuthority) -> None:
    with pytest.raises(NotationError, match=r"not a CMS SignedData|trailing"):
        verify_timestamp(tsa.token(SIGNATURE) + b"\x00", SIGNATURE, [tsa.root.cert])


def test_a_signed_attribute_changed_after_signing_is_refused(tsa: TimestampAuthority) -> None:
    token = bytearray(tsa.token(SIGNATURE))
    index = token.index(hashlib.sha256(tsa.cert.public_bytes(Encoding.DER)).digest())
    token[index] ^= 1
    with pytest.raises(NotationError, match="signing-certificate-v2 attribute names another"):
        verify_timestamp(bytes(token), SIGNATURE, [tsa.root.cert])


def test_a_time_changed_after_signing_is_refused(tsa: TimestampAuthority) -> None:
    token = bytearray(tsa.token(SIGNATURE, when=NOW.replace(second=10)))
    moment = NOW.replace(second=10).strftime("%Y%m%d%H%M%SZ").encode()
    index = token.index(moment)
    token[index + 13] = ord("1")  # ...10Z -> ...11Z: the CMS signature no longer matches
    with pytest.raises(NotationError, match="timestamp's signature does not verify"):
        verify_timestamp(bytes(token), SIGNATURE, [tsa.root.cert])


def test_no_tsa_in_the_store(tsa: TimestampAuthority) -> None:
    with pytest.raises(NotationError, match="the policy trusts no TSA"):
        verify_timestamp(tsa.token(SIGNATURE), SIGNATURE, [])
