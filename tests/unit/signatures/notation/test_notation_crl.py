"""CRLs, sans-I/O: which base and delta CRLs are believed, and what they say of a certificate."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from tests.support.notation_revocation_pki import Authority, now
from webhook.signatures.notation import crl
from webhook.signatures.notation.certstatus import Unavailable

SKEW = dt.timedelta(minutes=5)
CA = Authority.root("lists")
LEAF = CA.issue("signer")
INTERMEDIATE = CA.issue("intermediate", ca=True)


def build(
    *,
    authority: Authority = CA,
    number: int | None = 7,
    extensions: Iterable[tuple[x509.ExtensionType, bool]] = (),
    entries: Iterable[x509.RevokedCertificate] = (),
    next_update: dt.datetime | None = None,
) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(authority.cert.subject)
        .last_update(now() - dt.timedelta(minutes=1))
        .next_update(next_update or now() + dt.timedelta(days=1))
    )
    if number is not None:
        builder = builder.add_extension(x509.CRLNumber(number), critical=False)
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    for entry in entries:
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(authority.key, hashes.SHA256())


def entry(
    cert: x509.Certificate, *extensions: tuple[x509.ExtensionType, bool]
) -> x509.RevokedCertificate:
    builder = (
        x509.RevokedCertificateBuilder()
        .serial_number(cert.serial_number)
        .revocation_date(now() - dt.timedelta(hours=1))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.build()


def scope(**flags: bool) -> x509.IssuingDistributionPoint:
    values = {
        "full_name": None,
        "relative_name": None,
        "only_contains_user_certs": False,
        "only_contains_ca_certs": False,
        "only_some_reasons": None,
        "indirect_crl": False,
        "only_contains_attribute_certs": False,
    }
    return x509.IssuingDistributionPoint(**(values | flags))  # type: ignore[arg-type]


def status(*lists: x509.CertificateRevocationList, cert: x509.Certificate = LEAF.cert) -> bool:
    return crl.status(cert, lists, source="http://crl.test", now=now(), skew=SKEW).revoked


def test_der_and_pem_load_and_anything_else_does_not() -> None:
    listed = build()
    for encoding in (Encoding.DER, Encoding.PEM):
        assert crl.load(listed.public_bytes(encoding)) == listed
    with pytest.raises(Unavailable, match="the answer is not a CRL"):
        crl.load(b"<html>maintenance</html>")


def test_a_base_crl_of_the_issuer_is_believed() -> None:
    crl.check_base(build(), LEAF.cert, CA.cert)
    assert not status(build())
    revoked = build(entries=[entry(LEAF.cert)])
    assert status(revoked)


@pytest.mark.parametrize(
    ("listed", "cert", "expected"),
    [
        (build(authority=Authority.root("other")), LEAF.cert, "not by the certificate's issuer"),
        (
            build(extensions=[(x509.DeltaCRLIndicator(6), True)]),
            LEAF.cert,
            "serves a delta CRL, not a base CRL",
        ),
        (build(extensions=[(scope(indirect_crl=True), True)]), LEAF.cert, "indirect CRLs"),
        (
            build(
                extensions=[
                    (scope(only_some_reasons=frozenset({x509.ReasonFlags.key_compromise})), True)
                ]
            ),
            LEAF.cert,
            "partitioned by revocation reason",
        ),
        (
            build(extensions=[(scope(only_contains_ca_certs=True), True)]),
            LEAF.cert,
            "does not cover this kind of certificate",
        ),
        (
            build(extensions=[(scope(only_contains_user_certs=True), True)]),
            INTERMEDIATE.cert,
            "does not cover this kind of certificate",
        ),
    ],
)
def test_crls_that_are_not_the_issuers_base_crl_for_the_certificate_are_refused(
    listed: x509.CertificateRevocationList, cert: x509.Certificate, expected: str
) -> None:
    with pytest.raises(Unavailable, match=expected):
        crl.check_base(listed, cert, CA.cert)


def test_a_scope_that_covers_the_certificate_is_accepted() -> None:
    crl.check_base(
        build(extensions=[(scope(only_contains_user_certs=True), True)]), LEAF.cert, CA.cert
    )
    crl.check_base(
        build(extensions=[(scope(only_contains_ca_certs=True), True)]), INTERMEDIATE.cert, CA.cert
    )


def test_an_issuer_that_may_not_sign_crls_is_refused() -> None:
    issued = CA.issue("no crl signing")  # key usage: digitalSignature only
    holder = Authority("restricted", issued.cert, issued.key)
    with pytest.raises(Unavailable, match="may not sign CRLs"):
        crl.check_base(build(authority=holder), holder.issue("leaf").cert, holder.cert)


def test_a_critical_entry_extension_not_understood_is_refused() -> None:
    issuer = x509.CertificateIssuer([x509.DNSName("elsewhere.test")])
    listed = build(entries=[entry(LEAF.cert, (issuer, True))])
    with pytest.raises(Unavailable, match=r"critical extension 2\.5\.29\.29"):
        status(listed)


def test_an_invalidity_date_and_reason_are_read() -> None:
    invalid = now() - dt.timedelta(days=3)
    listed = build(
        entries=[
            entry(
                LEAF.cert,
                (x509.CRLReason(x509.ReasonFlags.affiliation_changed), False),
                (x509.InvalidityDate(invalid), False),
            )
        ]
    )
    finding = crl.status(LEAF.cert, [listed], source="s", now=now(), skew=SKEW)
    assert (finding.reason, finding.invalid_since) == ("affiliationChanged", invalid)


def delta(
    *, number: int = 8, base: int | None = 7, entries: Iterable[x509.RevokedCertificate] = ()
) -> x509.CertificateRevocationList:
    extensions = [] if base is None else [(x509.DeltaCRLIndicator(base), True)]
    return build(number=number, extensions=extensions, entries=entries)


@pytest.mark.parametrize(
    ("listed", "expected"),
    [
        (delta(base=None), "has no Delta CRL Indicator"),
        (delta(number=7), "the delta CRL's number 7 is not above its base's 7"),
        (delta(base=9, number=10), "needs base CRL 9 or later; the base CRL is 7"),
        (build(number=None, extensions=[(x509.DeltaCRLIndicator(7), True)]), "no CRL number"),
    ],
)
def test_a_delta_that_does_not_apply_to_its_base_is_refused(
    listed: x509.CertificateRevocationList, expected: str
) -> None:
    with pytest.raises(Unavailable, match=expected):
        crl.check_delta(listed, build(), CA.cert)


def test_a_delta_revokes_and_lifts_holds() -> None:
    base = build(
        entries=[entry(LEAF.cert, (x509.CRLReason(x509.ReasonFlags.certificate_hold), False))]
    )
    assert status(base)
    lifted = delta(
        entries=[entry(LEAF.cert, (x509.CRLReason(x509.ReasonFlags.remove_from_crl), False))]
    )
    crl.check_delta(lifted, base, CA.cert)
    assert not status(base, lifted)
    assert status(build(), delta(entries=[entry(LEAF.cert)]))
    # A revocation for good is not lifted by a later removeFromCRL.
    assert status(build(entries=[entry(LEAF.cert)]), lifted)


def test_the_finding_lasts_until_the_earliest_next_update() -> None:
    soon = now() + dt.timedelta(hours=2)
    finding = crl.status(
        LEAF.cert, [build(), build(next_update=soon)], source="s", now=now(), skew=SKEW
    )
    assert finding.next_update == soon


def test_delta_locations_come_from_the_base_crl_else_the_certificate() -> None:
    def freshest(url: str) -> x509.FreshestCRL:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None, None)
        return x509.FreshestCRL([point])

    cert = CA.issue("with freshest", extra=[(freshest("http://cert.test/d.crl"), False)]).cert
    assert crl.delta_locations(build(), cert) == ["http://cert.test/d.crl"]
    base = build(extensions=[(freshest("http://base.test/d.crl"), False)])
    assert crl.delta_locations(base, cert) == ["http://base.test/d.crl"]
    assert crl.delta_locations(build(), LEAF.cert) == []
