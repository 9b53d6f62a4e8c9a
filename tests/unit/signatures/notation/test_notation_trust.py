"""verify_trust: the specification's validations at each level, on real and hostile signatures."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID as EKU

from tests.support.notation_pki import (
    DAY,
    NOW,
    Authority,
    Signing,
    TimestampAuthority,
    envelope,
    name,
    real_jws,
)
from tests.support.notation_pki import fixture_certificates as fixture
from webhook.core.deadline import Deadline
from webhook.core.errors import UpstreamError
from webhook.signatures.notation.model import SIGNING_AUTHORITY, NotationError
from webhook.signatures.notation.trust import verify_trust
from webhook.signatures.signers import count_distinct, key_signer
from webhook.trust.notation.identities import parse_identities
from webhook.trust.notation.levels import Validation, level
from webhook.trust.notation.truststore import TrustStore

HOUR = dt.timedelta(hours=1)
SIGNATURE = b"signature value"
ANY = parse_identities(["*"])
BUILDER = parse_identities(["x509.subject: C=US, ST=WA, O=acme-rabbits, CN=builder"])
NO_REVOCATION = level("strict", {"revocation": "skip"})


@dataclass
class Status:
    state: str
    reason: str = ""


@dataclass
class Revocation:
    """A stand-in for revocation.py's checker: answers ``states`` in turn, records chains."""

    states: Sequence[str] = ("good",)
    raises: bool = False
    calls: list[tuple[x509.Certificate, ...]] = field(default_factory=list)
    #: The signing time each call was given.
    times: list[dt.datetime | None] = field(default_factory=list)

    def __call__(
        self,
        chain: Sequence[x509.Certificate],
        deadline: Deadline,
        /,
        *,
        signing_time: dt.datetime | None = None,
    ) -> Status:
        assert deadline.remaining() > 0
        self.calls.append(tuple(chain))
        self.times.append(signing_time)
        if self.raises:
            raise UpstreamError("OCSP responder ocsp.test timed out")
        state = self.states[min(len(self.calls), len(self.states)) - 1]
        return Status(state, f"{state} by OCSP")


@pytest.fixture(scope="module")
def root() -> Authority:
    return Authority.root()


@pytest.fixture(scope="module")
def signing(root: Authority) -> Signing:
    return root.intermediate().leaf("builder")


@pytest.fixture(scope="module")
def tsa() -> TimestampAuthority:
    return TimestampAuthority()


def _store(root: Authority, tsa: TimestampAuthority | None = None) -> TrustStore:
    return TrustStore(ca=(root.cert,), tsa=(tsa.root.cert,) if tsa else ())


def _expired(root: Authority) -> Signing:
    """A signing certificate that expired an hour ago, after living most of a day."""
    return root.intermediate().leaf("builder", start=NOW - 20 * HOUR, end=NOW - HOUR)


# Real Notation signatures (notation-go's test data, GlobalSign timestamps).


def test_a_real_jws_with_a_real_timestamp_is_trusted() -> None:
    token, signature, chain = real_jws("jwsWithTimestamp.sig")
    store = TrustStore(ca=fixture("TestTimestamp.crt"), tsa=fixture("globalsignRoot.cer"))
    identities = parse_identities(["x509.subject: C=US, ST=WA, L=Seattle, O=Notary, CN=alpine"])
    result = verify_trust(
        envelope(chain, signature=signature, timestamp=token), store, identities, NO_REVOCATION, NOW
    )
    assert result.authentic and result.logged == ()
    assert result.identity == "x509.subject: C=US, ST=WA, L=Seattle, O=Notary, CN=alpine"
    assert result.timestamp is not None
    assert result.timestamp.time.isoformat() == "2024-06-18T06:29:37+00:00"


def test_a_real_signature_by_a_long_expired_certificate_is_trusted_by_its_timestamp() -> None:
    # CN=testTSA was valid ten minutes on 2024-06-18; GlobalSign stamped the signature then.
    token, signature, chain = real_jws("jwsExpiredWithTimestamp.sig")
    assert chain[0].not_valid_after_utc < NOW
    with_tsa = TrustStore(ca=tuple(chain), tsa=fixture("globalsignRoot.cer"))
    signed = envelope(chain, signature=signature, timestamp=token)
    result = verify_trust(signed, with_tsa, ANY, NO_REVOCATION, NOW)
    assert Validation.AUTHENTIC_TIMESTAMP in result.passed
    without_tsa = TrustStore(ca=tuple(chain))
    with pytest.raises(NotationError, match=r"authenticTimestamp: at verification time, .*expired"):
        verify_trust(signed, without_tsa, ANY, NO_REVOCATION, NOW)
    wrong_tsa = TrustStore(ca=tuple(chain), tsa=fixture("DigiCertTSARootSHA384.cer"))
    with pytest.raises(NotationError, match=r"authenticTimestamp: .*does not chain"):
        verify_trust(signed, wrong_tsa, ANY, NO_REVOCATION, NOW)


