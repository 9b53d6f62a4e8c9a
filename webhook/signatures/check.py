"""``spec.signatures``: at least ``threshold`` of the named authorities signed the image.

The check resolves the reference to a digest (the engine does it, after the
allowlist), reads cosign's ``sha256-<hex>.sig`` manifest from the image's own
repository and asks each authority in turn. Outcomes are cached by digest and
by the exact authorities, so a moved tag, a new key or another policy never
reuses an answer that was not about them.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

from webhook.cache import Caches
from webhook.checks import CheckContext
from webhook.errors import CheckFailed, TrustgateError
from webhook.policy.model import Authority, Policy, Signatures
from webhook.reference import ImageRef
from webhook.registry import Deadline, Manifest, NotFound, RegistryClient
from webhook.signatures.cosign import signature_tag, verify_with_key
from webhook.signatures.keys import PublicKey, load_public_key


@dataclass(frozen=True, slots=True)
class SignatureOutcome:
    """What one verification concluded; cached by digest and authorities."""

    verified: tuple[str, ...]
    failures: tuple[tuple[str, str], ...]  # (authority, reason)
    threshold: int

    @property
    def passed(self) -> bool:
        """Whether enough distinct authorities verified."""
        return len(self.verified) >= self.threshold

    def reason(self) -> str:
        """One line: how many verified, and why each other authority did not."""
        tried = "; ".join(f"{name}: {why}" for name, why in self.failures)
        return (
            f"signature check failed: {len(self.verified)} of the {self.threshold} required "
            f"authorities verified ({tried})"
        )


def _fingerprint(signatures: Signatures) -> str:
    """What an outcome depends on besides the digest: threshold and each authority."""
    digest = hashlib.sha256(repr(signatures).encode()).hexdigest()
    return digest[:32]


@functools.lru_cache(maxsize=256)
def _key(pem: str, source: str) -> PublicKey:
    return load_public_key(pem, source=source)


class SignatureCheck:
    """Cosign signatures from the image's registry, verified against the policy's keys."""

    name = "signatures"
    pure = False

    def __init__(self, client: RegistryClient, caches: Caches) -> None:
        self._client = client
        self._caches = caches

    def run(self, image: ImageRef, policy: Policy, context: CheckContext) -> None:
        """Return when ``threshold`` authorities verify the image's digest.

        Raises:
            CheckFailed: too few authorities verified; the message names each one tried
                and why it failed.
            UpstreamError: the registry failed or timed out, said plainly.
        """
        signatures = policy.signatures
        if signatures is None:
            return
        digest = context.resolve()
        key = (image.repository, digest, _fingerprint(signatures))
        outcome = self._caches.verified.get(key) or self._caches.failures.get(key)
        if outcome is None:
            outcome = self._verify(image, digest, signatures, context.deadline)
            (self._caches.verified if outcome.passed else self._caches.failures).put(key, outcome)
        if not outcome.passed:
            raise CheckFailed(outcome.reason(), check=self.name)

    def _verify(
        self, image: ImageRef, digest: str, signatures: Signatures, deadline: Deadline
    ) -> SignatureOutcome:
        try:
            manifest: Manifest | None = self._client.manifest(
                image, signature_tag(digest), deadline
            )
        except NotFound:
            manifest = None
        verified: list[str] = []
        failures: list[tuple[str, str]] = []
        for authority in signatures.authorities:
            reason = self._authority(image, digest, authority, manifest, deadline)
            if reason is None:
                verified.append(authority.name)
            else:
                failures.append((authority.name, reason))
        return SignatureOutcome(tuple(verified), tuple(failures), signatures.threshold)

    def _authority(
        self,
        image: ImageRef,
        digest: str,
        authority: Authority,
        manifest: Manifest | None,
        deadline: Deadline,
    ) -> str | None:
        """None when ``authority`` verifies, else why not."""
        if authority.key is None or authority.key.pem is None:
            return "keyless verification is not available in this version"
        if manifest is None:
            return f"no signature found ({signature_tag(digest)} does not exist)"
        try:
            public_key = _key(authority.key.pem, authority.key.file or authority.name)
        except TrustgateError as exc:
            return exc.message

        def fetch(blob: str, size: int) -> bytes:
            return self._client.blob(image, blob, deadline, max_bytes=size)

        result = verify_with_key(
            manifest.data,
            fetch,
            image_digest=digest,
            repository=image.repository,
            key=public_key,
            key_name=authority.name,
        )
        return None if result.ok else result.reason
