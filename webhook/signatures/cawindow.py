"""Whether the Fulcio CA that issued a signing certificate was trusted when it signed.

A trusted root gives each Fulcio CA a ``validFor`` window. sigstore-python
(4.x) builds the certificate chain from every CA the root ever listed and
never holds the signing time against a CA's ``validFor.end``: a root that
retired a CA (its key leaked, or replaced in a rotation) still accepts a
certificate that CA issued after the retirement. cosign and sigstore-go
refuse that, and so does every keyless verification here, through
``ca_window_problem``: image signatures and attestations (``keyless.py``),
policy sets (``policyset.py``) and gitsign commits (``gitsign.py``).

It runs only after sigstore-python accepted a bundle, so the signing times
it reads are verified ones: the transparency log's integration time when a
signed entry timestamp vouches for it, and each RFC 3161 timestamp's time.
Every one must fall in the window of a CA of the root that issued the
certificate: a time outside refuses the signature even when another is
inside. It is a cold-path check (verified outcomes are cached above it), and
free for a root that retired no CA before the signing time.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from sigstore._internal.trust import CertificateAuthority
from sigstore.models import Bundle

from webhook.core.untrusted import literal
from webhook.trust.trustroot import TrustRoot

__all__ = ["ca_window_problem", "signing_times"]

_STAMP = "%Y-%m-%dT%H:%M:%SZ"


def signing_times(bundle: Bundle) -> list[datetime]:
    """Every time the bundle says it was signed: the log's (with its promise) and each
    RFC 3161 timestamp's, all in UTC."""
    times = []
    entry = bundle.log_entry._inner
    if entry.integrated_time and entry.inclusion_promise:
        times.append(datetime.fromtimestamp(int(entry.integrated_time), UTC))
    data = bundle.verification_material.timestamp_verification_data
    if data is not None:
        times.extend(stamp.tst_info.gen_time for stamp in data.rfc3161_timestamps)
    return [t if t.tzinfo else t.replace(tzinfo=UTC) for t in times]


def _issued(cert: x509.Certificate, authority: CertificateAuthority) -> bool:
    """Whether ``authority``'s first certificate signed ``cert``."""
    chain = authority.certificates(allow_expired=True)
    if not chain:
        return False
    try:
        cert.verify_directly_issued_by(chain[0])
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _subject(authority: CertificateAuthority) -> x509.Name | None:
    """The subject of the CA's issuing certificate (several entries may share ``subject``)."""
    chain = authority.certificates(allow_expired=True)
    return chain[0].subject if chain else None


def _name(authority: CertificateAuthority) -> str:
    subject = _subject(authority)
    shown = subject.rfc4514_string() if subject is not None else ""
    return literal(shown or authority._inner.uri or "unnamed")


def _covers(authority: CertificateAuthority, times: list[datetime]) -> bool:
    start, end = authority.validity_period_start, authority.validity_period_end
    return all(start <= t and (end is None or t <= end) for t in times)


def ca_window_problem(root: TrustRoot, bundle: Bundle) -> str | None:
    """Why the certificate's CA was not trusted by ``root`` when the bundle was signed, or None.

    For a bundle sigstore-python accepted under ``root``: its chain ends in a
    CA of the root. When every CA of the root was trusted at every signing
    time, which one issued the certificate does not matter and nothing is
    verified (the usual root, the cheap answer). Otherwise a CA trusted then
    must have signed the certificate (the CA named as its issuer is tried
    first). The answer reads "signed at T by Fulcio CA X of trusted root R,
    which the root retired at E"; the caller adds what to do.
    """
    times = signing_times(bundle)
    if not times:
        return "the bundle carries no signing time to hold against the Fulcio CA's validity"
    authorities = root.certificate_authorities
    if all(_covers(ca, times) for ca in authorities):
        return None
    cert = bundle.signing_certificate
    named = sorted(authorities, key=lambda ca: _subject(ca) != cert.issuer)
    if any(_issued(cert, ca) for ca in named if _covers(ca, times)):
        return None
    issuers = [ca for ca in named if not _covers(ca, times) and _issued(cert, ca)]
    if not issuers:
        return f"no Fulcio CA of trusted root {root.name} issued the signing certificate"
    ca = issuers[0]
    start, end = ca.validity_period_start, ca.validity_period_end
    late = [t for t in times if end is not None and t > end]
    outside = late or [t for t in times if t < start]
    when = ", ".join(f"{t:{_STAMP}}" for t in outside)
    if late and end is not None:
        why = f"which the root retired at {end:{_STAMP}}"
    else:
        why = f"which the root trusts only from {start:{_STAMP}}"
    return f"signed at {when} by Fulcio CA {_name(ca)} of trusted root {root.name}, {why}"
