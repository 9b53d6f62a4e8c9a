"""trustedIdentities: x509.subject patterns matched attribute by attribute, as the spec says."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from tests.support.notation_pki import Authority, name
from webhook.trust.notation.identities import (
    IdentityError,
    parse_identities,
    parse_pattern,
)

ACME = "x509.subject: C=US, ST=WA, L=Seattle, O=acme-rabbits"


def _subject(*pairs: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in pairs])


BUILDER = name("builder")


@pytest.mark.parametrize(
    ("pattern", "subject", "matches"),
    [
        (ACME, BUILDER, True),
        (ACME + ", CN=builder", BUILDER, True),
        ("x509.subject: CN=builder, O=acme-rabbits, ST=WA, C=US", BUILDER, True),
        ("x509.subject: C=US, S=WA, O=acme-rabbits", BUILDER, True),
        ("x509.subject:C=US,ST=WA,O=acme-rabbits", BUILDER, True),
        (ACME + ", CN=other", BUILDER, False),
        (ACME + ", CN=Builder", BUILDER, False),  # values compare exactly
        (ACME + ", OU=Finance", BUILDER, False),  # an attribute the subject lacks
        ("x509.subject: C=US, ST=OR, O=acme-rabbits", BUILDER, False),
        (ACME + ", OU=Finance", name("b", ou="Finance"), True),
        # Two OU in the subject: which one counts would be a guess, so neither does.
        (ACME + ", OU=Finance", name("b", ou="Finance|Attacker"), False),
        # A comma inside a value is a value, not a separator.
        (
            r"x509.subject: C=US, ST=WA, O=acme\, rabbits",
            _subject(
                (NameOID.COUNTRY_NAME, "US"),
                (NameOID.STATE_OR_PROVINCE_NAME, "WA"),
                (NameOID.ORGANIZATION_NAME, "acme, rabbits"),
            ),
            True,
        ),
        (
            r"x509.subject: C=US, ST=WA, O=acme\, rabbits",
            _subject(
                (NameOID.COUNTRY_NAME, "US"),
                (NameOID.STATE_OR_PROVINCE_NAME, "WA"),
                (NameOID.ORGANIZATION_NAME, "acme"),
                (NameOID.ORGANIZATIONAL_UNIT_NAME, "rabbits"),
            ),
            False,
        ),
        (
            r"x509.subject: C=US, ST=WA, O=\ padded\ ",
            _subject(
                (NameOID.COUNTRY_NAME, "US"),
                (NameOID.STATE_OR_PROVINCE_NAME, "WA"),
                (NameOID.ORGANIZATION_NAME, " padded "),
            ),
            True,
        ),
        (
            r"x509.subject: C=US, ST=WA, O=a\;b\\c, 2.5.4.97=VATUS-1",
            _subject(
                (NameOID.COUNTRY_NAME, "US"),
                (NameOID.STATE_OR_PROVINCE_NAME, "WA"),
                (NameOID.ORGANIZATION_NAME, "a;b\\c"),
                (x509.ObjectIdentifier("2.5.4.97"), "VATUS-1"),
            ),
            True,
        ),
    ],
)
def test_a_pattern_matches_a_subject(pattern: str, subject: x509.Name, matches: bool) -> None:
    assert parse_pattern(pattern).matches(subject) is matches


def test_identities_match_the_signing_certificate() -> None:
    leaf = Authority.root().leaf("builder").chain[0]
    identities = parse_identities([ACME + ", CN=other", ACME + ", CN=builder"])
    assert identities.match(leaf) == ACME + ", CN=builder"
    assert parse_identities([ACME + ", CN=other"]).match(leaf) is None
    assert parse_identities(["*"]).match(leaf) == "*"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([], "trustedIdentities is empty"),
        (["*", ACME], '"\\*" trusts any identity and cannot be listed with others'),
        (["CN=builder"], 'neither "\\*" nor "x509.subject:'),
        (["x509.subject: C=US, O=acme"], "has no ST; it must name C, ST \\(or S\\) and O"),
        (["x509.subject: ST=WA, O=acme"], "has no C"),
        (["x509.subject: C=US, ST=WA"], "has no O"),
        (["x509.subject: C=US, ST=WA, O=a+OU=b"], "multi-valued RDNs"),
        (["x509.subject: C=US, ST=WA, O=#0403616263"], "hex-encoded values"),
        (["x509.subject: C=US, ST=WA, O=a, FOO=b"], "unknown attribute type 'FOO'"),
        (["x509.subject: C=US, ST=WA, O=a, C=CA"], "names C twice"),
        (["x509.subject: C=US, ST=WA, S=OR, O=a"], "names S twice"),
        (["x509.subject: C=US, ST=WA, O="], "O has an empty value"),
        (["x509.subject: C=US, ST=WA, O=a, CN"], "'CN' has no ="),
        (["x509.subject: C=US, ST=WA, =x, O=a"], "an attribute has no type"),
        ([r"x509.subject: C=US, ST=WA, O=a\b"], "a backslash must escape one of"),
        (["x509.subject: C=US, ST=WA, O=" + "a" * 5000], "over 4096 characters"),
        # Overlapping: any certificate the wider one matches, the narrower matches too.
        ([ACME, ACME + ", OU=Finance"], "overlap"),
        ([ACME, "x509.subject: O=acme-rabbits, L=Seattle, ST=WA, C=US"], "overlap"),
    ],
)
def test_malformed_identities_are_refused(values: list[str], message: str) -> None:
    with pytest.raises(IdentityError, match=message):
        parse_identities(values)


def test_distinct_identities_do_not_overlap() -> None:
    identities = parse_identities([ACME + ", CN=a", ACME + ", CN=b"])
    assert [pattern.text for pattern in identities.patterns] == [ACME + ", CN=a", ACME + ", CN=b"]
