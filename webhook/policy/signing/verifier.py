"""The ``SetVerifier`` of ``source: files``: a signature file checked against the authorities.

``envelope.verify_directory`` already answers what the policy store asks
(``gate.Verified``: who, which version, the digest of the signed manifest, and
the content it compared with the manifest, which the store loads); this binds
it to the authorities of ``policies.signature``, keys and keyless identities
alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from webhook.policy.signing.envelope import SetAuthority, verify_directory
from webhook.policy.signing.gate import Verified

__all__ = ["FileVerifier"]


class FileVerifier:
    """Checks ``DIR/.trustgate/signature.json`` against ``authorities``."""

    def __init__(self, authorities: Sequence[SetAuthority]) -> None:
        self._authorities = tuple(authorities)

    def __call__(self, directory: Path) -> Verified:
        """Who signed ``directory``, its version and digest, and its verified content.

        Raises:
            PolicySignatureError: unsigned, untrusted, altered or unreadable.
            PolicyError: ``directory`` is not a directory.
        """
        return verify_directory(directory, self._authorities)