# The hostile cases of the issue, at level strict.


def test_a_good_signature_passes_every_validation(
    root: Authority, signing: Signing, tsa: TimestampAuthority
) -> None:
    signed = envelope(signing.chain, signature=SIGNATURE, timestamp=tsa.token(SIGNATURE))
    result = verify_trust(
        signed, _store(root, tsa), BUILDER, level("strict"), NOW, revocation=Revocation()
    )
    assert set(result.passed) == set(Validation)
    assert result.subject == "CN=builder,O=acme-rabbits,L=Seattle,ST=WA,C=US"


def test_a_chain_to_an_untrusted_root_is_refused(signing: Signing) -> None:
    stranger = Authority.root("wabbit root")
    with pytest.raises(NotationError, match=r"authenticity: .* does not chain to the trust store"):
        verify_trust(envelope(signing.chain), _store(stranger), ANY, NO_REVOCATION, NOW)


def test_an_intermediate_that_is_not_a_ca_is_refused_even_under_audit(root: Authority) -> None:
    chain = root.intermediate(ca=False).leaf().chain
    for name_ in ("strict", "permissive", "audit"):
        with pytest.raises(NotationError, match=r"integrity: .*is not a CA"):
            verify_trust(envelope(chain), _store(root), ANY, level(name_), NOW)


def test_a_leaf_without_code_signing_usage_is_refused(root: Authority) -> None:
    chain = root.leaf(eku=[EKU.SERVER_AUTH]).chain
    with pytest.raises(NotationError, match=r"integrity: .*serverAuth, not for code signing"):
        verify_trust(envelope(chain), _store(root), ANY, level("audit"), NOW)


def test_an_expired_certificate_without_timestamp_is_refused(root: Authority) -> None:
    expired = _expired(root)
    with pytest.raises(
        NotationError, match=r"authenticTimestamp: at verification time, .* had expired"
    ):
        verify_trust(envelope(expired.chain), _store(root), ANY, NO_REVOCATION, NOW)


def test_an_expired_certificate_with_a_valid_timestamp_is_accepted(
    root: Authority, tsa: TimestampAuthority
) -> None:
    expired = _expired(root)
    token = tsa.token(SIGNATURE, when=NOW - 2 * HOUR)
    signed = envelope(expired.chain, signature=SIGNATURE, timestamp=token)
    result = verify_trust(signed, _store(root, tsa), ANY, NO_REVOCATION, NOW)
    assert result.authentic and result.timestamp is not None
    assert result.timestamp.time == NOW - 2 * HOUR


def test_a_timestamp_after_the_certificate_expired_is_refused(
    root: Authority, tsa: TimestampAuthority
) -> None:
    expired = _expired(root)
    token = tsa.token(SIGNATURE, when=NOW - HOUR + dt.timedelta(seconds=1))
    signed = envelope(expired.chain, signature=SIGNATURE, timestamp=token)
    with pytest.raises(NotationError, match=r"at the timestamp's time, .* had expired"):
        verify_trust(signed, _store(root, tsa), ANY, NO_REVOCATION, NOW)


def test_a_timestamp_for_another_signature_is_refused(
    root: Authority, signing: Signing, tsa: TimestampAuthority
) -> None:
    signed = envelope(signing.chain, signature=SIGNATURE, timestamp=tsa.token(b"another"))
    with pytest.raises(NotationError, match="authenticTimestamp: the timestamp is for another"):
        verify_trust(signed, _store(root, tsa), ANY, NO_REVOCATION, NOW)


def test_a_timestamp_of_a_tsa_not_in_the_store_is_refused(
    root: Authority, signing: Signing, tsa: TimestampAuthority
) -> None:
    token = TimestampAuthority("rogue tsa").token(SIGNATURE)
    signed = envelope(signing.chain, signature=SIGNATURE, timestamp=token)
    with pytest.raises(NotationError, match=r"authenticTimestamp: .*rogue tsa.* does not chain"):
        verify_trust(signed, _store(root, tsa), ANY, NO_REVOCATION, NOW)


