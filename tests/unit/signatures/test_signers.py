"""Distinct signers: one key or one identity counts once toward a threshold."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from tests.support.cosign import generate_key, public_pem
from tests.support.sigstore_instance import Identity, SigstoreInstance
from webhook.signatures.signers import (
    Count,
    Signer,
    certificate_signer,
    count_distinct,
    key_signer,
)
from webhook.trust.keys import key_fingerprint

INSTANCE = SigstoreInstance()
ISSUER = "https://token.actions.githubusercontent.com"
RELEASE = "https://github.com/acme/api/.github/workflows/release.yml@refs/tags/v1"
DEPLOY = "https://github.com/acme/api/.github/workflows/deploy.yml@refs/tags/v1"


def signer(*tokens: str) -> Signer:
    return Signer(frozenset(tokens), f"signer {'+'.join(tokens)}")


A, B, C = signer("a"), signer("b"), signer("c")


@pytest.mark.parametrize(
    ("found", "counted", "uncounted"),
    [
        ([], (), ()),
        ([("one", [A]), ("two", [B])], ("one", "two"), ()),
        # Two names for one signer: the second does not count.
        ([("one", [A]), ("two", [A])], ("one",), ("two",)),
        # Signers sharing a token (a key in a certificate, one identity) are one.
        ([("one", [signer("a", "x")]), ("two", [signer("x", "b")])], ("one",), ("two",)),
        ([("one", [A]), ("two", [B]), ("three", [signer("a", "b")])], ("one",), ("two", "three")),
        # A pattern matching two signers leaves the other for the exact authority.
        ([("pattern", [A, B]), ("exact", [A])], ("pattern", "exact"), ()),
        ([("exact", [A]), ("pattern", [A, B])], ("exact", "pattern"), ()),
        # Three authorities, two signers between them: two count.
        ([("x", [A, B]), ("y", [A, B]), ("z", [A])], ("x", "y"), ("z",)),
        ([("x", [A, B]), ("y", [A]), ("z", [C])], ("x", "y", "z"), ()),
    ],
)
def test_count_distinct(
    found: list[tuple[str, list[Signer]]], counted: tuple[str, ...], uncounted: tuple[str, ...]
) -> None:
    count = count_distinct(found)
    assert count.counted == counted
    assert tuple(name for name, _ in count.uncounted) == uncounted
    assert len(count.counted) + len(count.uncounted) == len(found)


def test_uncounted_reason_names_the_signer_and_the_authority_it_counted_for() -> None:
    assert count_distinct([("one", [A]), ("two", [A])]) == Count(
        ("one",), (("two", "verified, but by signer a, already counted for one"),), ("signer a",)
    )


def test_each_counted_authority_names_the_signer_it_was_counted_for() -> None:
    # The pattern verified both, but counts for B: A is the exact authority's.
    count = count_distinct([("pattern", [A, B]), ("exact", [A])])
    assert count.counted == ("pattern", "exact")
    assert count.signed_by == ("signer b", "signer a")


def test_failures_keep_the_policy_order() -> None:
    count = count_distinct([("b", [A]), ("d", [A])])
    failed = [("a", "no signature found"), ("c", "does not verify")]
    assert [name for name, _ in count.failures(["a", "b", "c", "d"], failed)] == ["a", "c", "d"]


def test_key_signer_compares_keys_not_their_text() -> None:
    key = generate_key("ecdsa-p256")
    pem = public_pem(key)
    again = load_pem_public_key(pem.replace("\n", "\r\n").encode())
    assert key_signer(key.public_key()) == key_signer(again)
    assert key_fingerprint(again).startswith("sha256:")
    assert key_signer(key.public_key()) != key_signer(generate_key("ecdsa-p256").public_key())
    with pytest.raises(TypeError):
        key_fingerprint(pem)


def test_certificate_signer_is_its_key_and_its_identity() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert, _ = INSTANCE.ca.issue(Identity(RELEASE, ISSUER), key=key)
    other_cert, _ = INSTANCE.ca.issue(Identity(RELEASE, ISSUER))
    deploy_cert, _ = INSTANCE.ca.issue(Identity(DEPLOY, ISSUER))
    signer = certificate_signer(cert)
    assert signer.label == f"identity {RELEASE!r}"
    assert key_signer(key.public_key()).tokens <= signer.tokens
    # The same identity with another certificate, or the certificate's key held as a
    # key authority, is the same signer; another identity is not.
    count = count_distinct(
        [
            ("ci", [signer]),
            ("ci-again", [certificate_signer(other_cert)]),
            ("release-key", [key_signer(key.public_key())]),
            ("deploy", [certificate_signer(deploy_cert)]),
        ]
    )
    assert count.counted == ("ci", "deploy")
    assert [name for name, _ in count.uncounted] == ["ci-again", "release-key"]
