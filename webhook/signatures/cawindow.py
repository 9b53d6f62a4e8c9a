"""Whether the Fulcio CA and the log keys that vouch for a signature were trusted then.

A trusted root gives each Fulcio CA a ``validFor`` window. sigstore-python
(4.x) builds the certificate chain from every CA the root ever listed and
never holds the signing time against a CA's ``validFor.end``: a root that
retired a CA (its key leaked, or replaced in a rotation) still accepts a
certificate that CA issued after the retirement. cosign refuses that, and
so does every keyless verification here, through ``window_problem``: image
signatures and attestations (``keyless.py``), policy sets (``policyset.py``)
and gitsign commits (``gitsign.py``).

The same holds for log keys: sigstore-python verifies a signed entry
timestamp with a Rekor key, and an SCT with a CT log key, whatever the key's
``validFor.end``; ``log_window_problem`` holds the signed times against it
(``entry_window_problem`` for the log entries of key signatures, ``tlog.py``).
Not covered: the signed checkpoints of inclusion proofs, which carry no time.

It runs only after sigstore-python accepted a bundle, so the signing times
it reads are verified ones: the transparency log's integration time when a
signed entry timestamp vouches for it, and each RFC 3161 timestamp's time.
Every one must fall in the window of a CA of the root that issued the
certificate: a time outside refuses the signature even when another is
inside. It is a cold-path check (verified outcomes are cached above it), and
costs no signature check for a root that retired no CA before the signing
time; the log keys' windows are compared without any.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from sigstore._internal.trust import CertificateAuthority
from sigstore.models import Bundle
from sigstore_models.rekor import v1 as rekor_v1

from webhook.core.untrusted import literal
from webhook.trust.trustroot import KeyWindow, TrustRoot

__all__ = [
    "ca_window_problem",
    "entry_window_problem",
    "log_window_problem",
    "signing_times",
    "window_problem",
]

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


def _key_problem(
    keys: Mapping[bytes, KeyWindow], key_id: bytes, moment: datetime, what: str, root: str
) -> str | None:
    """Why a key the root did not trust at ``moment`` may have signed it, or None.

    ``what`` reads "<done> by <kind of log>" ("logged by transparency log").
    sigstore-python tries the key whose ID the signed thing names, or every
    key of the root when it names none: all of those must be trusted then.
    """
    named = keys.get(key_id)
    tried = [named] if named is not None else list(keys.values())
    retired = [window for window in tried if not window.covers(moment)]
    if not retired:
        return None
    window = retired[0]
    if window.end is not None and moment > window.end:
        why = f"whose key the root retired at {window.end:{_STAMP}}"
    else:
        why = f"whose key the root trusts only from {window.start:{_STAMP}}"
    done, _, kind = what.partition(" by ")
    unnamed = "" if named is not None else " (it names no key of the root; each was tried)"
    where = f"{kind} {literal(window.log)} of trusted root {root}"
    return f"{done} at {moment:{_STAMP}} by {where}, {why}{unnamed}"


def entry_window_problem(root: TrustRoot, entry: rekor_v1.TransparencyLogEntry) -> str | None:
    """Why the log key whose signed entry timestamp vouches for ``entry`` was not trusted by
    ``root`` at the entry's integration time, or None (also for an entry without one)."""
    if not (entry.integrated_time and entry.inclusion_promise):
        return None
    logged = datetime.fromtimestamp(int(entry.integrated_time), UTC)
    key_id = bytes(entry.log_id.key_id)
    what = "logged by transparency log"
    return _key_problem(root.log_keys, key_id, logged, what, root.name)


def log_window_problem(root: TrustRoot, bundle: Bundle) -> str | None:
    """Why a log key that vouched for the bundle was not trusted by ``root`` then, or None.

    sigstore-python (4.x) verifies a signed entry timestamp with a Rekor key,
    and the certificate's SCT with a CT log key, even after the root's
    ``validFor.end`` of that key. The entry's integration time and the SCT's
    time, both signed by that key, must fall in its window.
    """
    problem = entry_window_problem(root, bundle.log_entry._inner)
    if problem is not None:
        return problem
    try:
        scts = bundle.signing_certificate.extensions.get_extension_for_class(
            x509.PrecertificateSignedCertificateTimestamps
        ).value
    except x509.ExtensionNotFound:
        return None  # sigstore-python refused it already
    for sct in scts:
        stamped = sct.timestamp.replace(tzinfo=UTC)
        what = "certificate timestamp (SCT) signed by CT log"
        problem = _key_problem(root.ct_keys, sct.log_id, stamped, what, root.name)
        if problem is not None:
            return problem
    return None


def window_problem(root: TrustRoot, bundle: Bundle) -> str | None:
    """Why the Fulcio CA or a log key was not trusted by ``root`` when it vouched, or None."""
    return ca_window_problem(root, bundle) or log_window_problem(root, bundle)