def test_a_forged_certificate_in_the_timestamp_bag_is_refused(
    root: Authority, signing: Signing, tsa: TimestampAuthority
) -> None:
    rogue = TimestampAuthority("wabbit tsa")  # the same names as the trusted TSA, other keys
    token = rogue.token(SIGNATURE, bag=[rogue.cert, tsa.intermediate.cert, tsa.root.cert])
    signed = envelope(signing.chain, signature=SIGNATURE, timestamp=token)
    with pytest.raises(NotationError, match=r"authenticTimestamp: .*does not chain"):
        verify_trust(signed, _store(root, tsa), ANY, NO_REVOCATION, NOW)


def test_an_identity_outside_trusted_identities_is_refused(root: Authority) -> None:
    chain = root.leaf("intruder").chain
    with pytest.raises(NotationError, match="authenticity: signing certificate 'CN=intruder,"):
        verify_trust(envelope(chain), _store(root), BUILDER, NO_REVOCATION, NOW)


def test_a_passed_expiry_is_refused(root: Authority, signing: Signing) -> None:
    signed = envelope(signing.chain, expiry=NOW - dt.timedelta(seconds=1))
    with pytest.raises(NotationError, match="expiry: the signature expired at"):
        verify_trust(signed, _store(root), ANY, NO_REVOCATION, NOW)
    assert verify_trust(
        envelope(signing.chain, expiry=NOW + DAY), _store(root), ANY, NO_REVOCATION, NOW
    )


def test_a_missing_timestamp_is_refused_when_the_policy_trusts_a_tsa(
    root: Authority, signing: Signing, tsa: TimestampAuthority
) -> None:
    with pytest.raises(NotationError, match="no timestamp countersignature"):
        verify_trust(envelope(signing.chain), _store(root, tsa), ANY, NO_REVOCATION, NOW)
    result = verify_trust(
        envelope(signing.chain),
        _store(root, tsa),
        ANY,
        NO_REVOCATION,
        NOW,
        verify_timestamp_when="afterCertExpiry",
    )
    assert result.timestamp is None and Validation.AUTHENTIC_TIMESTAMP in result.passed


def test_a_hostile_subject_cannot_forge_a_line(root: Authority) -> None:
    chain = root.leaf(subject=name("evil\nAdmission allowed")).chain
    with pytest.raises(NotationError) as caught:
        verify_trust(envelope(chain), _store(root), BUILDER, NO_REVOCATION, NOW)
    assert "\n" not in str(caught.value)


# Signing authority.


def test_signing_authority_uses_its_store_and_authentic_signing_time(root: Authority) -> None:
    chain = root.leaf("builder", start=NOW - 2 * DAY + HOUR, end=NOW - HOUR).chain
    sa_store = TrustStore(signing_authority=(root.cert,))
    at = envelope(chain, scheme=SIGNING_AUTHORITY, authentic_signing_time=NOW - 2 * HOUR)
    assert verify_trust(at, sa_store, ANY, NO_REVOCATION, NOW).authentic
    with pytest.raises(NotationError, match="holds no signingAuthority certificate"):
        verify_trust(at, _store(root), ANY, NO_REVOCATION, NOW)
    late = envelope(chain, scheme=SIGNING_AUTHORITY, authentic_signing_time=NOW)
    with pytest.raises(NotationError, match=r"at the authentic signing time, .* had expired"):
        verify_trust(late, sa_store, ANY, NO_REVOCATION, NOW)
    missing = envelope(chain, scheme=SIGNING_AUTHORITY)
    with pytest.raises(NotationError, match="no authentic signing time"):
        verify_trust(missing, sa_store, ANY, NO_REVOCATION, NOW)


# Revocation: called only as the level asks.


@pytest.mark.parametrize(
    ("name_", "states", "outcome"),
    [
        ("strict", ("good",), "passed"),
        ("strict", ("revoked",), "revocation: revoked: revoked by OCSP"),
        ("strict", ("unknown",), "revocation: revocation status unknown: unknown by OCSP"),
        ("permissive", ("revoked",), "logged"),
        ("audit", ("unknown",), "logged"),
    ],
)
def test_revocation_follows_the_level(
    root: Authority, signing: Signing, name_: str, states: tuple[str, ...], outcome: str
) -> None:
    checker = Revocation(states)
    run = lambda: verify_trust(  # noqa: E731
        envelope(signing.chain), _store(root), ANY, level(name_), NOW, revocation=checker
    )
    if outcome in ("passed", "logged"):
        result = run()
        assert (Validation.REVOCATION in result.passed) is (outcome == "passed")
        assert [f.validation for f in result.logged] == (
            [Validation.REVOCATION] if outcome == "logged" else []
        )
    else:
        with pytest.raises(NotationError, match=outcome):
            run()
    assert checker.calls == [signing.chain]


