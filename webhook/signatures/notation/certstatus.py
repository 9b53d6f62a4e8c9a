"""What is known of a certificate's revocation: from one source, and for one signature.

A ``Finding`` is what one OCSP response or CRL says about one certificate
(``Unavailable`` when it says nothing usable); ``judged`` turns it into the
``CertificateRevocation`` of a signature made at a given time, and
``ChainRevocation`` gathers a chain's. Shared by ``ocsp`` and ``crl`` (which
read an answer) and ``revocation`` (which asks, caches and judges), so that
each is written and tested apart and all agree on one shape. Pure data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from cryptography import x509

from webhook.core.errors import UpstreamError

Method = Literal["ocsp", "crl"]
Status = Literal["good", "revoked", "unknown", "skipped"]
#: ``unchecked``: a root, or a certificate naming no OCSP or CRL location (not revocable).
CertificateStatus = Literal["good", "revoked", "unknown", "unchecked"]

#: Longest URL (from a certificate) shown in a message.
_SHOWN_URL = 200
#: The RFC 5280 reason that suspends a certificate rather than revoking it for good.
CERTIFICATE_HOLD: Final = "certificateHold"


class Unavailable(UpstreamError):
    """One source cannot tell a certificate's revocation status; the message says why.

    Never leaves ``webhook.signatures.notation.revocation``: it becomes an
    ``unknown`` result there, which the verification level enforces or logs.
    """


@dataclass(frozen=True, slots=True)
class Finding:
    """A certificate's revocation status as one verified OCSP response or CRL states it.

    ``next_update`` is when the source promises newer information: the
    finding may be kept until then. ``revoked_at`` is the revocation time,
    ``invalid_since`` the invalidity date (RFC 5280 5.3.2: when the key is
    known or suspected to have been compromised), ``reason`` the RFC 5280
    reason name (``keyCompromise``), when the source gives them.
    """

    revoked: bool
    method: Method
    source: str
    next_update: datetime
    revoked_at: datetime | None = None
    invalid_since: datetime | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class CertificateRevocation:
    """The revocation status of one certificate of the chain, and how it was learnt.

    ``reason`` says what was found, or why nothing was. ``before_signing`` says
    whether the revocation (its invalidity date, else its time) precedes the
    authentic signing time (None without one, or when not revoked).
    """

    subject: str
    status: CertificateStatus
    reason: str
    method: Method | None = None
    source: str = ""
    revoked_at: datetime | None = None
    invalid_since: datetime | None = None
    revocation_reason: str | None = None
    before_signing: bool | None = None


@dataclass(frozen=True, slots=True)
class ChainRevocation:
    """The revocation status of a chain, and of each certificate checked (chain order)."""

    status: Status
    certificates: tuple[CertificateRevocation, ...] = ()
    note: str = ""

    @classmethod
    def of(cls, certificates: Iterable[CertificateRevocation]) -> ChainRevocation:
        """Revoked if one is, else unknown if one is, else good."""
        found = tuple(certificates)
        states = {c.status for c in found}
        status: Status = (
            "revoked" if "revoked" in states else "unknown" if "unknown" in states else "good"
        )
        return cls(status, found)

    @property
    def state(self) -> str:
        """``status``, as ``webhook.signatures.notation.trust.RevocationStatus`` names it."""
        return self.status

    @property
    def reason(self) -> str:
        """One sentence for a denial or a log line."""
        if self.status == "skipped":
            return f"revocation was not checked: {self.note}"
        if self.status == "good":
            return "no certificate of the chain is revoked"
        found = "; ".join(c.reason for c in self.certificates if c.status == self.status)
        return found or self.note


def stamp(when: datetime) -> str:
    """``when`` as messages show times: ISO 8601 in UTC, to the second."""
    return f"{when:%Y-%m-%dT%H:%M:%SZ}"


def shown(url: str) -> str:
    """``url`` as a message may show it: without credentials, printable and bounded.

    It comes from a certificate (or a redirect), so it may hold anything.
    """
    scheme, sep, rest = url.partition("://")
    if sep:
        authority, slash, path = rest.partition("/")
        url = f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"
    text = "".join(ch if ch.isprintable() else "?" for ch in url[:_SHOWN_URL])
    return text + ("..." if len(url) > _SHOWN_URL else "")


def judged(
    cert: x509.Certificate, finding: Finding, signing_time: datetime | None
) -> CertificateRevocation:
    """What ``finding`` means for a signature made at ``signing_time`` (authentic, or None).

    A revocation with an invalidity date later than the signing time does not
    revoke the signature (the Notary Project trust policy, for OCSP and CRL);
    without either, revoked is revoked.
    """
    subject = cert.subject.rfc4514_string()
    per = f"per {finding.method.upper()} {finding.source}"
    if not finding.revoked:
        return CertificateRevocation(
            subject, "good", f"{subject} is not revoked, {per}", finding.method, finding.source
        )
    since = finding.invalid_since or finding.revoked_at
    before = None if signing_time is None or since is None else since <= signing_time
    why = f" ({finding.reason})" if finding.reason else ""
    when = f" at {stamp(finding.revoked_at)}" if finding.revoked_at else ""
    status: CertificateStatus = "revoked"
    text = f"certificate {subject} is revoked{when}{why}, {per}"
    if (
        signing_time is not None
        and finding.invalid_since is not None
        and signing_time < finding.invalid_since
    ):
        status = "good"
        text = (
            f"{subject} is revoked{when}{why}, {per}, but its key is invalid only since "
            f"{stamp(finding.invalid_since)}, after the authentic signing time "
            f"{stamp(signing_time)}: the signature stands"
        )
    return CertificateRevocation(
        subject,
        status,
        text,
        finding.method,
        finding.source,
        revoked_at=finding.revoked_at,
        invalid_since=finding.invalid_since,
        revocation_reason=finding.reason,
        before_signing=before,
    )


def unknown(cert: x509.Certificate, why: str) -> CertificateRevocation:
    """``cert``'s status cannot be had, because ``why``."""
    subject = cert.subject.rfc4514_string()
    return CertificateRevocation(
        subject, "unknown", f"the revocation status of {subject} cannot be determined: {why}"
    )


def unchecked(cert: x509.Certificate, why: str) -> CertificateRevocation:
    """``cert`` is not asked about, because ``why`` (a root; no location named)."""
    subject = cert.subject.rfc4514_string()
    return CertificateRevocation(subject, "unchecked", f"{subject} is not checked: {why}")
