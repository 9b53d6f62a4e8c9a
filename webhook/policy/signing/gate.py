"""What the policy store asks before it loads a directory: who signed it, and is it newer.

The store (``policy/store.py``) knows nothing of keys, Sigstore or Git. It is
handed a ``SetVerifier`` (built in ``services.py`` from ``policies.signature``)
that says who signed a directory and which version that is, and a
``MarkStore`` that keeps the highest version loaded so far, so that an older
set, however well signed, is refused after a restart as before it.

Every refusal is a ``PolicySignatureError`` whose ``reason`` is one of
``REASONS``: the label of ``trustgate_policy_set_refusals_total``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from webhook.core.errors import PolicyError

__all__ = [
    "REASONS",
    "Mark",
    "MarkError",
    "MarkStore",
    "PolicySignatureError",
    "SetVerifier",
    "Verified",
]

#: Why a set is refused: no signature; a signature by nobody listed; files that
#: differ from what was signed; a signature that cannot be read; a version older
#: than (or equal to, with other content) the highest loaded; the high-water
#: mark cannot be read, so a replay cannot be ruled out.
REASONS = ("unsigned", "untrusted", "altered", "invalid", "replayed", "unavailable")


class PolicySignatureError(PolicyError):
    """The directory is unsigned, signed by an untrusted identity, altered, or replayed.

    ``reason`` is one of ``REASONS``.
    """

    def __init__(self, message: str, *, reason: str = "invalid", file: str | None = None) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown refusal reason {reason!r}")
        super().__init__(message, file=file)
        self.reason = reason


class MarkError(PolicyError):
    """The high-water mark cannot be read or written (its store is unreachable or corrupt)."""


@dataclass(frozen=True, slots=True)
class Verified:
    """A directory whose signature holds: who signed it, and what.

    ``version`` is the signed manifest's version (or, for a Git commit, its
    committer time in Unix seconds); ``digest`` identifies exactly what was
    signed (``sha256:`` of the manifest bytes, or ``git:`` and the commit id),
    so two different sets of one version are told apart. ``files`` is the
    verified content by relative path, when the verifier read it, so the
    store can load exactly the bytes that were checked.
    """

    authority: str
    version: int
    digest: str
    signed_at: datetime
    files: Mapping[str, bytes] | None = None


class SetVerifier(Protocol):
    """Checks a policy directory's signature against ``policies.signature``."""

    def __call__(self, directory: Path) -> Verified:
        """Who signed ``directory``, as it is now.

        Raises:
            PolicySignatureError: unsigned, untrusted, altered or unreadable.
        """
        ...


@dataclass(frozen=True, slots=True)
class Mark:
    """The highest policy-set version loaded, and the digest of what carried it."""

    version: int
    digest: str


class MarkStore(Protocol):
    """Where the high-water mark survives restarts (a file, a ConfigMap)."""

    #: Where the mark is, for messages and /readyz (``file /var/lib/...``).
    where: str

    def read(self) -> Mark | None:
        """The stored mark; None when none was ever written.

        Raises:
            MarkError: the store cannot be read now, or holds no valid mark.
        """
        ...

    def advance(self, mark: Mark) -> None:
        """Record ``mark`` unless a higher version is already stored (never lowers it).

        Raises:
            MarkError: the store cannot be written now.
        """
        ...