def test_revocation_that_cannot_be_reached_is_unknown(root: Authority, signing: Signing) -> None:
    with pytest.raises(
        NotationError, match=r"revocation status unknown: OCSP responder ocsp.test timed out"
    ):
        verify_trust(
            envelope(signing.chain),
            _store(root),
            ANY,
            level("strict"),
            NOW,
            revocation=Revocation(raises=True),
        )


def test_without_a_checker_strict_refuses_and_skip_does_not_ask(
    root: Authority, signing: Signing
) -> None:
    with pytest.raises(
        NotationError, match=r"no revocation checker is configured; .*override revocation: skip"
    ):
        verify_trust(envelope(signing.chain), _store(root), ANY, level("strict"), NOW)
    checker = Revocation(("revoked",))
    result = verify_trust(
        envelope(signing.chain), _store(root), ANY, NO_REVOCATION, NOW, revocation=checker
    )
    assert checker.calls == [] and result.skipped == (Validation.REVOCATION,)


def test_the_tsa_chain_is_checked_for_revocation_too(
    root: Authority, signing: Signing, tsa: TimestampAuthority
) -> None:
    signed = envelope(signing.chain, signature=SIGNATURE, timestamp=tsa.token(SIGNATURE))
    checker = Revocation(("revoked", "good"))
    with pytest.raises(NotationError, match="authenticTimestamp: the timestamp authority: revoked"):
        verify_trust(signed, _store(root, tsa), ANY, level("strict"), NOW, revocation=checker)
    assert checker.calls == [(tsa.cert, tsa.intermediate.cert, tsa.root.cert)]


@pytest.mark.parametrize("why", ["untrusted root", "other identity"])
def test_an_unauthentic_signer_asks_no_revocation_even_with_a_trusted_timestamp(
    root: Authority, signing: Signing, tsa: TimestampAuthority, why: str
) -> None:
    # Under audit the verification goes on past a failed authenticity; the chain's
    # (and the TSA's) OCSP and CRL addresses must still never be asked.
    signed = envelope(signing.chain, signature=SIGNATURE, timestamp=tsa.token(SIGNATURE))
    trusted = Authority.root("stranger") if why == "untrusted root" else root
    identities = (
        parse_identities(["x509.subject: C=US, ST=WA, O=someone-else"])
        if why == "other identity"
        else ANY
    )
    checker = Revocation(("good",))
    result = verify_trust(
        signed, _store(trusted, tsa), identities, level("audit"), NOW, revocation=checker
    )
    assert checker.calls == []
    assert not result.authentic and Validation.REVOCATION in result.skipped
    assert Validation.AUTHENTIC_TIMESTAMP in result.passed


def test_revocation_is_asked_with_the_authentic_signing_time(
    root: Authority, signing: Signing, tsa: TimestampAuthority
) -> None:
    # notary.x509 with a timestamp: its upper limit (genTime plus the 1 s accuracy).
    token = tsa.token(SIGNATURE, when=NOW - 2 * HOUR)
    stamped = envelope(signing.chain, signature=SIGNATURE, timestamp=token)
    checker = Revocation(("good", "good"))
    verify_trust(stamped, _store(root, tsa), ANY, level("strict"), NOW, revocation=checker)
    assert checker.calls[1] == signing.chain
    assert checker.times == [None, NOW - 2 * HOUR + dt.timedelta(seconds=1)]
    # notary.x509 without a timestamp: none; the signer's own signingTime is never used.
    checker = Revocation()
    verify_trust(
        envelope(signing.chain), _store(root), ANY, level("strict"), NOW, revocation=checker
    )
    assert checker.times == [None]
    # notary.x509.signingAuthority: its signed authenticSigningTime.
    checker = Revocation()
    by_authority = envelope(
        signing.chain, scheme=SIGNING_AUTHORITY, authentic_signing_time=NOW - 3 * HOUR
    )
    store = TrustStore(signing_authority=(root.cert,))
    verify_trust(by_authority, store, ANY, level("strict"), NOW, revocation=checker)
    assert checker.times == [NOW - 3 * HOUR]


