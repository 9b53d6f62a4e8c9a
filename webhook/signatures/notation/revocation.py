"""Whether any certificate of a Notation chain is revoked: OCSP first, then CRL.

Follows the Notary Project trust policy, "Certificate Revocation Evaluation":
from the root to the signing certificate, each certificate is checked
against its issuer (the next one in the chain). A certificate that names no
OCSP responder and no CRL distribution point is not revocable and passes; one
that names some is asked by OCSP first (``ocsp``), each responder in turn,
and when none answers usably, by CRL (``crl``), each distribution point in
turn. The chain is ``revoked`` when a certificate is, ``unknown`` when a
status cannot be had (the message says for whom and why: no usable URL, a
timeout, a bad signature, an answer too large, a stale one), else ``good``.
The root is a trust anchor and is never asked about.

A revoked certificate whose source gives an invalidity date later than the
signature's authentic signing time does not revoke that signature (the
specification's rule for OCSP and CRL); without an invalidity date, or
without an authentic time, revoked is revoked. ``signing_time`` must be
authentic: a verified timestamp's upper limit, or the
``authenticSigningTime`` of ``notary.x509.signingAuthority``, never the
signer's own claim.

Call ``check`` only on a chain that verified to the trust store: the URLs
asked come from its certificates, and an answer is trusted because the
issuer's key signed it.

Bounds: each fetch runs within the review's ``Deadline`` and its own
threshold (2 s per OCSP URL, 5 s per CRL URL, as the specification says), reads at
most ``max_ocsp_bytes`` or ``max_crl_bytes`` (charged to the review's budget),
and plain HTTP only, without redirects to other hosts (``fetcher``). At most
``MAX_LOCATIONS`` URLs per certificate and method and ``MAX_CHAIN``
certificates are tried. Concurrent reviews asking one URL share one fetch
(single flight); a finding is cached per (issuer, serial number) until the
source's nextUpdate (at most ``max_cache_seconds``), in at most
``cache_size`` entries. Unknowns are not cached; the per-host circuit breaker
keeps a dead responder from costing every review its timeout.

Air-gapped clusters, whose nodes cannot reach the CAs' responders: set the
verification level's revocation to ``skip`` (the trust policy's override), or
build the checker with ``RevocationSettings(enabled=False)``: ``check`` then
returns ``skipped`` at once and never touches the network. Under
``permissive`` or ``audit`` an unreachable responder is only logged, but each
cold review still waits for it until the breaker opens: turn checking off
instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cachetools import TLRUCache
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import AuthorityInformationAccessOID

from webhook.cache.singleflight import SingleFlight
from webhook.core.deadline import Deadline
from webhook.registry.network import Network
from webhook.signatures.notation import crl, ocsp
from webhook.signatures.notation.certstatus import CertificateRevocation as CertificateRevocation
from webhook.signatures.notation.certstatus import ChainRevocation as ChainRevocation
from webhook.signatures.notation.certstatus import (
    Finding,
    Unavailable,
    judged,
    shown,
    unchecked,
    unknown,
)
from webhook.signatures.notation.fetcher import Fetcher

#: At most this many OCSP URLs, and as many CRL URLs, are tried per certificate.
MAX_LOCATIONS = 4
#: Longer chains are not checked (their status is unknown).
MAX_CHAIN = 8

#: ``observer(cache name, "hit" | "miss")``, for metrics.
Observer = Callable[[str, str], None]


@dataclass(frozen=True, slots=True)
class RevocationSettings:
    """How revocation is checked; ``enabled=False`` is the air-gapped mode (see the module)."""

    enabled: bool = True
    ocsp_seconds: float = 2.0
    crl_seconds: float = 5.0
    #: notation-go's bound; real responses are 1-4 KiB.
    max_ocsp_bytes: int = 20 * 1024
    #: Below notation-go's 32 MiB: a review's whole budget is 8 MiB by default.
    max_crl_bytes: int = 4 * 1024 * 1024
    cache_size: int = 4096
    max_cache_seconds: float = 24 * 3600.0
    #: How far in the future a thisUpdate may be (clocks differ).
    skew_seconds: float = 300.0


@dataclass(frozen=True, slots=True)
class _Ask:
    deadline: Deadline
    now: datetime
    skew: timedelta


@dataclass(frozen=True, slots=True)
class _Kept:
    finding: Finding
    expires: float  # time.time()


class RevocationChecker:
    """Checks chains by OCSP and CRL; thread-safe, holding its cache and flights."""

    def __init__(
        self,
        settings: RevocationSettings | None = None,
        *,
        network: Network | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.settings = settings or RevocationSettings()
        self._fetcher = Fetcher(network or Network())
        self._observer = observer
        self._cache: TLRUCache[Hashable, _Kept] = TLRUCache(
            maxsize=self.settings.cache_size,
            ttu=lambda _k, kept, _now: kept.expires,
            timer=time.time,
        )
        self._lock = threading.Lock()
        self._flights: SingleFlight[bytes] = SingleFlight()

    def __call__(
        self,
        chain: Sequence[x509.Certificate],
        deadline: Deadline,
        /,
        *,
        signing_time: datetime | None = None,
    ) -> ChainRevocation:
        """``check``: what ``webhook.signatures.notation.trust`` calls (``RevocationCheck``)."""
        return self.check(chain, deadline, signing_time=signing_time)

    def check(
        self,
        chain: Sequence[x509.Certificate],
        deadline: Deadline,
        *,
        signing_time: datetime | None = None,
        now: datetime | None = None,
    ) -> ChainRevocation:
        """The revocation status of ``chain`` (signing certificate first, root last).

        Never raises for what a responder or distribution point does: that is
        an ``unknown`` with its reason. Stops at the first revoked certificate.
        """
        if not self.settings.enabled:
            return ChainRevocation("skipped", note="revocation checking is turned off")
        if not chain:
            return ChainRevocation("unknown", note="the chain is empty")
        if len(chain) > MAX_CHAIN:
            longer = unknown(chain[0], f"the chain is longer than {MAX_CHAIN} certificates")
            return ChainRevocation("unknown", (longer,))
        ask = _Ask(
            deadline, now or datetime.now(UTC), timedelta(seconds=self.settings.skew_seconds)
        )
        found: dict[int, CertificateRevocation] = {}
        last = len(chain) - 1
        root = chain[last]
        if root.subject == root.issuer:
            found[last] = unchecked(root, "a root, trusted as an anchor")
        else:
            found[last] = unknown(
                root, "the chain does not end at a root, so its issuer cannot be asked"
            )
        for index in reversed(range(last)):
            found[index] = self._certificate(chain[index], chain[index + 1], ask, signing_time)
            if found[index].status == "revoked":
                break
        return ChainRevocation.of(found[index] for index in sorted(found))

    def _certificate(
        self,
        cert: x509.Certificate,
        issuer: x509.Certificate,
        ask: _Ask,
        signing_time: datetime | None,
    ) -> CertificateRevocation:
        if cert.issuer != issuer.subject:
            return unknown(
                cert, f"the next certificate, {issuer.subject.rfc4514_string()}, is not its issuer"
            )
        try:
            finding = self._find(cert, issuer, ask, use_ocsp=True)
        except Unavailable as exc:
            return unknown(cert, exc.message)
        if finding is None:
            return unchecked(cert, "it names no OCSP responder or CRL distribution point")
        return judged(cert, finding, signing_time)

    def _find(
        self, cert: x509.Certificate, issuer: x509.Certificate, ask: _Ask, *, use_ocsp: bool
    ) -> Finding | None:
        """The cached or fetched finding about ``cert``; None when it names no location.

        Raises:
            Unavailable: no location gave a usable answer (each one's reason, joined).
        """
        key = _key(cert, issuer)
        with self._lock:
            kept = self._cache.get(key)
        if self._observer is not None:
            self._observer("notation_revocation", "miss" if kept is None else "hit")
        if kept is not None and kept.finding.next_update > ask.now:
            return kept.finding
        ocsp_urls, crl_urls = _locations(cert)
        if not use_ocsp:
            ocsp_urls = []
        if not ocsp_urls and not crl_urls:
            return None
        problems: list[str] = []
        finding: Finding | None = None
        for url in ocsp_urls[:MAX_LOCATIONS]:
            try:
                finding = self._ocsp(url, cert, issuer, ask)
                break
            except Unavailable as exc:
                problems.append(f"OCSP {shown(url)}: {exc.message}")
        for url in crl_urls[:MAX_LOCATIONS] if finding is None else ():
            try:
                finding = self._crl(url, cert, issuer, ask)
                break
            except Unavailable as exc:
                problems.append(f"CRL {shown(url)}: {exc.message}")
        if finding is None:
            raise Unavailable("; ".join(problems))
        left = min((finding.next_update - ask.now).total_seconds(), self.settings.max_cache_seconds)
        if left > 0:
            with self._lock:
                self._cache[key] = _Kept(finding, time.time() + left)
        return finding

    def _ocsp(
        self, url: str, cert: x509.Certificate, issuer: x509.Certificate, ask: _Ask
    ) -> Finding:
        request = ocsp.request_for(cert, issuer)
        settings = self.settings
        body = self._fetch(
            ocsp.request_url(url, request),
            ask,
            settings.ocsp_seconds,
            settings.max_ocsp_bytes,
            "application/ocsp-response",
        )

        def check_responder(responder: x509.Certificate, signer: x509.Certificate) -> None:
            self._responder(responder, signer, ask)

        return ocsp.read_response(
            body,
            request,
            issuer,
            source=shown(url),
            now=ask.now,
            skew=ask.skew,
            check_responder=check_responder,
        )

    def _responder(self, responder: x509.Certificate, issuer: x509.Certificate, ask: _Ask) -> None:
        """A delegated OCSP responder without ``ocsp-nocheck`` is checked by CRL."""
        who = responder.subject.rfc4514_string()
        try:
            finding = self._find(responder, issuer, ask, use_ocsp=False)
        except Unavailable as exc:
            raise Unavailable(
                f"the revocation of its responder's certificate {who} is unknown ({exc.message})"
            ) from None
        if finding is not None and finding.revoked:
            raise Unavailable(f"its responder's certificate {who} is revoked")

    def _crl(
        self, url: str, cert: x509.Certificate, issuer: x509.Certificate, ask: _Ask
    ) -> Finding:
        base = self._list(url, ask)
        crl.check_base(base, cert, issuer)
        lists = [base]
        deltas = crl.delta_locations(base, cert)
        if deltas:
            lists.append(self._delta(deltas, base, issuer, ask))
        return crl.status(cert, lists, source=shown(url), now=ask.now, skew=ask.skew)

    def _delta(
        self,
        urls: Sequence[str],
        base: x509.CertificateRevocationList,
        issuer: x509.Certificate,
        ask: _Ask,
    ) -> x509.CertificateRevocationList:
        problems = []
        for url in urls[:MAX_LOCATIONS]:
            try:
                delta = self._list(url, ask)
                crl.check_delta(delta, base, issuer)
                return delta
            except Unavailable as exc:
                problems.append(f"{shown(url)}: {exc.message}")
        raise Unavailable(f"its delta CRL cannot be had ({'; '.join(problems)})")

    def _list(self, url: str, ask: _Ask) -> x509.CertificateRevocationList:
        settings = self.settings
        body = self._fetch(
            url, ask, settings.crl_seconds, settings.max_crl_bytes, "application/pkix-crl"
        )
        return crl.load(body)

    def _fetch(self, url: str, ask: _Ask, seconds: float, max_bytes: int, accept: str) -> bytes:
        """The body at ``url``; concurrent askers of one URL share one fetch."""

        def fetch(deadline: Deadline) -> bytes:
            return self._fetcher.get(
                url, deadline, seconds=seconds, max_bytes=max_bytes, accept=accept
            )

        body, _shared = self._flights.run(url, fetch, ask.deadline)
        return body


def _key(cert: x509.Certificate, issuer: x509.Certificate) -> Hashable:
    """(issuer certificate, serial): a certificate, whoever's chain carries it.

    The issuer's whole certificate, not only its name: two CAs may share a name.
    """
    return issuer.fingerprint(hashes.SHA256()), cert.serial_number


def _locations(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    """The OCSP URLs (AIA) and CRL distribution point URLs of ``cert``, in order."""
    try:
        extensions = cert.extensions
    except ValueError as exc:
        raise Unavailable(f"its extensions are malformed: {exc}") from None
    responders: list[str] = []
    points: list[str] = []
    for extension in extensions:
        value = extension.value
        if isinstance(value, x509.AuthorityInformationAccess):
            responders = [
                d.access_location.value
                for d in value
                if d.access_method == AuthorityInformationAccessOID.OCSP
                and isinstance(d.access_location, x509.UniformResourceIdentifier)
            ]
        elif isinstance(value, x509.CRLDistributionPoints):
            points = crl.uris(value)
    return responders, points
