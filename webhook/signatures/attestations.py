"""``spec.attestations``: signed in-toto statements about the image, from cosign's ``.att`` tag.

``cosign attest`` stores attestations of ``sha256:<hex>`` in the image's own
repository, as the layers of the manifest at tag ``sha256-<hex>.att``: each
layer of media type ``application/vnd.dsse.envelope.v1+json`` is a DSSE
envelope whose payload is an in-toto Statement. An attestation counts for an
authority when the envelope verifies with the authority's key, its payload is
a Statement naming the image digest as a subject, and its ``predicateType`` is
the one the policy requires. Layers signed keylessly carry cosign's
certificate, chain and Rekor entry annotations, and are verified for keyless
authorities (``keyless.verify_legacy_attestation``), like Sigstore bundles
found as referrers. Key authorities also read the Sigstore bundles that
``cosign attest --key`` attaches since cosign 3 (``keybundle.py``), when no
``.att`` layer counts; a key counts once toward the threshold, whichever
forms it attested in.

An entry's ``conditions`` (CEL, ``conditions.py``) must then hold for the
verified statement, whatever its form. Outcomes are cached by repository,
digest, predicate type and the exact entry (authorities and conditions), like
signature outcomes; the predicates that verified stay available to later
checks through ``AttestationCheck.verified_predicates``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from webhook.cache.local import Caches
from webhook.checks import CheckContext
from webhook.core.deadline import Deadline
from webhook.core.errors import CheckFailed, TrustgateError
from webhook.core.reference import ImageRef
from webhook.core.untrusted import NestedTooDeep, json_value, shown
from webhook.policy.model import Attestation, Authority, Policy
from webhook.registry.client import NotFound, RegistryClient
from webhook.signatures.check import load_key, trust_fingerprint
from webhook.signatures.conditions import Evaluator, held_note, holding
from webhook.signatures.cosign import (
    IN_TOTO_PAYLOAD_TYPE,
    STATEMENT_TYPES,
    attestation_tag,
    statement_subject_matches,
    verify_dsse,
)
from webhook.signatures.envelopes import MAX_ATTESTATION_LAYERS as MAX_ATTESTATION_LAYERS
from webhook.signatures.envelopes import MAX_ENVELOPE_SIZE as MAX_ENVELOPE_SIZE
from webhook.signatures.envelopes import AttestationLayer, Envelope, attestation_layers
from webhook.signatures.envelopes import attestation_envelopes as attestation_envelopes
from webhook.signatures.keybundle import VERIFIED, verify_key_attestations
from webhook.signatures.keyless import CERTIFICATE_ANNOTATION
from webhook.signatures.material import KeylessMaterial
from webhook.signatures.signers import Signer, count_distinct, key_signer
from webhook.trust.keys import PublicKey

# How telling a failure is, from a malformed layer up to a statement of the
# right predicate type about another image.
_MALFORMED, _UNVERIFIED, _BAD_STATEMENT, _WRONG_TYPE, _WRONG_SUBJECT = range(5)


@dataclass(frozen=True, slots=True)
class AttestationOutcome:
    """What one requirement concluded for one digest; cached like signature outcomes.

    ``predicates`` holds the JSON text of each predicate that verified, so the
    cached outcome stays immutable and every reader gets fresh objects.
    """

    predicate_type: str
    verified: tuple[str, ...]
    failures: tuple[tuple[str, str], ...]  # (authority, reason)
    threshold: int
    predicates: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """Whether enough authorities attested, with distinct keys and identities."""
        return len(self.verified) >= self.threshold

    def reason(self) -> str:
        """One line: the predicate type, how many verified, and why each other did not."""
        tried = "; ".join(f"{name}: {why}" for name, why in self.failures)
        return (
            f"attestation check failed for predicate type {self.predicate_type}: "
            f"{len(self.verified)} of the {self.threshold} required authorities verified "
            f"({tried})"
        )


def verify_attestation(
    envelopes: Sequence[Envelope],
    *,
    image_digest: str,
    predicate_type: str,
    key: PublicKey,
    key_name: str,
) -> tuple[tuple[str, ...], str]:
    """The statements (as JSON text) ``key`` attested for ``image_digest``, or why none.

    Returns ``(statements, "")`` when at least one envelope passes, else
    ``((), reason)`` with the most telling reason. Never raises.
    """
    predicates: list[str] = []
    best = (-1, "no attestation found")
    seen_types: set[str] = set()
    for envelope in envelopes:
        rank, reason, predicate = _check(envelope, image_digest, predicate_type, key, key_name)
        if predicate is not None:
            predicates.append(predicate)
            continue
        if rank == _WRONG_TYPE:
            seen_types.add(reason)
            reason = _wrong_types(seen_types, predicate_type)
        if rank >= best[0]:
            best = (rank, reason)
    if predicates:
        return tuple(predicates), ""
    return (), best[1]


def _check(
    envelope: Envelope, digest: str, predicate_type: str, key: PublicKey, key_name: str
) -> tuple[int, str, str | None]:
    """(rank, reason, None) for an envelope that does not count, else (0, "", predicate)."""
    if isinstance(envelope, str):
        return _MALFORMED, envelope, None
    payload = verify_dsse(envelope, key)
    if payload is None:
        return _UNVERIFIED, f"attestation signature does not verify with key {key_name}", None
    if envelope.get("payloadType") != IN_TOTO_PAYLOAD_TYPE:
        found_type = shown(str(envelope.get("payloadType")))
        return (
            _BAD_STATEMENT,
            f"signed payload type {found_type} is not {IN_TOTO_PAYLOAD_TYPE}",
            None,
        )
    try:
        statement = json_value(payload.decode("utf-8"))
    except NestedTooDeep:
        return _BAD_STATEMENT, "signed payload is nested too deeply to read", None
    except ValueError:  # not UTF-8, not JSON, or a number of more than 4,300 digits
        return _BAD_STATEMENT, "signed payload is not JSON", None
    if not isinstance(statement, dict) or statement.get("_type") not in STATEMENT_TYPES:
        return _BAD_STATEMENT, "signed payload is not an in-toto Statement", None
    found = statement.get("predicateType")
    if found != predicate_type:
        return _WRONG_TYPE, shown(found if isinstance(found, str) else repr(found)), None
    if not statement_subject_matches(statement, digest):
        return _WRONG_SUBJECT, f"signed attestation is about another subject, not {digest}", None
    predicate = statement.get("predicate")
    if not isinstance(predicate, dict):
        return _BAD_STATEMENT, "signed statement's predicate is not an object", None
    return 0, "", json.dumps(statement, sort_keys=True)


def _passed(outcome: AttestationOutcome) -> bool:
    return outcome.passed


def _predicate(statement: str) -> str:
    """The predicate of a verified statement (JSON text), as JSON text."""
    return json.dumps(json.loads(statement)["predicate"], sort_keys=True)


def _wrong_types(seen: set[str], wanted: str) -> str:
    shown = sorted(seen)
    more = f" and {len(shown) - 3} more" if len(shown) > 3 else ""
    return f"signed attestations have predicate type {', '.join(shown[:3])}{more}, not {wanted}"


class AttestationCheck:
    """Cosign attestations from the image's registry, verified against the policy's keys."""

    name = "attestations"
    pure = False

    def __init__(
        self, client: RegistryClient, caches: Caches, evaluator: Evaluator | None = None
    ) -> None:
        self._client = client
        self._caches = caches
        self._evaluator = evaluator if evaluator is not None else Evaluator()

    def run(self, image: ImageRef, policy: Policy, context: CheckContext) -> str | None:
        """Return who attested what, when every ``spec.attestations`` entry is met.

        Raises:
            CheckFailed: an entry has too few authorities; the message names its
                predicate type and each authority tried and why it failed.
            UpstreamError: the registry failed or timed out, said plainly.
        """
        if not policy.attestations:
            return None
        digest = context.resolve()
        loaded: list[list[AttestationLayer] | None] = []

        def layers() -> list[AttestationLayer] | None:
            if not loaded:
                loaded.append(self._layers(image, digest, context.deadline))
            return loaded[0]

        found: list[KeylessMaterial] = []

        def bundles() -> KeylessMaterial:
            # Sigstore bundles (keyless attestations) come from the referrers, read once.
            if not found:
                found.append(KeylessMaterial(self._client, image, digest, None, context.deadline))
            return found[0]

        notes: list[str] = []
        for requirement in policy.attestations:

            def verify(
                limit: Deadline, requirement: Attestation = requirement
            ) -> AttestationOutcome:
                # ``limit`` is this review's deadline, which layers() and bundles() use.
                return self._verify((image.repository, digest), requirement, layers, bundles, limit)

            outcome: AttestationOutcome = self._caches.verified.get_or_compute(
                self._key(image, digest, requirement),
                verify,
                context.deadline,
                failures=self._caches.failures,
                passed=_passed,
            )
            if not outcome.passed:
                raise CheckFailed(outcome.reason(), check=self.name)
            notes.append(
                f"{outcome.predicate_type} attested by {', '.join(outcome.verified)}"
                + held_note(requirement.conditions)
            )
        context.vouch()
        return "; ".join(notes)

    def verified_predicates(
        self, image: ImageRef, digest: str, predicate_type: str, policy: Policy
    ) -> list[dict[str, Any]]:
        """The predicates of type ``predicate_type`` that ``policy``'s authorities attested.

        Only what this check verified for ``policy`` (and still caches) is
        returned, so a later check of the same policy trusts exactly the
        authorities the policy names; an empty list means nothing is known.
        """
        found: list[dict[str, Any]] = []
        for requirement in policy.attestations:
            if requirement.predicate_type != predicate_type:
                continue
            outcome = self._caches.verified.get(self._key(image, digest, requirement))
            if isinstance(outcome, AttestationOutcome):
                found.extend(json.loads(text) for text in outcome.predicates)
        return found

    @staticmethod
    def _key(image: ImageRef, digest: str, requirement: Attestation) -> tuple[str, ...]:
        key_part = trust_fingerprint(requirement, requirement.authorities)
        return ("attestations", image.repository, digest, requirement.predicate_type, key_part)

    def _layers(
        self, image: ImageRef, digest: str, deadline: Deadline
    ) -> list[AttestationLayer] | None:
        """The envelope layers of the image's ``.att`` manifest; None when there is none."""
        try:
            manifest = self._client.manifest(image, attestation_tag(digest), deadline)
        except NotFound:
            return None

        def fetch(blob: str, size: int) -> bytes:
            return self._client.blob(image, blob, deadline, max_bytes=size)

        return attestation_layers(manifest.data, fetch)

    def _verify(
        self,
        image: tuple[str, str],
        requirement: Attestation,
        layers: Callable[[], list[AttestationLayer] | None],
        material: Callable[[], KeylessMaterial],
        deadline: Deadline,
    ) -> AttestationOutcome:
        """Which authorities attested, in statements meeting every condition.

        ``image`` is (repository, digest). Raises CostExceeded when the
        conditions overrun their cost limit: such an outcome is not cached.
        """
        found: list[tuple[str, tuple[Signer, ...]]] = []
        failures: list[tuple[str, str]] = []
        predicates: dict[str, list[str]] = {}
        for authority in requirement.authorities:
            attested: tuple[tuple[str, Signer], ...]
            if authority.keyless is not None:
                legacy = [
                    layer for layer in layers() or [] if CERTIFICATE_ANNOTATION in layer.annotations
                ]
                attested, reason = material().verify_attestation(
                    authority, requirement.predicate_type, legacy
                )
                attested, reason = self._holding(requirement, attested, reason, image, deadline)
            else:
                attested, reason = self._keyed(
                    image, requirement, authority, layers, material, deadline
                )
            if attested:
                found.append((authority.name, tuple(dict.fromkeys(s for _, s in attested))))
                predicates[authority.name] = [_predicate(text) for text, _ in attested]
            else:
                failures.append((authority.name, reason))
        count = count_distinct(found)
        return AttestationOutcome(
            requirement.predicate_type,
            count.counted,
            count.failures([authority.name for authority in requirement.authorities], failures),
            requirement.threshold,
            tuple(text for texts in predicates.values() for text in texts),
        )

    def _holding(
        self,
        requirement: Attestation,
        attested: tuple[tuple[str, Signer], ...],
        reason: str,
        image: tuple[str, str],
        deadline: Deadline,
    ) -> tuple[tuple[tuple[str, Signer], ...], str]:
        """The ``attested`` statements for which every condition holds, or why none does.

        Every form of attestation (key or keyless, .att layer or bundle) meets
        the same conditions: only the statements for which they hold count.
        """
        if not attested or not requirement.conditions:
            return attested, reason
        statements = [json.loads(text) for text, _ in attested]
        kept, why = holding(self._evaluator, requirement.conditions, statements, image, deadline)
        return tuple(attested[index] for index in kept), why

    def _keyed(
        self,
        image: tuple[str, str],
        requirement: Attestation,
        authority: Authority,
        layers: Callable[[], list[AttestationLayer] | None],
        material: Callable[[], KeylessMaterial],
        deadline: Deadline,
    ) -> tuple[tuple[tuple[str, Signer], ...], str]:
        """The statements key ``authority`` attested meeting the conditions, or why none.

        The ``.att`` layers are tried first; the key-signed Sigstore bundles
        referring to the digest (``cosign attest --key`` since cosign 3) only
        when no layer's statement counts. Both forms count as the one signer,
        the key.
        """
        if authority.key is None or authority.key.pem is None:
            return (), "authority has no public key"
        try:
            key = load_key(authority.key.pem, authority.key.file or authority.name)
        except TrustgateError as exc:
            return (), exc.message
        repository, digest = image
        signer = key_signer(key)
        found = layers()
        legacy_reason = f"no attestation found ({attestation_tag(digest)} does not exist)"
        if found:
            statements, legacy_reason = verify_attestation(
                [layer.envelope for layer in found],
                image_digest=digest,
                predicate_type=requirement.predicate_type,
                key=key,
                key_name=authority.name,
            )
            attested = tuple((text, signer) for text in statements)
            attested, legacy_reason = self._holding(
                requirement, attested, legacy_reason, image, deadline
            )
            if attested:
                return attested, ""
        elif found is not None:
            legacy_reason = (
                f"no attestation found ({attestation_tag(digest)} has no DSSE envelope layers)"
            )
        raw, note = material().raw_bundles()
        statements, failure = verify_key_attestations(
            raw,
            key,
            authority.name,
            image_digest=digest,
            repository=repository,
            predicate_type=requirement.predicate_type,
        )
        attested = tuple((text, signer) for text in statements)
        attested, reason = self._holding(requirement, attested, failure.reason, image, deadline)
        if attested:
            return attested, ""
        if not raw:
            return (), f"{legacy_reason}; {note}" if not found else legacy_reason
        if found and not statements and failure.rank < VERIFIED:
            return (), legacy_reason
        return (), reason
