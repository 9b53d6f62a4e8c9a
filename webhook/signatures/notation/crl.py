"""CRLs (RFC 5280) for one certificate: whether a CRL may be believed, and what it says.

Sans-I/O: ``revocation`` fetches; this module judges, following the Notary
Project trust policy ("Revocation Checking with CRL", "... with Delta
CRLs"). cryptography parses the CRL, its entries and extensions and checks
its signature; the rules are here:

- a base CRL is signed by the certificate's issuer (names equal, signature
  valid with its key, and the issuer may sign CRLs when it states key
  usages); indirect CRLs (optional in the specification) are refused, as are
  CRLs partitioned by reason or scoped to other kinds of certificates than
  the one asked about, and any critical extension not understood here;
- thisUpdate is not in the future (beyond ``skew``) and nextUpdate is
  present; an expired CRL still proves a revocation it lists (other than a
  hold), as the specification says, but not a certificate's good standing;
- a delta CRL (``FreshestCRL``) is held to the same rules, must carry the
  Delta CRL Indicator, a greater CRL number than its base, and a base number
  its base meets; a delta that cannot be had leaves the status unknown;
- a certificate listed for any reason but ``certificateHold`` is revoked; a
  hold is revoked unless a delta lists ``removeFromCRL`` for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.x509.oid import ExtensionOID

from webhook.core.x509read import CERTIFICATE_ERRORS
from webhook.signatures.notation.certstatus import CERTIFICATE_HOLD, Finding, Unavailable, stamp

#: Critical CRL extensions understood here (the IDP is judged, the indicator tells a delta).
_UNDERSTOOD = frozenset({ExtensionOID.ISSUING_DISTRIBUTION_POINT, ExtensionOID.DELTA_CRL_INDICATOR})
_REMOVED = "removeFromCRL"

E = TypeVar("E", bound=x509.ExtensionType)


def load(data: bytes) -> x509.CertificateRevocationList:
    """A CRL from DER (as RFC 5280 4.2.1.13 asks of HTTP distribution points), or PEM.

    Raises:
        Unavailable: ``data`` is neither.
    """
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except CERTIFICATE_ERRORS:
        raise Unavailable("the answer is not a CRL") from None


def check_base(
    crl: x509.CertificateRevocationList,
    cert: x509.Certificate,
    issuer: x509.Certificate,
) -> None:
    """Raise Unavailable unless ``crl`` is a base CRL of ``issuer`` that covers ``cert``."""
    _signed(crl, issuer, "CRL")
    if _extension(crl, x509.DeltaCRLIndicator) is not None:
        raise Unavailable("the distribution point serves a delta CRL, not a base CRL")
    scope = _extension(crl, x509.IssuingDistributionPoint)
    if scope is None:
        return
    if scope.indirect_crl:
        raise Unavailable("indirect CRLs are not supported")
    if scope.only_some_reasons:
        raise Unavailable("CRLs partitioned by revocation reason are not supported")
    authority = _extension(cert, x509.BasicConstraints)
    is_ca = authority is not None and authority.ca
    if (
        scope.only_contains_attribute_certs
        or (scope.only_contains_ca_certs and not is_ca)
        or (scope.only_contains_user_certs and is_ca)
    ):
        raise Unavailable("the CRL does not cover this kind of certificate")


def check_delta(
    delta: x509.CertificateRevocationList,
    base: x509.CertificateRevocationList,
    issuer: x509.Certificate,
) -> None:
    """Raise Unavailable unless ``delta`` is a delta CRL of ``issuer`` that applies to ``base``."""
    _signed(delta, issuer, "delta CRL")
    indicator = _extension(delta, x509.DeltaCRLIndicator)
    if indicator is None:
        raise Unavailable("the delta CRL has no Delta CRL Indicator")
    number, base_number = _extension(delta, x509.CRLNumber), _extension(base, x509.CRLNumber)
    if number is None or base_number is None:
        raise Unavailable("the base or delta CRL has no CRL number")
    if number.crl_number <= base_number.crl_number:
        raise Unavailable(
            f"the delta CRL's number {number.crl_number} is not above its base's "
            f"{base_number.crl_number}"
        )
    if indicator.crl_number > base_number.crl_number:
        raise Unavailable(
            f"the delta CRL needs base CRL {indicator.crl_number} or later; "
            f"the base CRL is {base_number.crl_number}"
        )


def delta_locations(crl: x509.CertificateRevocationList, cert: x509.Certificate) -> list[str]:
    """The delta CRL URLs: from the base CRL's Freshest CRL extension, else the certificate's."""
    for holder in (crl, cert):
        freshest = _extension(holder, x509.FreshestCRL)
        if freshest is not None:
            return uris(freshest)
    return []


def uris(points: x509.CRLDistributionPoints | x509.FreshestCRL) -> list[str]:
    """The URIs of the full names of ``points``, in order."""
    return [
        name.value
        for point in points
        for name in point.full_name or ()
        if isinstance(name, x509.UniformResourceIdentifier)
    ]


def status(
    cert: x509.Certificate,
    lists: Sequence[x509.CertificateRevocationList],
    *,
    source: str,
    now: datetime,
    skew: timedelta,
) -> Finding:
    """What ``lists`` (a checked base CRL, then its checked delta, if any) say about ``cert``.

    Raises:
        Unavailable: a CRL is from the future, has no nextUpdate, has an entry
            for ``cert`` with a critical extension not understood here, or is
            expired without listing ``cert`` as revoked.
    """
    updates = []
    for crl in lists:
        if crl.last_update_utc > now + skew:
            raise Unavailable(
                f"the CRL is from the future (thisUpdate {stamp(crl.last_update_utc)})"
            )
        if crl.next_update_utc is None:
            raise Unavailable("the CRL has no nextUpdate, so its freshness is unknown")
        updates.append(crl.next_update_utc)
    next_update = min(updates)
    expired = next_update < now
    listed = (crl.get_revoked_certificate_by_serial_number(cert.serial_number) for crl in lists)
    finding = _listed([entry for entry in listed if entry is not None], source, next_update)
    if finding is not None and (finding.reason != CERTIFICATE_HOLD or not expired):
        return finding
    if expired:
        raise Unavailable(f"the CRL is stale: its nextUpdate {stamp(next_update)} passed")
    return Finding(False, "crl", source, next_update)


def _listed(
    entries: Sequence[x509.RevokedCertificate], source: str, next_update: datetime
) -> Finding | None:
    """The revocation the entries (base first, then delta) state, if any."""
    latest: Finding | None = None
    for entry in entries:
        try:
            extensions = entry.extensions
            reason = _entry_extension(extensions, x509.CRLReason)
            invalidity = _entry_extension(extensions, x509.InvalidityDate)
        except CERTIFICATE_ERRORS as exc:
            raise Unavailable(f"the CRL entry of the certificate is malformed: {exc}") from None
        for extension in extensions:
            known = isinstance(extension.value, x509.CRLReason | x509.InvalidityDate)
            if extension.critical and not known:
                raise Unavailable(
                    f"the CRL entry of the certificate has a critical extension "
                    f"{extension.oid.dotted_string} that is not supported"
                )
        name = reason.reason.value if reason is not None else None
        finding = Finding(
            True,
            "crl",
            source,
            next_update,
            revoked_at=entry.revocation_date_utc,
            invalid_since=invalidity.invalidity_date_utc if invalidity is not None else None,
            reason=name,
        )
        if name not in (CERTIFICATE_HOLD, _REMOVED):
            return finding  # revoked for good, whatever a later entry says
        latest = finding  # the delta's entry, read last, is the latest word on a hold
    if latest is None or latest.reason == _REMOVED:
        return None
    return latest


def _signed(crl: x509.CertificateRevocationList, issuer: x509.Certificate, what: str) -> None:
    if crl.issuer != issuer.subject:
        raise Unavailable(
            f"the {what} is issued by {crl.issuer.rfc4514_string()}, not by the certificate's "
            f"issuer {issuer.subject.rfc4514_string()} (indirect CRLs are not supported)"
        )
    usage = _extension(issuer, x509.KeyUsage)
    if usage is not None and not usage.crl_sign:
        raise Unavailable(f"the issuer {issuer.subject.rfc4514_string()} may not sign CRLs")
    try:
        valid = crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError, UnsupportedAlgorithm):
        valid = False
    if not valid:
        raise Unavailable(
            f"the {what}'s signature does not verify with the key of "
            f"{issuer.subject.rfc4514_string()}"
        )
    for extension in _extensions(crl):
        if extension.critical and extension.oid not in _UNDERSTOOD:
            raise Unavailable(
                f"the {what} has a critical extension {extension.oid.dotted_string} "
                "that is not supported"
            )


def _extensions(crl: x509.CertificateRevocationList) -> x509.Extensions:
    try:
        return crl.extensions
    except CERTIFICATE_ERRORS as exc:
        raise Unavailable(f"the CRL's extensions are malformed: {exc}") from None


def _extension(
    holder: x509.Certificate | x509.CertificateRevocationList, kind: type[E]
) -> E | None:
    if isinstance(holder, x509.Certificate):
        try:
            extensions = holder.extensions
        except CERTIFICATE_ERRORS as exc:
            raise Unavailable(f"the certificate's extensions are malformed: {exc}") from None
    else:
        extensions = _extensions(holder)
    return _entry_extension(extensions, kind)


def _entry_extension(extensions: x509.Extensions, kind: type[E]) -> E | None:
    try:
        return extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
