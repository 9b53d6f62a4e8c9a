"""The ``SetVerifier`` of ``source: files``: a signature file checked against trusted keys.

An adapter from ``envelope.verify_directory`` (who signed, and the manifest)
to what the policy store asks (``gate.Verified``: who, which version, which
digest, and the content that was checked). ``verify_directory`` reads the
directory to compare it with the manifest but does not return what it read,
so this reads it once more and compares that copy with the authenticated
manifest too: the bytes handed to the store are bytes a signature covers,
whatever changed on disk in between.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from webhook.core.errors import PolicyError
from webhook.policy.signing.envelope import TrustedKey, verify_directory
from webhook.policy.signing.gate import PolicySignatureError, Verified
from webhook.policy.signing.manifest import compare, manifest_bytes
from webhook.policy.signing.tree import read_tree

__all__ = ["FileVerifier"]


class FileVerifier:
    """Checks ``DIR/.trustgate/signature.json`` against ``authorities``."""

    def __init__(self, authorities: Sequence[TrustedKey]) -> None:
        self._authorities = tuple(authorities)

    def __call__(self, directory: Path) -> Verified:
        """Who signed ``directory``, its version and digest, and its verified content.

        Raises:
            PolicySignatureError: unsigned, untrusted, altered or unreadable.
            PolicyError: ``directory`` is not a directory.
        """
        signed = verify_directory(directory, self._authorities)
        manifest = signed.manifest
        try:
            files = read_tree(directory)
        except PolicyError as exc:
            raise PolicySignatureError(exc.message, reason="altered", file=exc.file) from exc
        differences = compare(manifest, files)
        if differences:
            lines = "; ".join(str(d) for d in differences)
            raise PolicySignatureError(
                f"{directory} changed while it was verified: {lines}", reason="altered"
            )
        digest = hashlib.sha256(manifest_bytes(manifest)).hexdigest()
        return Verified(
            authority=signed.authority,
            version=manifest.version,
            digest=f"sha256:{digest}",
            signed_at=manifest.signed_at,
            files=files,
        )
