"""The Notation signatures of one digest, as the signature check asks, authority by authority.

One review of one digest may name several ``notation`` authorities: the
signatures are discovered, read, parsed and matched to the image once for
all of them (``verifier.Candidates``), the signatures under any of their
trust stores read first, and each authority's trust validations then run on
what was read (``verifier.verify_candidates``). What the levels only logged
and how long the verifications hold are gathered across the authorities, for
the check's outcome: the logged failures become a warning on the admitted
workload, and the outcome is not cached past ``until``.

Nothing is read until an authority asks, so a policy that is satisfied
before a Notation authority is reached still costs one ``referrers`` call at
most (and none at all without a Notation authority).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from webhook.core.deadline import Deadline
from webhook.core.reference import ImageRef
from webhook.registry.client import RegistryClient
from webhook.signatures.notation.trust import RevocationCheck, VerifyTimestamp
from webhook.signatures.notation.verifier import (
    Candidates,
    thumbprints,
    verify_candidates,
)
from webhook.signatures.signers import Signer
from webhook.trust.notation.identities import TrustedIdentities
from webhook.trust.notation.levels import Level
from webhook.trust.notation.truststore import TrustStore


class NotationMaterial:
    """The Notation signatures of ``digest``, verified on demand for each authority.

    ``stores`` are the trust stores of every Notation authority of the policy:
    a signature whose chain names one of their roots is read first.
    ``required_annotations`` and ``match_reference`` are the policy's rules
    (``verifier.Candidates``). Not thread-safe; one review's.
    """

    def __init__(
        self,
        client: RegistryClient,
        image: ImageRef,
        digest: str,
        deadline: Deadline,
        stores: Iterable[TrustStore] = (),
        *,
        revocation: RevocationCheck | None = None,
        now: dt.datetime | None = None,
        required_annotations: Mapping[str, str] | None = None,
        match_reference: bool = False,
    ) -> None:
        prefer = frozenset().union(*(thumbprints(store) for store in stores))
        self._candidates = Candidates(
            client,
            image,
            digest,
            deadline,
            prefer=prefer,
            required_annotations=required_annotations,
            match_reference=match_reference,
        )
        self._deadline = deadline
        self._revocation = revocation
        self._now = now
        self._logged: dict[str, None] = {}
        self._until: dt.datetime | None = None

    @property
    def logged(self) -> tuple[str, ...]:
        """What the levels only logged about the signatures that verified, once each."""
        return tuple(self._logged)

    @property
    def until(self) -> dt.datetime | None:
        """The earliest moment a verification so far stops holding on its own, if any."""
        return self._until

    def verify(
        self,
        store: TrustStore,
        identities: TrustedIdentities,
        level: Level,
        verify_timestamp: VerifyTimestamp = "always",
    ) -> tuple[tuple[Signer, ...], str]:
        """The signers one authority verified, or () and why none did.

        Raises:
            UpstreamError: reading the signatures failed.
        """
        found = verify_candidates(
            self._candidates,
            store,
            identities,
            level,
            deadline=self._deadline,
            revocation=self._revocation,
            now=self._now,
            verify_timestamp_when=verify_timestamp,
        )
        if not found.signers:
            return (), found.reason()
        self._logged.update(dict.fromkeys(found.logged))
        if found.until is not None and (self._until is None or found.until < self._until):
            self._until = found.until
        return found.signers, ""