def test_a_checker_turned_off_leaves_revocation_skipped_not_failed(
    root: Authority, signing: Signing, tsa: TimestampAuthority
) -> None:
    checker = Revocation(("skipped",))
    result = verify_trust(
        envelope(signing.chain), _store(root), ANY, level("strict"), NOW, revocation=checker
    )
    assert result.skipped == (Validation.REVOCATION,) and result.logged == ()
    assert Validation.REVOCATION not in result.passed
    # The timestamp authority's chain too: not checked is not revoked.
    token = tsa.token(SIGNATURE)
    stamped = envelope(signing.chain, signature=SIGNATURE, timestamp=token)
    checker = Revocation(("skipped", "skipped"))
    result = verify_trust(stamped, _store(root, tsa), ANY, level("strict"), NOW, revocation=checker)
    assert Validation.AUTHENTIC_TIMESTAMP in result.passed
    assert result.skipped == (Validation.REVOCATION,)


# Each level's behaviour, failure by failure.

FAILURES = ("authenticity", "authenticTimestamp", "expiry", "revocation")


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize(
    ("name_", "enforced"),
    [
        ("strict", {"authenticity", "authenticTimestamp", "expiry", "revocation"}),
        ("permissive", {"authenticity"}),
        ("audit", set()),
    ],
)
def test_each_level_enforces_or_logs_each_failure(
    root: Authority, name_: str, enforced: set[str], failure: str
) -> None:
    leaf_options = (
        {"start": NOW - 20 * HOUR, "end": NOW - HOUR} if failure == "authenticTimestamp" else {}
    )
    chain = root.intermediate().leaf("builder", **leaf_options).chain
    trusted = Authority.root("stranger") if failure == "authenticity" else root
    expiry = NOW - HOUR if failure == "expiry" else None
    checker = Revocation(("revoked",) if failure == "revocation" else ("good",))
    run = lambda: verify_trust(  # noqa: E731
        envelope(chain, expiry=expiry), _store(trusted), ANY, level(name_), NOW, revocation=checker
    )
    if failure in enforced:
        with pytest.raises(NotationError, match=f"^{failure}: "):
            run()
        return
    result = run()
    assert [finding.validation.value for finding in result.logged] == [failure]
    # An untrusted chain's revocation addresses are never fetched: skipped, not passed.
    unrun = {Validation.REVOCATION} if failure == "authenticity" else set()
    assert set(result.passed) == set(Validation) - {Validation(failure)} - unrun
    assert set(result.skipped) == unrun
    assert result.authentic is (failure != "authenticity")


def test_skip_verifies_nothing_and_names_no_signer(root: Authority) -> None:
    chain = Authority.root("stranger").leaf(eku=[EKU.SERVER_AUTH]).chain
    result = verify_trust(envelope(chain), _store(root), BUILDER, level("skip"), NOW)
    assert result.signer is None and result.passed == () and result.skipped == tuple(Validation)
    assert not result.authentic


# Distinct signers.


def test_one_certificate_is_one_signer_and_shares_its_key_with_cosign(
    root: Authority, signing: Signing
) -> None:
    store = _store(root)
    first = verify_trust(envelope(signing.chain), store, ANY, NO_REVOCATION, NOW).signer
    second = verify_trust(
        envelope(signing.chain, signature=b"a COSE one"), store, ANY, NO_REVOCATION, NOW
    ).signer
    assert first is not None and second is not None and first.tokens == second.tokens
    cosign = key_signer(signing.key.public_key())
    counted = count_distinct([("jws", [first]), ("cose", [second]), ("cosign-key", [cosign])])
    assert len(counted.counted) == 1


def test_one_subject_of_one_issuer_is_one_signer_across_keys(root: Authority) -> None:
    inter = root.intermediate()
    store = _store(root)
    signers = [
        verify_trust(envelope(inter.leaf("builder").chain), store, ANY, NO_REVOCATION, NOW).signer
        for _ in range(2)
    ]
    assert len(count_distinct([("a", [signers[0]]), ("b", [signers[1]])]).counted) == 1  # type: ignore[list-item]
    elsewhere = verify_trust(envelope(root.leaf("builder").chain), store, ANY, NO_REVOCATION, NOW)
    assert len(count_distinct([("a", [signers[0]]), ("b", [elsewhere.signer])]).counted) == 2  # type: ignore[list-item]
