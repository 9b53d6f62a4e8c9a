"""Revocation of Notation chains against a real OCSP responder and CRL server over HTTP.

``RevocationServer`` (tests/support/notation_revocation.py) answers real DER that
cryptography builds; each test gets a chain of its own (root, intermediate, signer)
whose certificates name the server's routes. Hostile routes: test_notation_revocation_hostile.py.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator

import pytest
from cryptography import x509

from tests.support.notation_pki import TimestampAuthority, envelope
from tests.support.notation_revocation import RevocationServer, chain
from tests.support.notation_revocation_pki import Authority, Issued, now
from tests.support.registry import free_port
from webhook.core.deadline import Deadline
from webhook.core.offline import NeedsNetwork, offline
from webhook.signatures.notation.model import NotationError
from webhook.signatures.notation.revocation import (
    MAX_CHAIN,
    ChainRevocation,
    RevocationChecker,
    RevocationSettings,
)
from webhook.signatures.notation.trust import TrustResult, verify_trust
from webhook.trust.notation.identities import parse_identities
from webhook.trust.notation.levels import Validation, level
from webhook.trust.notation.truststore import TrustStore

FAST = RevocationSettings(ocsp_seconds=0.5, crl_seconds=0.5)
ANY = parse_identities(["*"])


@pytest.fixture(scope="module")
def server() -> Iterator[RevocationServer]:
    running = RevocationServer().start()
    yield running
    running.stop()


def certs(leaf: Issued, *authorities: Authority) -> list[x509.Certificate]:
    return [leaf.cert, *(a.cert for a in authorities)]


def check(
    chain_: list[x509.Certificate],
    *,
    checker: RevocationChecker | None = None,
    seconds: float = 10,
    **options: dt.datetime,
) -> ChainRevocation:
    return (checker or RevocationChecker(FAST)).check(chain_, Deadline(seconds), **options)


def dead_url(path: str) -> str:
    """A URL on a port nothing listens on: refused at once."""
    return f"http://127.0.0.1:{free_port()}/{path}"


# -- good, cached ---------------------------------------------------------------------------


def test_a_good_chain_is_asked_once_per_certificate_by_ocsp(server: RevocationServer) -> None:
    leaf, ca, root = chain(server)
    result = check(certs(leaf, ca, root))
    assert result.status == "good", result.reason
    assert result.reason == "no certificate of the chain is revoked"
    assert [c.status for c in result.certificates] == ["good", "good", "unchecked"]
    assert [c.method for c in result.certificates] == ["ocsp", "ocsp", None]
    assert result.certificates[0].source == server.ocsp_url(ca.name)
    assert server.hits == server.hits | {f"ocsp/{ca.name}": 1, f"ocsp/{root.name}": 1}
    assert server.hits[f"crl/{ca.name}"] == 0


def test_findings_are_cached_until_next_update(server: RevocationServer) -> None:
    leaf, ca, root = chain(server)
    seen: list[str] = []
    checker = RevocationChecker(FAST, observer=lambda name, result: seen.append(result))
    assert check(certs(leaf, ca, root), checker=checker).status == "good"
    assert check(certs(leaf, ca, root), checker=checker).status == "good"
    assert server.hits[f"ocsp/{ca.name}"] == 1
    assert seen == ["miss", "miss", "hit", "hit"]
    # The responder promised news within a day: past that, it is asked again.
    later = now() + dt.timedelta(days=1, hours=1)
    server.ocsp_modes[ca.name] = "stale"  # what it says then does not matter here
    check(certs(leaf, ca, root), checker=checker, now=later)
    assert server.hits[f"ocsp/{ca.name}"] == 2


def test_the_cache_is_bounded(server: RevocationServer) -> None:
    checker = RevocationChecker(RevocationSettings(cache_size=2))
    leaf, ca, root = chain(server)
    others = [ca.issue(f"other {n}", ocsp_url=server.ocsp_url(ca.name)) for n in range(2)]
    check(certs(leaf, ca, root), checker=checker)
    for other in others:
        check(certs(other, ca, root), checker=checker)
    asked = server.hits[f"ocsp/{ca.name}"]
    check(certs(leaf, ca, root), checker=checker)  # pushed out by the others
    assert server.hits[f"ocsp/{ca.name}"] == asked + 1


def test_concurrent_reviews_share_one_fetch(server: RevocationServer) -> None:
    leaf, ca, root = chain(server)
    server.ocsp_modes[ca.name] = "slow"
    checker = RevocationChecker(FAST)
    results: list[str] = []

    def review() -> None:
        results.append(check(certs(leaf, ca, root), checker=checker).status)

    threads = [threading.Thread(target=review) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == ["good"] * 8
    assert server.hits[f"ocsp/{ca.name}"] == 1


def test_an_rsa_chain_verifies_pkcs1_ocsp_signatures(server: RevocationServer) -> None:
    leaf, ca, root = chain(server, kind="rsa")
    assert check(certs(leaf, ca, root)).status == "good"


def test_a_delegated_responder_with_nocheck_is_believed(server: RevocationServer) -> None:
    leaf, ca, root = chain(server)
    server.ocsp_modes[ca.name] = "delegate"
    ca.revoke(leaf.cert)
    assert check(certs(leaf, ca, root)).certificates[0].method == "ocsp"
    assert check(certs(leaf, ca, root)).status == "revoked"


def test_a_delegated_responder_without_nocheck_is_checked_by_crl(
    server: RevocationServer,
) -> None:
    leaf, ca, root = chain(server)
    server.ocsp_modes[ca.name] = "delegate-checked"
    result = check(certs(leaf, ca, root))
    assert result.status == "good" and result.certificates[0].method == "ocsp"
    assert server.hits[f"crl/{ca.name}"] == 1  # the responder's own certificate
    # A revoked responder is not believed: the signer's status then comes from the CRL.
    assert ca.checked_responder is not None
    ca.revoke(ca.checked_responder.cert)
    result = check(certs(leaf, ca, root))
    assert result.status == "good" and result.certificates[0].method == "crl"


# -- revoked ---------------------------------------------------------------------------------


def test_a_certificate_revoked_by_ocsp(server: RevocationServer) -> None:
    leaf, ca, root = chain(server)
    at = now() - dt.timedelta(hours=3)
    ca.revoke(leaf.cert, at=at)
    result = check(certs(leaf, ca, root))
    assert result.status == "revoked"
    revoked = result.certificates[0]
    assert (revoked.status, revoked.method, revoked.revoked_at) == ("revoked", "ocsp", at)
    assert revoked.revocation_reason == "keyCompromise"
    subject = leaf.cert.subject.rfc4514_string()
    assert result.reason == (
        f"certificate {subject} is revoked at {at:%Y-%m-%dT%H:%M:%SZ} (keyCompromise), "
        f"per OCSP {server.ocsp_url(ca.name)}"
    )


def test_a_certificate_revoked_by_crl_when_ocsp_is_down(server: RevocationServer) -> None:
    leaf, ca, root = chain(server)
    ca.revoke(leaf.cert, reason=x509.ReasonFlags.superseded)
    server.ocsp_modes[ca.name] = "error"
    result = check(certs(leaf, ca, root))
    assert result.status == "revoked"
    assert result.certificates[0].method == "crl"
    assert result.certificates[0].revocation_reason == "superseded"
    assert f"per CRL {server.crl_url(ca.name)}" in result.reason


def test_a_certificate_naming_only_a_crl(server: RevocationServer) -> None:
    _, ca, root = chain(server)
    leaf = ca.issue("crl only", crl_url=server.crl_url(ca.name))
    assert check(certs(leaf, ca, root)).status == "good"
    ca.revoke(leaf.cert)
    result = check(certs(leaf, ca, root))
    assert result.status == "revoked" and result.certificates[0].method == "crl"
    assert server.hits[f"ocsp/{ca.name}"] == 0


def test_a_revoked_intermediate_revokes_the_chain_and_stops_there(
    server: RevocationServer,
) -> None:
    leaf, ca, root = chain(server)
    root.revoke(ca.cert)
    result = check(certs(leaf, ca, root))
    assert result.status == "revoked"
    assert [c.subject for c in result.certificates if c.status == "revoked"] == [
        ca.cert.subject.rfc4514_string()
    ]
    assert server.hits[f"ocsp/{ca.name}"] == 0  # root to leaf: the signer is never asked


@pytest.mark.parametrize("source", ["ocsp", "crl"])
def test_an_invalidity_date_after_the_authentic_signing_time_keeps_the_signature(
    server: RevocationServer, source: str
) -> None:
    leaf, ca, root = chain(server)
    if source == "crl":
        server.ocsp_modes[ca.name] = "error"
    signed = now() - dt.timedelta(days=2)
    ca.revoke(leaf.cert, at=now() - dt.timedelta(hours=1), invalid_since=signed + dt.timedelta(1))
    stands = check(certs(leaf, ca, root), signing_time=signed)
    assert stands.status == "good", stands.reason
    first = stands.certificates[0]
    assert (first.method, first.before_signing) == (source, False)
    assert "after the authentic signing time" in first.reason
    assert first.invalid_since == signed + dt.timedelta(days=1)
    # Signed after the key became invalid: revoked.
    late = check(certs(leaf, ca, root), signing_time=signed + dt.timedelta(days=1, hours=1))
    assert late.status == "revoked" and late.certificates[0].before_signing is True
    # Without an authentic signing time, revoked is revoked.
    assert check(certs(leaf, ca, root)).status == "revoked"


def test_without_an_invalidity_date_a_revocation_after_signing_still_revokes(
    server: RevocationServer,
) -> None:
    leaf, ca, root = chain(server)
    ca.revoke(leaf.cert, at=now() - dt.timedelta(hours=1))
    result = check(certs(leaf, ca, root), signing_time=now() - dt.timedelta(days=30))
    assert result.status == "revoked"
    assert result.certificates[0].before_signing is False


# -- delta CRLs and holds --------------------------------------------------------------------


def crl_only(server: RevocationServer) -> tuple[Issued, Authority, Authority]:
    _, ca, root = chain(server)
    return ca.issue("crl signer", crl_url=server.crl_url(ca.name)), ca, root


def test_a_delta_crl_revokes(server: RevocationServer) -> None:
    leaf, ca, root = crl_only(server)
    server.crl_modes[ca.name] = "delta"
    assert check(certs(leaf, ca, root)).status == "good"
    assert server.hits[f"delta/{ca.name}"] == 1
    ca.revoke(leaf.cert, delta=True)
    assert check(certs(leaf, ca, root)).status == "revoked"


def test_a_hold_revokes_until_a_delta_removes_it(server: RevocationServer) -> None:
    leaf, ca, root = crl_only(server)
    ca.revoke(leaf.cert, reason=x509.ReasonFlags.certificate_hold)
    result = check(certs(leaf, ca, root))
    assert result.status == "revoked" and "(certificateHold)" in result.reason
    server.crl_modes[ca.name] = "delta"
    ca.revoke(leaf.cert, reason=x509.ReasonFlags.remove_from_crl, delta=True)
    assert check(certs(leaf, ca, root)).status == "good"


def test_a_delta_crl_that_cannot_be_had_leaves_the_status_unknown(
    server: RevocationServer,
) -> None:
    leaf, ca, root = crl_only(server)
    server.crl_modes[ca.name] = "delta-missing"
    result = check(certs(leaf, ca, root))
    assert result.status == "unknown"
    assert "its delta CRL cannot be had" in result.reason and "answered HTTP 404" in result.reason


def test_a_certificate_without_locations_is_not_revocable() -> None:
    ca = Authority.root("quiet")
    leaf = ca.issue("signer")
    result = check([leaf.cert, ca.cert])
    assert result.status == "good"
    assert result.certificates[0].status == "unchecked"
    assert "names no OCSP responder or CRL distribution point" in result.certificates[0].reason


def test_a_self_signed_signing_certificate_is_a_root() -> None:
    ca = Authority.root("alone")
    assert check([ca.cert]).status == "good"


@pytest.mark.parametrize("shape", ["disordered", "rootless", "long", "empty"])
def test_malformed_chains_are_unknown(server: RevocationServer, shape: str) -> None:
    leaf, ca, root = chain(server)
    signer, intermediate, anchor = (
        c.subject.rfc4514_string() for c in (leaf.cert, ca.cert, root.cert)
    )
    chains = {
        "disordered": [leaf.cert, root.cert, ca.cert],
        "rootless": [leaf.cert, ca.cert],
        "long": [leaf.cert] * (MAX_CHAIN + 1),
        "empty": [],
    }
    first = {
        "disordered": f"the revocation status of {signer} cannot be determined: "
        f"the next certificate, {anchor}, is not its issuer",
        "rootless": f"the revocation status of {intermediate} cannot be determined: "
        "the chain does not end at a root, so its issuer cannot be asked",
        "long": f"the revocation status of {signer} cannot be determined: "
        f"the chain is longer than {MAX_CHAIN} certificates",
        "empty": "the chain is empty",
    }
    result = check(chains[shape])
    assert result.status == "unknown"
    assert result.reason.split("; ")[0] == first[shape]


# -- turned off; the offline pass ----------------------------------------------------------


def test_turned_off_it_never_touches_the_network(server: RevocationServer) -> None:
    leaf, ca, root = chain(server)
    server.ocsp_modes[ca.name] = "hang"
    checker = RevocationChecker(RevocationSettings(enabled=False))
    started = time.monotonic()
    with offline():  # would raise NeedsNetwork at the first I/O
        result = checker.check(certs(leaf, ca, root), Deadline(10))
    assert time.monotonic() - started < 0.1
    assert result.status == "skipped"
    assert result.reason == "revocation was not checked: revocation checking is turned off"
    assert server.hits[f"ocsp/{ca.name}"] == 0


def test_the_offline_pass_answers_from_the_cache_only(server: RevocationServer) -> None:
    leaf, ca, root = chain(server)
    checker = RevocationChecker(FAST)
    with pytest.raises(NeedsNetwork), offline():
        checker.check(certs(leaf, ca, root), Deadline(10))
    check(certs(leaf, ca, root), checker=checker)
    with offline():
        assert checker.check(certs(leaf, ca, root), Deadline(10)).status == "good"


# -- through verify_trust, as the signature check will call it ------------------------------


@pytest.mark.parametrize(
    ("name_", "revoked", "outcome"),
    [
        ("strict", False, "passed"),
        ("strict", True, "refused"),
        ("permissive", True, "logged"),
    ],
)
def test_verify_trust_with_the_real_checker(
    server: RevocationServer, name_: str, revoked: bool, outcome: str
) -> None:
    leaf, ca, root = chain(server)
    if revoked:
        ca.revoke(leaf.cert, at=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    checker = RevocationChecker(FAST)
    signed = envelope(certs(leaf, ca, root))
    store = TrustStore(ca=(root.cert,))

    def run() -> TrustResult:
        return verify_trust(
            signed, store, ANY, level(name_), now(), revocation=checker, deadline=Deadline(10)
        )

    if outcome == "refused":
        subject = leaf.cert.subject.rfc4514_string()
        with pytest.raises(NotationError) as refused:
            run()
        assert str(refused.value) == (
            f"revocation: revoked: certificate {subject} is revoked at 2026-01-02T03:04:05Z "
            f"(keyCompromise), per OCSP {server.ocsp_url(ca.name)}"
        )
        return
    result = run()
    assert (Validation.REVOCATION in result.passed) is (outcome == "passed")
    assert [f.validation for f in result.logged] == (
        [Validation.REVOCATION] if outcome == "logged" else []
    )


def test_verify_trust_applies_the_invalidity_date_at_the_timestamp_time(
    server: RevocationServer,
) -> None:
    """A key invalid only after a TSA stamped the signature does not revoke it."""
    leaf, ca, root = chain(server)
    tsa = TimestampAuthority()
    made = now() - dt.timedelta(hours=3)
    signature = b"the signature value"
    signed = envelope(
        certs(leaf, ca, root), signature=signature, timestamp=tsa.token(signature, when=made)
    )
    hour = dt.timedelta(hours=1)
    ca.revoke(leaf.cert, at=now() - hour, invalid_since=made + hour)
    store = TrustStore(ca=(root.cert,), tsa=(tsa.root.cert,))
    checker = RevocationChecker(FAST)
    result = verify_trust(
        signed, store, ANY, level("strict"), now(), revocation=checker, deadline=Deadline(10)
    )
    assert Validation.REVOCATION in result.passed
    # Stamped after the key became invalid: revoked.
    late = envelope(
        certs(leaf, ca, root),
        signature=signature,
        timestamp=tsa.token(signature, when=made + hour + dt.timedelta(minutes=1)),
    )
    with pytest.raises(NotationError, match=r"revocation: revoked: certificate .* is revoked"):
        verify_trust(
            late, store, ANY, level("strict"), now(), revocation=checker, deadline=Deadline(10)
        )


def test_an_untrusted_chain_never_has_its_revocation_addresses_fetched(
    server: RevocationServer,
) -> None:
    """At audit, authenticity is only logged: the chain's own OCSP and CRL URLs are the
    signer's choice (any host, internal ones too), so nothing is fetched from them."""
    leaf, ca, root = chain(server)
    stranger = Authority.root("stranger root")
    before = sum(server.hits.values())
    result = verify_trust(
        envelope(certs(leaf, ca, root)),
        TrustStore(ca=(stranger.cert,)),
        ANY,
        level("audit"),
        now(),
        revocation=RevocationChecker(FAST),
        deadline=Deadline(10),
    )
    assert not result.authentic
    assert Validation.REVOCATION in result.skipped
    assert sum(server.hits.values()) == before
