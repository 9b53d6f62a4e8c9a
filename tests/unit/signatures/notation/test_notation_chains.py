"""Certificate requirements of code-signing and timestamping chains, and paths to a trust store."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID as EKU

from tests.support.notation_pki import DAY as DAYS
from tests.support.notation_pki import NOW, Authority, name, self_signed, usage
from webhook.signatures.notation.chains import (
    TIMESTAMPING,
    check_chain,
    trusted_path,
    validity_window,
)
from webhook.signatures.notation.model import NotationError


@pytest.fixture(scope="module")
def root() -> Authority:
    return Authority.root()


@pytest.fixture(scope="module")
def inter(root: Authority) -> Authority:
    return root.intermediate()


def test_a_good_chain_meets_the_requirements_and_chains_to_its_root(
    root: Authority, inter: Authority
) -> None:
    signing = inter.leaf()
    check_chain(signing.chain)
    assert trusted_path(signing.chain[0], signing.chain[1:], [root.cert], NOW) == signing.chain


def test_a_store_holding_the_intermediate_gives_a_shorter_path(inter: Authority) -> None:
    signing = inter.leaf()
    path = trusted_path(signing.chain[0], signing.chain[1:], [inter.cert], NOW)
    assert path == signing.chain[:2]


def test_a_self_signed_signing_certificate_is_its_own_chain() -> None:
    signing = self_signed()
    check_chain(signing.chain)
    assert trusted_path(signing.chain[0], [], signing.chain, NOW) == signing.chain


def test_rsa_keys_and_larger_curves(root: Authority) -> None:
    for kind in ("rsa2048", "rsa3072", "ec384", "ec521"):
        signing = root.intermediate(kind=kind).leaf(kind=kind)
        check_chain(signing.chain)
        trusted_path(signing.chain[0], signing.chain[1:], [root.cert], NOW)


def test_a_leaf_without_extended_key_usage_is_accepted(root: Authority) -> None:
    # The specification makes extendedKeyUsage optional on a code-signing leaf.
    signing = root.leaf(eku=None)
    check_chain(signing.chain)
    trusted_path(signing.chain[0], signing.chain[1:], [root.cert], NOW)


BROKEN: list[tuple[str, Callable[[Authority, Authority], tuple[x509.Certificate, ...]], str]] = [
    (
        "an intermediate that is not a CA",
        lambda r, i: r.intermediate(ca=False).leaf().chain,
        "issues certificates but is not a CA",
    ),
    (
        "an intermediate without basicConstraints",
        lambda r, i: r.intermediate(ca=None).leaf().chain,
        "issues certificates but is not a CA",
    ),
    (
        "an intermediate without keyCertSign",
        lambda r, i: r.intermediate(key_usage=usage(sign=True)).leaf().chain,
        "keyUsage lacks keyCertSign",
    ),
    (
        "a path length exceeded",
        lambda r, i: r.intermediate(path_length=0).intermediate("second").leaf().chain,
        "allows 0 intermediates below it",
    ),
    (
        "a leaf without the codeSigning extended key usage (a TLS certificate)",
        lambda r, i: i.leaf(eku=[EKU.SERVER_AUTH]).chain,
        "has extended key usage serverAuth, not for code signing",
    ),
    (
        "a leaf with codeSigning and timeStamping",
        lambda r, i: i.leaf(eku=[EKU.CODE_SIGNING, EKU.TIME_STAMPING]).chain,
        "timeStamping, not for code signing",
    ),
    (
        "a leaf with anyExtendedKeyUsage",
        lambda r, i: i.leaf(eku=[EKU.CODE_SIGNING, EKU.ANY_EXTENDED_KEY_USAGE]).chain,
        "anyExtendedKeyUsage",
    ),
    (
        "a leaf restricted to another purpose",
        lambda r, i: i.leaf(eku=[x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.12")]).chain,
        "an extended key usage without codeSigning",
    ),
    (
        "a leaf without keyUsage",
        lambda r, i: i.leaf(key_usage=None).chain,
        "must have a keyUsage extension and critical",
    ),
    (
        "a leaf with keyUsage not critical",
        lambda r, i: i.leaf(key_usage_critical=False).chain,
        "must have a keyUsage extension and critical",
    ),
    (
        "a leaf without digitalSignature",
        lambda r, i: i.leaf(key_usage=usage(encipher=True)).chain,
        "keyUsage lacks digitalSignature",
    ),
    (
        "a leaf that also enciphers keys",
        lambda r, i: i.leaf(key_usage=usage(sign=True, encipher=True)).chain,
        "must be digitalSignature only, has keyEncipherment",
    ),
    ("a leaf that is a CA", lambda r, i: i.leaf(ca=True).chain, "signs but is a CA"),
    ("a leaf with an RSA 1024 key", lambda r, i: i.leaf(kind="rsa1024").chain, "1024 bits"),
    (
        "a chain in the wrong order",
        lambda r, i: (lambda c: (c[0], c[2], c[1]))(i.leaf().chain),
        "is not issued by",
    ),
    (
        "a chain with an unrelated certificate",
        lambda r, i: (lambda c: (c[0], Authority.root("stranger").cert, *c[1:]))(i.leaf().chain),
        "is not issued by",
    ),
    (
        "a chain without its root",
        lambda r, i: i.leaf().chain[:2],
        "ends the chain but is not a self-signed root",
    ),
    (
        "a lone certificate that is not self-signed",
        lambda r, i: i.leaf().chain[:1],
        "is alone in the chain but not self-signed",
    ),
    (
        "a self-signed leaf before its CA",
        lambda r, i: (self_signed().chain[0], *i.chain),
        "is self-signed but not last",
    ),
    ("no certificate", lambda r, i: (), "the signature carries no certificate chain"),
    (
        "too long a chain",
        lambda r, i: (lambda a: a.leaf().chain)(
            i.intermediate("2").intermediate("3").intermediate("4").intermediate("5")
        ),
        "the certificate chain has 7 certificates; at most 6",
    ),
]


@pytest.mark.parametrize(("case", "make", "message"), BROKEN, ids=[case for case, _, _ in BROKEN])
def test_broken_chains_are_refused(
    case: str,
    make: Callable[[Authority, Authority], tuple[x509.Certificate, ...]],
    message: str,
    root: Authority,
    inter: Authority,
) -> None:
    chain = make(root, inter)
    with pytest.raises(NotationError, match=message):
        check_chain(chain)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda r, i: r.intermediate(ca=False).leaf().chain, "cA must be asserted"),
        (lambda r, i: i.leaf(eku=[EKU.SERVER_AUTH]).chain, "serverAuth, not for code signing"),
        (lambda r, i: i.leaf(key_usage_critical=False).chain, "Criticality|critical"),
        (lambda r, i: i.leaf(ca=True).chain, "signs but is a CA"),
        (
            lambda r, i: r.intermediate(path_length=0).intermediate("2").leaf().chain,
            "path length constraint violated",
        ),
    ],
)
def test_the_path_validation_enforces_the_same_rules(
    make: Callable[[Authority, Authority], tuple[x509.Certificate, ...]],
    message: str,
    root: Authority,
    inter: Authority,
) -> None:
    chain = make(root, inter)
    with pytest.raises(NotationError, match=message):
        trusted_path(chain[0], chain[1:], [root.cert], NOW)


def test_a_chain_to_an_untrusted_root_has_no_path(inter: Authority) -> None:
    signing = inter.leaf()
    stranger = Authority.root("wabbit root")  # same name, another key
    with pytest.raises(NotationError, match="does not chain to the trust store"):
        trusted_path(signing.chain[0], signing.chain[1:], [stranger.cert], NOW)


def test_an_empty_store_is_no_path(inter: Authority) -> None:
    signing = inter.leaf()
    with pytest.raises(NotationError, match="holds no certificate for code signing"):
        trusted_path(signing.chain[0], signing.chain[1:], [], NOW)


def test_paths_are_validated_at_the_moment_given() -> None:
    root = Authority.root(start=NOW - 30 * DAYS)
    signing = root.leaf(start=NOW - 10 * DAYS, end=NOW - 5 * DAYS)
    trusted_path(signing.chain[0], signing.chain[1:], [root.cert], NOW - 7 * DAYS)
    with pytest.raises(NotationError, match="not valid at validation time"):
        trusted_path(signing.chain[0], signing.chain[1:], [root.cert], NOW)


def test_the_validity_window_is_what_all_share() -> None:
    root = Authority.root(start=NOW - 30 * DAYS)
    signing = root.leaf(start=NOW - 10 * DAYS, end=NOW - 5 * DAYS)
    assert validity_window(signing.chain) == (NOW - 10 * DAYS, NOW - 5 * DAYS)


def test_timestamping_chains_need_a_critical_timestamping_usage(root: Authority) -> None:
    good = root.leaf(eku=[EKU.TIME_STAMPING], eku_critical=True)
    check_chain(good.chain, TIMESTAMPING)
    trusted_path(good.chain[0], [], [root.cert], NOW, TIMESTAMPING)
    for options, message in (
        ({"eku": [EKU.TIME_STAMPING], "eku_critical": False}, "extended key usage critical"),
        ({"eku": [EKU.TIME_STAMPING, EKU.CODE_SIGNING], "eku_critical": True}, "only it"),
        ({"eku": [EKU.CODE_SIGNING]}, "must have timeStamping"),
        ({"eku": None}, "must have timeStamping"),
    ):
        chain = root.leaf(**options).chain
        with pytest.raises(NotationError, match=message):
            check_chain(chain, TIMESTAMPING)
        with pytest.raises(NotationError, match=message):
            trusted_path(chain[0], [], [root.cert], NOW, TIMESTAMPING)


def test_a_timestamping_leaf_may_have_key_usage_not_critical(root: Authority) -> None:
    chain = root.leaf(eku=[EKU.TIME_STAMPING], eku_critical=True, key_usage_critical=False).chain
    check_chain(chain, TIMESTAMPING)


def test_names_in_messages_are_quoted_and_escaped(root: Authority) -> None:
    leaf = root.leaf(subject=name("evil\nnext line"), eku=[EKU.SERVER_AUTH]).chain
    with pytest.raises(NotationError) as caught:
        check_chain(leaf)
    assert "\n" not in str(caught.value)
