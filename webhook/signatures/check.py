"""``spec.signatures``: at least ``threshold`` of the named authorities signed the image.

The check resolves the reference to a digest (the engine does it, after the
allowlist), reads cosign's ``sha256-<hex>.sig`` manifest from the image's own
repository and asks each authority in turn. Signatures come in two forms
for keys and keyless identities alike: legacy ``.sig`` layers, and Sigstore
bundles attached as OCI referrers (what cosign 3 writes by default), read
only when the ``.sig`` layers do not already satisfy the authority.
Notation (Notary Project) authorities read the digest's Notation signatures,
OCI referrers too (``notation.material``), found, read and parsed once for
every Notation authority of the policy; the ``.sig`` manifest is not asked for
when every authority is a Notation one.
Outcomes are cached by digest and by the exact authorities, so a moved tag,
a new key or another policy never reuses an answer that was not about them,
and never past the moment they stop holding (a Notation certificate's end).

A threshold counts distinct signers (``signers.count_distinct``): two
authorities holding one key, or two identities one certificate matches, count
once, whether the signature is cosign's or Notation's. Every signature form
meets every rule of the policy (``rules.py``).

With ``perPlatform``, an image index must be signed itself and so must every
platform image it lists: a signed index of unsigned images is not enough.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

from webhook.cache.local import Caches, fingerprint
from webhook.checks import Caution, CheckContext
from webhook.core.deadline import Deadline
from webhook.core.errors import CheckFailed, TrustgateError
from webhook.core.reference import ImageRef
from webhook.policy.model import Authority, Policy, Signatures
from webhook.registry.client import (
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    Manifest,
    NotFound,
    RegistryClient,
)
from webhook.signatures.cosign import KeyVerification, signature_tag, verify_with_key
from webhook.signatures.keybundle import VERIFIED, verify_key_bundles
from webhook.signatures.material import KeylessMaterial
from webhook.signatures.notation.material import NotationMaterial
from webhook.signatures.notation.trust import RevocationCheck
from webhook.signatures.outcome import SignatureOutcome as SignatureOutcome
from webhook.signatures.outcome import cautioned, lifetime
from webhook.signatures.signers import Signer, count_distinct, key_signer
from webhook.trust.keys import PublicKey, load_public_key

#: At most this many platform images of one index are checked with perPlatform;
#: a larger index is denied rather than partly checked.
MAX_PLATFORMS = 16

_INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
_DIGEST = re.compile(r"(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})")
# buildx puts provenance and SBOM manifests into an index as pseudo-platforms.
_REFERENCE_TYPE = "vnd.docker.reference.type"
_ATTESTATION_MANIFEST = "attestation-manifest"


def index_platforms(manifest: Manifest) -> tuple[tuple[str, str], ...]:
    """``(platform, digest)`` of each image an index lists; empty for a single image.

    The platform reads ``os/architecture[/variant]``. Only the entries buildx
    adds for its attestation manifests are skipped: annotated
    ``vnd.docker.reference.type: attestation-manifest`` *and* of platform
    ``unknown/unknown``, which no runtime pulls. Every other entry counts,
    whatever its annotations say: an entry declaring ``linux/amd64`` is an
    image a node may run.

    Raises:
        CheckFailed: an entry has no valid digest or is itself an index (nested
            indexes are not checked, so they are refused), or the index lists
            more than MAX_PLATFORMS images.
    """
    entries = manifest.data.get("manifests")
    if manifest.media_type not in _INDEX_TYPES and not isinstance(entries, list):
        return ()
    if not isinstance(entries, list):
        raise CheckFailed("signature check failed: the image index has no manifests list")
    found: list[tuple[str, str]] = []
    for number, entry in enumerate(entries):
        if not isinstance(entry, dict) or _is_attestation_entry(entry):
            continue
        digest = entry.get("digest")
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            message = f"signature check failed: image index entry {number} has no valid digest"
            raise CheckFailed(message)
        platform = _platform(entry.get("platform"), number)
        if entry.get("mediaType") in _INDEX_TYPES:
            raise CheckFailed(
                f"signature check failed: image index entry {number} ({platform}) is itself an "
                "image index; perPlatform does not check nested indexes"
            )
        found.append((platform, digest))
    if len(found) > MAX_PLATFORMS:
        raise CheckFailed(
            f"signature check failed: the image index lists {len(found)} platform images; "
            f"perPlatform checks at most {MAX_PLATFORMS}"
        )
    return tuple(found)


def _is_attestation_entry(entry: Mapping[str, Any]) -> bool:
    """Whether ``entry`` is a buildx attestation manifest, which no runtime pulls."""
    annotations = entry.get("annotations")
    platform = entry.get("platform")
    return (
        isinstance(annotations, dict)
        and annotations.get(_REFERENCE_TYPE) == _ATTESTATION_MANIFEST
        and isinstance(platform, dict)
        and platform.get("os") == "unknown"
        and platform.get("architecture") == "unknown"
    )


def _platform(platform: object, number: int) -> str:
    if not isinstance(platform, dict):
        return f"(index entry {number}, no platform)"
    parts = [platform.get("os"), platform.get("architecture"), platform.get("variant")]
    shown = [p for p in parts if isinstance(p, str) and p]
    text = "/".join(shown)
    if not shown or not text.isascii() or not text.isprintable() or len(text) > 64:
        return f"(index entry {number}, platform {text[:64]!r})"
    return text


def _passed(outcome: SignatureOutcome) -> bool:
    return outcome.passed


def trust_roots(authorities: Iterable[Authority]) -> tuple[str, ...]:
    """The digest of each trusted root ``authorities`` verify against ("" for none), in order.

    Part of every cache key of an outcome: a replaced root must never meet
    an answer the old one gave (the policy dataclasses compare equal across
    a root's rotation, as their ``root_digest`` is left out of equality).
    """
    found = []
    for authority in authorities:
        if authority.keyless is not None:
            found.append(authority.keyless.root_digest)
        elif authority.key is not None and authority.key.tlog_required:
            found.append(authority.key.root_digest)
        else:
            found.append("")
    return tuple(found)


def trust_fingerprint(section: object, authorities: Iterable[Authority]) -> str:
    """``fingerprint`` of a policy section, memoised, with its authorities' trusted roots.

    The ``repr`` of a section grows with its keys and conditions, and the same
    few sections come back on every review, so it is remembered; the
    remembering is keyed by the roots' digests too, never by equality alone.
    """
    return _section_fingerprint(section, trust_roots(authorities))


@functools.lru_cache(maxsize=1024)
def _section_fingerprint(section: object, roots: tuple[str, ...]) -> str:
    return fingerprint((section, roots))


@functools.lru_cache(maxsize=256)
def load_key(pem: str, source: str) -> PublicKey:
    """The public key of ``pem``, parsed once; raises PolicyError when it is not one."""
    return load_public_key(pem, source=source)


class SignatureCheck:
    """Cosign and Notation signatures from the image's registry, verified against the
    policy's authorities: keys, keyless identities, Notation trust stores."""

    name = "signatures"
    pure = False

    def __init__(
        self,
        client: RegistryClient,
        caches: Caches,
        *,
        revocation: RevocationCheck | None = None,
    ) -> None:
        self._client = client
        self._caches = caches
        self._revocation = revocation

    def run(self, image: ImageRef, policy: Policy, context: CheckContext) -> str | Caution | None:
        """Return which authorities signed, when ``threshold`` of them verify the digest.

        A Caution when a Notation level logged a failed validation (revocation
        unknown under ``permissive``, say): the image passes with a warning.

        Raises:
            CheckFailed: too few authorities verified; the message names each one tried
                and why it failed.
            UpstreamError: the registry failed or timed out, said plainly.
        """
        signatures = policy.signatures
        if signatures is None:
            return None
        digest = context.resolve()
        outcome = self._outcome(image, digest, signatures, context.deadline)
        if not outcome.passed:
            raise CheckFailed(outcome.reason(), check=self.name)
        note = outcome.note
        logged = list(outcome.logged)
        if signatures.per_platform:
            platforms = self._platforms(image, digest, context.deadline)
            for platform, child in platforms:
                child_outcome = self._outcome(image, child, signatures, context.deadline)
                if not child_outcome.passed:
                    reason = child_outcome.reason(f"{platform} ({child})")
                    raise CheckFailed(reason, check=self.name)
                logged.extend(f"{platform}: {line}" for line in child_outcome.logged)
            if platforms:
                note += f", and each of its {len(platforms)} platform images"
        context.vouch()
        return cautioned(note, logged)

    def _outcome(
        self, image: ImageRef, digest: str, signatures: Signatures, deadline: Deadline
    ) -> SignatureOutcome:
        key = (image.repository, digest, trust_fingerprint(signatures, signatures.authorities))

        def verify(limit: Deadline) -> SignatureOutcome:
            return self._verify(image, digest, signatures, limit)

        outcome: SignatureOutcome = self._caches.verified.get_or_compute(
            key,
            verify,
            deadline,
            failures=self._caches.failures,
            passed=_passed,
            lifetime=lifetime,
        )
        return outcome

    def _platforms(
        self, image: ImageRef, digest: str, deadline: Deadline
    ) -> tuple[tuple[str, str], ...]:
        """The platform images of ``digest`` if it is an index; cached, as digests never change."""
        key = ("platforms", image.repository, digest)

        def read(limit: Deadline) -> tuple[tuple[str, str], ...]:
            try:
                return index_platforms(self._client.manifest(image, digest, limit))
            except CheckFailed as exc:
                raise CheckFailed(exc.message, check=self.name) from None

        platforms: tuple[tuple[str, str], ...] = self._caches.verified.get_or_compute(
            key, read, deadline
        )
        return platforms

    def _verify(
        self, image: ImageRef, digest: str, signatures: Signatures, deadline: Deadline
    ) -> SignatureOutcome:
        manifest: Manifest | None = None
        if any(authority.notation is None for authority in signatures.authorities):
            with contextlib.suppress(NotFound):
                manifest = self._client.manifest(image, signature_tag(digest), deadline)
        found: list[tuple[str, tuple[Signer, ...]]] = []
        failures: list[tuple[str, str]] = []
        material = KeylessMaterial(self._client, image, digest, manifest, deadline)
        stores = [a.notation.store for a in signatures.authorities if a.notation is not None]
        notation_names = {a.name for a in signatures.authorities if a.notation is not None}
        notation = NotationMaterial(
            self._client,
            image,
            digest,
            deadline,
            stores,
            revocation=self._revocation,
            required_annotations=dict(signatures.annotations),
            match_reference=signatures.match_reference,
        )
        for authority in signatures.authorities:
            signers: tuple[Signer, ...]
            if authority.notation is not None:
                ref = authority.notation
                signers, reason = notation.verify(
                    ref.store, ref.identities, ref.level, ref.verify_timestamp
                )
            elif authority.keyless is not None:
                signers, reason = material.verify_signature(signatures, authority)
            else:
                signers, reason = self._authority(
                    image, digest, signatures, authority, manifest, material, deadline
                )
            if signers:
                found.append((authority.name, signers))
            else:
                failures.append((authority.name, reason))
        count = count_distinct(found)
        names = [authority.name for authority in signatures.authorities]
        until = notation.until
        return SignatureOutcome(
            count.counted,
            count.failures(names, failures),
            signatures.threshold,
            tuple(
                (name, label)
                for name, label in zip(count.counted, count.signed_by, strict=True)
                if name in notation_names
            ),
            notation.logged,
            None if until is None else until.timestamp(),
        )

    def _authority(
        self,
        image: ImageRef,
        digest: str,
        signatures: Signatures,
        authority: Authority,
        manifest: Manifest | None,
        material: KeylessMaterial,
        deadline: Deadline,
    ) -> tuple[tuple[Signer, ...], str]:
        """The signer (its key) when key ``authority`` verifies, else why not.

        The ``.sig`` layers are tried first; the key-signed bundles referring
        to the digest only when they do not verify.
        """
        if authority.key is None or authority.key.pem is None:
            return (), "authority has no public key"
        if authority.key.tlog_required and authority.key.root is None:
            return (), "tlog: required, but no trusted root is loaded"
        try:
            public_key = load_key(authority.key.pem, authority.key.file or authority.name)
        except TrustgateError as exc:
            return (), exc.message
        legacy = None
        if manifest is not None:
            legacy = self._legacy(
                image, digest, signatures, authority, public_key, manifest, deadline
            )
            if legacy.ok:
                return (key_signer(public_key),), ""
        raw, note = material.raw_bundles()
        bundled = verify_key_bundles(
            raw,
            public_key,
            authority.name,
            image_digest=digest,
            repository=image.repository,
            required_annotations=dict(signatures.annotations),
            check_reference=signatures.match_reference,
            root=authority.key.root if authority.key.tlog_required else None,
        )
        if bundled.ok:
            return (key_signer(public_key),), ""
        if legacy is None:
            if not raw:
                return (), f"no signature found ({signature_tag(digest)} does not exist); {note}"
            return (), bundled.reason
        if not raw or bundled.rank < VERIFIED:
            return (), legacy.reason
        return (), bundled.reason

    def _legacy(
        self,
        image: ImageRef,
        digest: str,
        signatures: Signatures,
        authority: Authority,
        public_key: PublicKey,
        manifest: Manifest,
        deadline: Deadline,
    ) -> KeyVerification:
        """Whether a ``.sig`` layer is ``authority``'s key signature meeting every rule."""
        assert authority.key is not None

        def fetch(blob: str, size: int) -> bytes:
            return self._client.blob(image, blob, deadline, max_bytes=size)

        return verify_with_key(
            manifest.data,
            fetch,
            image_digest=digest,
            repository=image.repository,
            key=public_key,
            key_name=authority.name,
            required_annotations=dict(signatures.annotations),
            check_reference=signatures.match_reference,
            tlog_root=authority.key.root if authority.key.tlog_required else None,
        )
