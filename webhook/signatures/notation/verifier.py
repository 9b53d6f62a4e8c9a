"""Notation signatures of an image digest, verified end to end against one trust statement.

For a digest, ``Candidates`` finds the signatures (``discovery``), fetches
the image's own manifest once to learn the descriptor a signature must name
(digest, size, mediaType: ``envelope.check_target``), and parses each
envelope once (``envelope.parse_envelope``: integrity). All of that is the
same whichever authority asks, so a policy with several Notation
authorities reads and parses each signature once per review.
``verify_candidates`` then runs the trust validations of one authority
(``trust.verify_trust``: its trust store, trusted identities and level, with
the revocation checker when the level asks for revocation) on each
candidate and returns the signers it verified, with a reason for every
signature it refused. ``verify_notation`` does both for one authority.

The policy's ``annotations`` must be in the signed descriptor's annotations
(where ``notation sign --user-metadata`` puts them); a Notation signature
names no repository, so under ``matchReference`` none counts (as for a
cosign message-signature bundle: ``webhook.signatures.rules``).

Every signature read is verified, not only the first that passes: two
authorities trusting one CA are each satisfied by a distinct signer only if
both signers are known (``signers.count_distinct``). What is read is bounded
by discovery (``MAX_SIGNATURES`` manifests and envelopes, within the review's
deadline and byte budget), so a flood of signatures costs a bounded amount.
Signatures whose chain annotation names a certificate of a trust store are
read first (``prefer``), so fakes pushed later cannot hide a real one.

Levels: a signer counts when ``verify_trust`` raised nothing, that is when
every validation the level enforces passed. At ``audit``, authenticity is
only logged, so a signature whose certificate no trust store vouches for
counts, as Notation's audit level admits it; the failures it logged are kept
(``Accepted.logged``) for a warning and the decision log. At ``skip`` nothing
is verified and the authority never counts (nothing is read).

``until`` is when a verification stops holding on its own: the signature's
``io.cncf.notary.expiry``, or, when no authentic time anchors it (no
timestamp), the end of its chain's validity. A cache must not keep an
outcome past it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes

from webhook.core.deadline import Deadline
from webhook.core.reference import ImageRef
from webhook.registry.client import NotFound, RegistryClient
from webhook.signatures.notation.discovery import (
    MAX_SIGNATURES,
    Signature,
    Signatures,
    Unreadable,
    discover,
)
from webhook.signatures.notation.envelope import check_target, parse_envelope
from webhook.signatures.notation.model import (
    FORMAT_NAMES,
    SIGNING_AUTHORITY,
    Envelope,
    NotationError,
)
from webhook.signatures.notation.trust import (
    RevocationCheck,
    TrustResult,
    VerifyTimestamp,
    verify_trust,
)
from webhook.signatures.rules import annotations_problem
from webhook.signatures.signers import Signer
from webhook.trust.notation.identities import TrustedIdentities
from webhook.trust.notation.levels import Level
from webhook.trust.notation.truststore import TrustStore

#: At most this many refusals are spelt out in a reason; the rest are counted.
MAX_REASONS = 3
#: Why an authority at level skip never counts.
SKIPPED = "level skip verifies nothing, so this authority never counts toward the threshold"


@dataclass(frozen=True, slots=True)
class Subject:
    """The descriptor of the image being admitted, as its registry serves it."""

    digest: str
    size: int
    media_type: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """A signature that did not verify: its manifest's digest, envelope format and why."""

    manifest: str
    reason: str
    envelope: str = ""

    @property
    def line(self) -> str:
        """``sha256:0123456789ab (JWS): why`` for a denial."""
        kind = f" ({self.envelope})" if self.envelope else ""
        return f"{short(self.manifest)}{kind}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Accepted:
    """A signature that verified: who signed it, and what its level only logged."""

    manifest: str
    envelope: str
    signer: Signer
    result: TrustResult
    until: dt.datetime | None = None

    @property
    def logged(self) -> tuple[str, ...]:
        """One line per validation that failed and was only logged, naming the signature."""
        return tuple(
            f"{finding.validation.value}: {finding.problem} (signature {short(self.manifest)})"
            for finding in self.result.logged
        )


