"""Revocation of Notation chains when responders and distribution points misbehave.

Hostile OCSP responders and CRL servers (``RevocationServer`` modes), unreachable or
unusable URLs, and the bounds every check runs within: its own thresholds, the review's
deadline and byte budget, and the per-host circuit breaker. Whatever they do, the result
is ``unknown`` with a reason, within bounded time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from cryptography import x509

from tests.support.notation_revocation import SLOW, RevocationServer, chain
from tests.support.notation_revocation_pki import Authority
from tests.unit.signatures.notation.test_notation_revocation import (
    FAST,
    certs,
    check,
    crl_only,
    dead_url,
)
from webhook.core.deadline import Deadline
from webhook.signatures.notation.revocation import RevocationChecker, RevocationSettings


@pytest.fixture(scope="module")
def server() -> Iterator[RevocationServer]:
    running = RevocationServer().start()
    yield running
    running.stop()


# -- unknown: hostile responders and distribution points -------------------------------------


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("hang", "did not answer within 0.5 s"),
        ("drip", "did not answer within 0.5 s"),
        ("flood", "sent more than 20480 bytes"),
        ("flood-chunked", "sent more than 20480 bytes"),
        ("other", "the OCSP response is about another certificate"),
        ("forged", "the OCSP response's signature does not verify with the key of"),
        ("stranger", "which the issuer did not issue"),
        ("delegate-no-eku", "which lacks the OCSP signing EKU"),
        ("stale", "the OCSP response is stale"),
        ("future", "the OCSP response is from the future"),
        ("no-next", "the OCSP response has no nextUpdate"),
        ("unknown", "the responder does not know the certificate"),
        ("try-later", "the responder answered TRY_LATER"),
        ("garbage", "the answer is not a DER OCSP response"),
        ("error", "answered HTTP 500"),
        ("redirect-away", "redirects are followed within"),
    ],
)
def test_a_hostile_responder_gives_unknown_in_bounded_time(
    server: RevocationServer, mode: str, expected: str
) -> None:
    _, ca, root = chain(server)
    leaf = ca.issue("hostile", ocsp_url=server.ocsp_url(ca.name), crl_url=dead_url("x.crl"))
    ca.revoke(leaf.cert)  # a responder must not be believed, whatever it says
    server.ocsp_modes[ca.name] = mode
    started = time.monotonic()
    result = check(certs(leaf, ca, root))
    assert time.monotonic() - started < 2.0
    assert result.status == "unknown"
    assert expected in result.reason
    assert "CRL http://127.0.0.1:" in result.reason  # then the CRL was tried


def test_a_redirect_within_the_host_is_followed(server: RevocationServer) -> None:
    leaf, ca, root = chain(server)
    server.ocsp_modes[ca.name] = "redirect-here"
    assert check(certs(leaf, ca, root)).certificates[0].method == "ocsp"
    assert any("moved=1" in path for path in server.paths)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("hang", "did not answer within 0.5 s"),
        ("drip", "did not answer within 0.5 s"),
        ("flood", "sent more than 4194304 bytes"),
        ("forged", "the CRL's signature does not verify"),
        ("stale", "the CRL is stale"),
        ("future", "the CRL is from the future"),
        ("critical", "critical extension 1.3.6.1.4.1.99999.1 that is not supported"),
        ("garbage", "the answer is not a CRL"),
    ],
)
def test_a_hostile_distribution_point_gives_unknown(
    server: RevocationServer, mode: str, expected: str
) -> None:
    leaf, ca, root = crl_only(server)
    server.crl_modes[ca.name] = mode
    started = time.monotonic()
    result = check(certs(leaf, ca, root))
    assert time.monotonic() - started < 2.0
    assert result.status == "unknown" and expected in result.reason


def test_a_stale_crl_still_proves_a_revocation(server: RevocationServer) -> None:
    leaf, ca, root = crl_only(server)
    server.crl_modes[ca.name] = "stale"
    ca.revoke(leaf.cert)
    assert check(certs(leaf, ca, root)).status == "revoked"
    ca.revoke(leaf.cert, reason=x509.ReasonFlags.certificate_hold)
    assert check(certs(leaf, ca, root)).status == "unknown"  # a hold proves nothing stale


def test_unknown_when_neither_is_reachable() -> None:
    ca = Authority.root("unreachable")
    leaf = ca.issue("signer", ocsp_url=dead_url("ocsp"), crl_url=dead_url("x.crl"))
    result = check([leaf.cert, ca.cert])
    assert result.status == "unknown"
    assert result.reason.startswith(
        f"the revocation status of {leaf.cert.subject.rfc4514_string()} cannot be determined: "
        "OCSP http://127.0.0.1:"
    )
    assert "cannot reach 127.0.0.1:" in result.reason and "; CRL http://" in result.reason


def test_only_plain_http_urls_without_credentials_are_used() -> None:
    ca = Authority.root("schemes")
    leaf = ca.issue(
        "signer",
        ocsp_url="https://ocsp.example/",
        crl_url="http://user:hunter2@crl.example/x.crl",
    )
    result = check([leaf.cert, ca.cert])
    assert result.status == "unknown"
    assert (
        "OCSP https://ocsp.example/: it is not a plain http URL, and only those are used; "
        "CRL http://crl.example/x.crl: it holds credentials, so it is not used"
    ) in result.reason
    assert "hunter2" not in result.reason and "user" not in result.reason


# -- bounds: deadline, budget, breaker; off; offline -----------------------------------------


def test_the_review_deadline_bounds_everything(server: RevocationServer) -> None:
    leaf, ca, root = chain(server)
    server.ocsp_modes[ca.name] = server.crl_modes[ca.name] = "hang"
    slow = RevocationChecker(RevocationSettings(ocsp_seconds=5, crl_seconds=5))
    started = time.monotonic()
    result = check(certs(leaf, ca, root), checker=slow, seconds=0.6)
    assert time.monotonic() - started < 1.5
    assert result.status == "unknown"
    assert "no time was left in the review" in result.reason


def test_the_review_byte_budget_bounds_what_is_read(server: RevocationServer) -> None:
    leaf, ca, root = chain(server)
    result = RevocationChecker(FAST).check(certs(leaf, ca, root), Deadline(10, max_bytes=100))
    assert result.status == "unknown"
    assert "the review read more than 100 bytes" in result.reason


def test_a_failing_responder_trips_its_breaker(server: RevocationServer) -> None:
    leaf, ca, root = chain(server)
    server.ocsp_modes[ca.name] = server.crl_modes[ca.name] = "error"
    checker = RevocationChecker(FAST)
    for _ in range(3):  # each check asks OCSP and CRL: two failures a time
        check(certs(leaf, ca, root), checker=checker)
    asked = server.hits[f"ocsp/{ca.name}"]
    result = check(certs(leaf, ca, root), checker=checker)
    assert "circuit breaker" in result.reason
    assert server.hits[f"ocsp/{ca.name}"] == asked


def test_a_slow_answer_within_its_threshold_counts(server: RevocationServer) -> None:
    leaf, ca, root = chain(server)
    server.ocsp_modes[ca.name] = "slow"
    assert FAST.ocsp_seconds > SLOW
    assert check(certs(leaf, ca, root)).certificates[0].method == "ocsp"
