"""Whether a Notation signature's signer is trusted: the specification's validations, per level.

``verify_trust`` takes an envelope whose integrity the parser checked and
runs, in the order of the trust-store and trust-policy specification
("Signature Verification", "Steps"):

1. integrity of the chain: the certificate requirements (``chains.check_chain``),
   which notation counts under integrity and so enforces at every level;
2. authenticity: the chain leads to an anchor of the store for the signing
   scheme (``ca`` for ``notary.x509``, ``signingAuthority`` for
   ``notary.x509.signingAuthority``), and the signing certificate's subject
   is one of ``trustedIdentities``;
3. expiry: ``io.cncf.notary.expiry``, if any, is still ahead;
4. authentic timestamp: for ``notary.x509``, the chain was valid when an
   RFC 3161 timestamp of a trusted TSA says the signature existed (when the
   store holds TSA roots; otherwise the chain must be valid now); for
   ``notary.x509.signingAuthority``, at its authentic signing time;
5. revocation of the chain (and of the TSA's), by the ``RevocationCheck``
   the caller gives, called only when the level does not skip revocation,
   with the authentic signing time (a verified timestamp's upper limit, or
   ``authenticSigningTime`` under ``notary.x509.signingAuthority``; none
   otherwise), so that a certificate whose key is invalid only after the
   signature was made does not revoke it (the specification's
   invalidity-date rule). A checker that is turned off (an air-gapped
   cluster, ``skipped``) leaves revocation skipped, not failed.

A failure the level enforces raises NotationError at once; one it logs is
kept in the result and verification goes on. The result names the signer:
the signing certificate's key (the SHA-256 of its SubjectPublicKeyInfo, the
token cosign key signers carry too) and its subject under its issuer, so
that one certificate counts as one signer across JWS and COSE, and a key
used for cosign and Notation as one.

Authenticity is decided at a moment the chain is valid (now, or the nearest
instant of the chain's common validity), so that an expired chain fails the
time validation, which a level may only log, and not authenticity too.
Pure: ``now`` is a parameter; the only I/O is the revocation callable's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from cryptography import x509

from webhook.core.deadline import Deadline
from webhook.core.errors import UpstreamError
from webhook.core.untrusted import literal
from webhook.signatures.notation.chains import check_chain, trusted_path, validity_window
from webhook.signatures.notation.model import SIGNING_AUTHORITY, X509, Envelope, NotationError
from webhook.signatures.notation.timestamps import Timestamp, verify_timestamp
from webhook.signatures.signers import Signer
from webhook.trust.keys import key_fingerprint
from webhook.trust.notation.identities import TrustedIdentities
from webhook.trust.notation.levels import Action, Level, Validation
from webhook.trust.notation.truststore import TrustStore

#: When to verify a timestamp (``verifyTimestamp``): always, or once a certificate expired.
VerifyTimestamp = Literal["always", "afterCertExpiry"]
#: The time a revocation check may take when the caller gives no deadline.
DEFAULT_REVOCATION_SECONDS: Final = 10.0


class RevocationStatus(Protocol):
    """What a revocation check found for a chain: ``good``, ``revoked`` or ``unknown``, and why."""

    @property
    def state(self) -> str: ...

    @property
    def reason(self) -> str: ...


class RevocationCheck(Protocol):
    """OCSP, then CRL, for every certificate of ``chain``, within ``deadline``.

    ``signing_time`` is the authentic signing time, or None when there is
    none. Implemented by ``revocation.py``; may raise UpstreamError, which
    counts as ``unknown``; a state of ``skipped`` means checking is turned off.
    """

    def __call__(
        self,
        chain: Sequence[x509.Certificate],
        deadline: Deadline,
        /,
        *,
        signing_time: dt.datetime | None = None,
    ) -> RevocationStatus: ...


@dataclass(frozen=True, slots=True)
class Finding:
    """A validation that failed and was only logged, with why."""

    validation: Validation
    problem: str


@dataclass(frozen=True, slots=True)
class TrustResult:
    """What ``verify_trust`` established about one signature.

    ``passed`` validations succeeded; ``logged`` failed where the level only
    logs; ``skipped`` were not run. ``subject`` is the signing certificate's
    subject (RFC 4514) and ``fingerprint`` its key's; ``signer`` is None at
    level skip, which proves nothing about who signed. ``identity`` is the
    trustedIdentities entry matched; ``timestamp`` the verified
    countersignature, if one was.
    """

    level: str
    passed: tuple[Validation, ...]
    logged: tuple[Finding, ...]
    skipped: tuple[Validation, ...]
    subject: str
    fingerprint: str
    signer: Signer | None
    identity: str | None = None
    timestamp: Timestamp | None = None

    @property
    def authentic(self) -> bool:
        """Whether authenticity was verified, not merely logged as failing or skipped."""
        return Validation.AUTHENTICITY in self.passed


def verify_trust(
    envelope: Envelope,
    store: TrustStore,
    identities: TrustedIdentities,
    level: Level,
    now: dt.datetime,
    *,
    revocation: RevocationCheck | None = None,
    deadline: Deadline | None = None,
    verify_timestamp_when: VerifyTimestamp = "always",
) -> TrustResult:
    """The trust validations of ``envelope`` at ``level``, at time ``now`` (aware).

    Raises NotationError for the first failure the level enforces, saying
    which validation failed and why.
    """
    if level.skipped:
        shown = envelope.chain[0].subject.rfc4514_string() if envelope.chain else ""
        return TrustResult(level.name, (), (), tuple(Validation), shown, "", None)
    if not envelope.chain:
        raise NotationError(f"{Validation.INTEGRITY.value}: the signature carries no certificates")
    leaf = envelope.chain[0]
    subject = leaf.subject.rfc4514_string()
    run = _Run(level)
    run.record(Validation.INTEGRITY, _problem(lambda: check_chain(envelope.chain)))
    identity, problem = _authenticity(envelope, store, identities, now)
    run.record(Validation.AUTHENTICITY, problem)
    # A chain no trust store vouches for (a level that only logs authenticity) names
    # OCSP and CRL addresses its maker chose: they are never fetched.
    authentic = problem is None
    run.record(Validation.EXPIRY, _expiry(envelope, now))
    if deadline is None:
        deadline = Deadline(DEFAULT_REVOCATION_SECONDS)
    revoking = authentic and level.action(Validation.REVOCATION) is not Action.SKIP
    checker = revocation if revoking else None
    timestamp, problem = _authentic_time(envelope, store, now, verify_timestamp_when)
    if problem is None and timestamp is not None and checker is not None:
        checked, revoked = _revocation(checker, timestamp.chain, deadline, None)
        problem = f"the timestamp authority: {revoked}" if checked and revoked else None
    run.record(Validation.AUTHENTIC_TIMESTAMP, problem)
    if not authentic:
        run.skip(Validation.REVOCATION)
    elif level.action(Validation.REVOCATION) is not Action.SKIP:
        checked, problem = (
            True,
            (
                "no revocation checker is configured; configure one, or override revocation: "
                "skip where certificates cannot be checked (an air-gapped cluster)"
            ),
        )
        if revocation is not None:
            signed = _signing_time(envelope, timestamp)
            checked, problem = _revocation(revocation, envelope.chain, deadline, signed)
        if checked:
            run.record(Validation.REVOCATION, problem)
        else:
            run.skip(Validation.REVOCATION)
    fingerprint = key_fingerprint(leaf.public_key())
    issuer = leaf.issuer.rfc4514_string()
    signer = Signer(
        frozenset({f"key {fingerprint}", f"x509 {issuer}\n{subject}"}),
        f"x509.subject {literal(subject)}",
    )
    return TrustResult(
        level.name,
        tuple(run.passed),
        tuple(run.logged),
        tuple(run.skipped),
        subject,
        fingerprint,
        signer,
        identity,
        timestamp,
    )


class _Run:
    """The outcome of each validation so far, raising at the first enforced failure."""

    def __init__(self, level: Level) -> None:
        self.level = level
        self.passed: list[Validation] = []
        self.logged: list[Finding] = []
        self.skipped: list[Validation] = [
            validation for validation in Validation if level.action(validation) is Action.SKIP
        ]

    def skip(self, validation: Validation) -> None:
        """``validation`` was not run although the level asks for it (checking is off)."""
        self.skipped.append(validation)

    def record(self, validation: Validation, problem: str | None) -> None:
        if problem is None:
            self.passed.append(validation)
        elif self.level.action(validation) is Action.ENFORCE:
            raise NotationError(f"{validation.value}: {problem}")
        else:
            self.logged.append(Finding(validation, problem))


def _problem(step: Callable[[], None]) -> str | None:
    """Run ``step``; the message of the NotationError it raises, or None."""
    try:
        step()
    except NotationError as exc:
        return exc.message
    return None


def _authenticity(
    envelope: Envelope, store: TrustStore, identities: TrustedIdentities, now: dt.datetime
) -> tuple[str | None, str | None]:
    """(the identity matched, None) or (None, why the signer is not trusted)."""
    chain = envelope.chain
    anchors = store.anchors(envelope.signing_scheme)
    if not anchors:
        kind = "signingAuthority" if envelope.signing_scheme == SIGNING_AUTHORITY else "ca"
        return None, f"the trust store holds no {kind} certificate for {envelope.signing_scheme}"
    start, end = validity_window(chain)
    if start > end:
        return None, "the chain's certificates were never all valid at the same time"
    moment = min(max(now, start), end)
    try:
        path = trusted_path(chain[0], chain[1:], anchors, moment)
    except NotationError as exc:
        return None, exc.message
    if path != tuple(chain[: len(path)]):
        return None, "the path to the trust store is not the chain the signature carries"
    identity = identities.match(chain[0])
    if identity is None:
        subject = literal(chain[0].subject.rfc4514_string())
        return None, f"signing certificate {subject} matches none of the trusted identities"
    return identity, None


def _expiry(envelope: Envelope, now: dt.datetime) -> str | None:
    if envelope.expiry is not None and now >= envelope.expiry:
        return f"the signature expired at {envelope.expiry.isoformat()}"
    return None


def _authentic_time(
    envelope: Envelope, store: TrustStore, now: dt.datetime, when: VerifyTimestamp
) -> tuple[Timestamp | None, str | None]:
    """(the verified timestamp, if any; why the chain was not valid when it signed, or None)."""
    chain = envelope.chain
    if envelope.signing_scheme == SIGNING_AUTHORITY:
        signed = envelope.authentic_signing_time
        if signed is None:
            return None, "the signature has no authentic signing time"
        problem = _outside(chain, signed, signed)
        return None, (f"at the authentic signing time, {problem}" if problem else None)
    if envelope.signing_scheme != X509:
        return None, f"unknown signing scheme {literal(envelope.signing_scheme)}"
    expired = any(now > cert.not_valid_after_utc for cert in chain)
    if not store.tsa or (when == "afterCertExpiry" and not expired):
        problem = _outside(chain, now, now)
        return None, (f"at verification time, {problem}" if problem else None)
    if not envelope.timestamp:
        return None, "the signature has no timestamp countersignature and the policy trusts a TSA"
    try:
        timestamp = verify_timestamp(envelope.timestamp, envelope.signature, store.tsa)
    except NotationError as exc:
        return None, exc.message
    problem = _outside(chain, timestamp.earliest, timestamp.latest)
    return timestamp, (f"at the timestamp's time, {problem}" if problem else None)


def _outside(
    chain: Sequence[x509.Certificate], earliest: dt.datetime, latest: dt.datetime
) -> str | None:
    """Why ``chain`` is not valid throughout [earliest, latest], or None."""
    for cert in chain:
        subject = literal(cert.subject.rfc4514_string())
        if earliest < cert.not_valid_before_utc:
            return f"certificate {subject} was not yet valid (from {cert.not_valid_before_utc})"
        if latest > cert.not_valid_after_utc:
            return f"certificate {subject} had expired (on {cert.not_valid_after_utc})"
    return None


def _signing_time(envelope: Envelope, timestamp: Timestamp | None) -> dt.datetime | None:
    """When the signature was made, as far as something other than the signer says.

    The upper limit of a verified timestamp (the latest the signature can have
    been made), or the signed ``authenticSigningTime`` of a signing authority;
    never ``signingTime``, which is the signer's own claim.
    """
    if envelope.signing_scheme == SIGNING_AUTHORITY:
        return envelope.authentic_signing_time
    return timestamp.latest if timestamp is not None else None


def _revocation(
    check: RevocationCheck,
    chain: Sequence[x509.Certificate],
    deadline: Deadline,
    signing_time: dt.datetime | None,
) -> tuple[bool, str | None]:
    """(whether it was checked, why ``chain`` may be revoked or None when it is good).

    Not checked when the checker is turned off (its state is ``skipped``).
    """
    try:
        status = check(chain, deadline, signing_time=signing_time)
    except UpstreamError as exc:
        return True, f"revocation status unknown: {exc.message}"
    if status.state == "skipped":
        return False, None
    return True, _problem_of(status)


def _problem_of(status: RevocationStatus) -> str | None:
    if status.state == "good":
        return None
    if status.state == "revoked":
        return f"revoked: {status.reason}"
    return f"revocation status unknown: {status.reason}"