@dataclass(frozen=True, slots=True)
class Verification:
    """What one authority made of a digest's Notation signatures.

    ``note`` is discovery's: no signature at all, or how many were left unread.
    """

    accepted: tuple[Accepted, ...]
    refused: tuple[Refusal, ...]
    note: str = ""

    @property
    def signers(self) -> tuple[Signer, ...]:
        """The signers of the signatures that verified, in the order read."""
        return tuple(accepted.signer for accepted in self.accepted)

    @property
    def logged(self) -> tuple[str, ...]:
        """What the level only logged, over every signature that verified."""
        return tuple(line for accepted in self.accepted for line in accepted.logged)

    @property
    def until(self) -> dt.datetime | None:
        """The earliest moment a verified signature stops verifying on its own, if any."""
        ends = [accepted.until for accepted in self.accepted if accepted.until is not None]
        return min(ends) if ends else None

    def reason(self) -> str:
        """Why no signature verified: each refusal (the first few) and discovery's note."""
        if not self.refused:
            return self.note or "no Notation signature verified"
        lines = [refusal.line for refusal in self.refused[:MAX_REASONS]]
        more = len(self.refused) - MAX_REASONS
        if more > 0:
            lines.append(f"and {more} more")
        count = len(self.refused)
        text = f"no Notation signature verified ({count} read: {'; '.join(lines)})"
        return f"{text}; {self.note}" if self.note else text


def short(digest: str) -> str:
    """``sha256:`` and the first 12 hex digits: how messages name a signature manifest."""
    algorithm, _, encoded = digest.partition(":")
    return f"{algorithm}:{encoded[:12]}"


def thumbprints(store: TrustStore) -> frozenset[str]:
    """The SHA-256 (lowercase hex) of each signing root of ``store``, as notation annotates.

    Notation's ``io.cncf.notary.x509chain.thumbprint#S256`` annotation lists
    the thumbprints of a signature's chain, so a signature under this store's
    roots names one of these (discovery reads such signatures first).
    """
    return frozenset(
        cert.fingerprint(hashes.SHA256()).hex() for cert in (*store.ca, *store.signing_authority)
    )


class Candidates:
    """The Notation signatures of one digest, each read, parsed and matched to the image once.

    Not thread-safe; one review's. Holds the review's deadline.
    """

    def __init__(
        self,
        client: RegistryClient,
        image: ImageRef,
        digest: str,
        deadline: Deadline,
        *,
        prefer: frozenset[str] = frozenset(),
        limit: int = MAX_SIGNATURES,
        subject: Subject | None = None,
        required_annotations: Mapping[str, str] | None = None,
        match_reference: bool = False,
    ) -> None:
        self._client = client
        self._image = image
        self._digest = digest
        self._deadline = deadline
        self._prefer = prefer
        self._limit = limit
        self._subject = subject
        self._required = dict(required_annotations or {})
        self._match_reference = match_reference
        self._signatures: Signatures | None = None
        self._parsed: list[Envelope | Refusal] = []
        self._names: list[tuple[str, str]] = []  # (manifest, envelope format) of each parsed

    @property
    def note(self) -> str:
        """Discovery's note (see ``Signatures.note``); empty before anything was read."""
        return self._signatures.note if self._signatures is not None else ""

    def __iter__(self) -> Iterator[tuple[str, str, Envelope | Refusal]]:
        """(manifest digest, envelope format, the envelope or why it is refused), in order.

        Raises:
            UpstreamError: the registry failed, or the review ran out of time or budget.
        """
        for index, found in enumerate(self._found()):
            if index == len(self._parsed):
                self._parsed.append(self._parse(found))
                self._names.append((found.manifest, _format(found)))
            manifest, kind = self._names[index]
            yield manifest, kind, self._parsed[index]

    def _found(self) -> Signatures:
        if self._signatures is None:
            self._signatures = discover(
                self._client,
                self._image,
                self._digest,
                self._deadline,
                limit=self._limit,
                prefer=self._prefer,
            )
        return self._signatures

    def _parse(self, found: Signature | Unreadable) -> Envelope | Refusal:
        if isinstance(found, Unreadable):
            return Refusal(found.manifest, found.reason)
        kind = _format(found)
        try:
            envelope = parse_envelope(found.media_type, found.envelope)
            subject = self.subject()
            check_target(envelope, subject.digest, subject.size, subject.media_type)
        except NotationError as exc:
            return Refusal(found.manifest, exc.message, kind)
        problem = self._rules(envelope)
        return envelope if problem is None else Refusal(found.manifest, problem, kind)

    def _rules(self, envelope: Envelope) -> str | None:
        """Why ``envelope`` does not meet the policy's ``annotations`` or ``matchReference``."""
        problem = annotations_problem(dict(envelope.target.annotations), self._required)
        if problem is not None:
            return f"the signed descriptor has {problem}"
        if self._match_reference:
            return "a Notation signature names no repository, and the policy sets matchReference"
        return None

    def subject(self) -> Subject:
        """The image's descriptor, from its manifest, fetched at most once.

        Raises:
            NotationError: the manifest does not exist.
            UpstreamError: the registry failed.
        """
        if self._subject is None:
            try:
                manifest = self._client.manifest(self._image, self._digest, self._deadline)
            except NotFound:
                raise NotationError(f"the image manifest {self._digest} does not exist") from None
            self._subject = Subject(manifest.digest, len(manifest.body), manifest.media_type)
        return self._subject


def _format(found: Signature | Unreadable) -> str:
    if isinstance(found, Unreadable):
        return ""
    return FORMAT_NAMES.get(found.media_type, "")


def verify_candidates(
    candidates: Candidates,
    store: TrustStore,
    identities: TrustedIdentities,
    level: Level,
    *,
    deadline: Deadline,
    revocation: RevocationCheck | None = None,
    now: dt.datetime | None = None,
    verify_timestamp_when: VerifyTimestamp = "always",
) -> Verification:
    """The signers among ``candidates`` one authority trusts, and why the others are refused.

    Raises:
        UpstreamError: reading the signatures failed (never a revocation
            responder: its failure is an ``unknown`` the level judges).
    """
    if level.skipped:
        return Verification((), (), SKIPPED)
    moment = now or dt.datetime.now(dt.UTC)
    accepted: list[Accepted] = []
    refused: list[Refusal] = []
    for manifest, kind, parsed in candidates:
        if isinstance(parsed, Refusal):
            refused.append(parsed)
            continue
        try:
            result = verify_trust(
                parsed,
                store,
                identities,
                level,
                moment,
                revocation=revocation,
                deadline=deadline,
                verify_timestamp_when=verify_timestamp_when,
            )
        except NotationError as exc:
            refused.append(Refusal(manifest, exc.message, kind))
            continue
        if result.signer is None:  # only at level skip, handled above
            continue
        if not result.authentic:
            # A level that only logs authenticity (audit) may report the signature,
            # never count it: anyone can make a signature no trust store vouches for.
            why = "; ".join(f.problem for f in result.logged if f.validation == "authenticity")
            refused.append(
                Refusal(
                    manifest,
                    f"authenticity: {why or 'not verified'} (level {result.level} only logs "
                    f"it; an untrusted signer never counts)",
                    kind,
                )
            )
            continue
        accepted.append(Accepted(manifest, kind, result.signer, result, _until(parsed, result)))
    return Verification(tuple(accepted), tuple(refused), candidates.note)


def verify_notation(
    client: RegistryClient,
    image: ImageRef,
    digest: str,
    deadline: Deadline,
    store: TrustStore,
    identities: TrustedIdentities,
    level: Level,
    *,
    revocation: RevocationCheck | None = None,
    now: dt.datetime | None = None,
    verify_timestamp_when: VerifyTimestamp = "always",
    limit: int = MAX_SIGNATURES,
) -> Verification:
    """The verified Notation signers of ``digest`` in ``image``'s repository, for one authority.

    Signatures under ``store``'s roots are read first. At level skip nothing
    is read.

    Raises:
        UpstreamError: the registry failed, or the review ran out of time or budget.
    """
    if level.skipped:
        return Verification((), (), SKIPPED)
    candidates = Candidates(client, image, digest, deadline, prefer=thumbprints(store), limit=limit)
    return verify_candidates(
        candidates,
        store,
        identities,
        level,
        deadline=deadline,
        revocation=revocation,
        now=now,
        verify_timestamp_when=verify_timestamp_when,
    )


def _until(envelope: Envelope, result: TrustResult) -> dt.datetime | None:
    """When this verification stops holding: expiry, or the chain's end without an anchor."""
    ends = [envelope.expiry] if envelope.expiry is not None else []
    anchored = result.timestamp is not None or envelope.signing_scheme == SIGNING_AUTHORITY
    if not anchored and envelope.chain:
        ends.append(min(cert.not_valid_after_utc for cert in envelope.chain))
    return min(ends) if ends else None
