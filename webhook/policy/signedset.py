"""Whether a signed policy directory may load: its signature, and its version.

The policy store asks ``SignedSets.admit`` before it loads a directory, and
calls ``advance`` once the set compiled. A set loads only when a configured
authority signed it (the ``SetVerifier``) and its version is not below the
high-water mark: the highest of ``policies.signature.minimumVersion``, the
mark the ``MarkStore`` kept across restarts, and what this process loaded.
A lower version is a replay of an older, perhaps weaker, set; the same version
with other content is one too (whoever signs must count up).

The mark store is read at every check, so that a replica whose set another
replica already superseded cannot be handed the older one. When it cannot be
read, no set is admitted (``unavailable``): a replay cannot be ruled out, and
the set in force (if any) stays. A failed write is logged and counted; the
mark this process holds still applies here, and the write is retried at every
check until it succeeds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webhook.core.errors import PolicyError
from webhook.policy.signing.gate import (
    Mark,
    MarkError,
    MarkStore,
    PolicySignatureError,
    SetVerifier,
    Verified,
)

__all__ = ["Refusal", "SignatureState", "SignedSets", "check_minimum"]

log = logging.getLogger("trustgate.policy")


@dataclass(frozen=True, slots=True)
class Refusal:
    """A set that was not loaded (or, in audit, loaded anyway): why, and when (Unix time)."""

    reason: str
    message: str
    at: float

    def as_json(self) -> dict[str, Any]:
        """``lastRefusal`` of /readyz."""
        return {"reason": self.reason, "message": self.message, "at": self.at}


#: ``state`` of /readyz's policySignature: the set on disk is verified and in
#: force; the last set on disk was refused and an older verified one is in
#: force; a set was loaded without a valid signature (``required: false``);
#: no set is loaded at all.
STATES = ("verified", "refused", "audit", "none")


@dataclass(frozen=True, slots=True)
class SignatureState:
    """What /readyz says of the signature of the set in force (``policySignature``)."""

    required: bool
    state: str = "none"
    authority: str | None = None
    version: int | None = None
    digest: str | None = None
    last_refusal: Refusal | None = None

    @property
    def valid(self) -> bool:
        """Whether the set on disk is verified and is the one in force (the metric's 1)."""
        return self.state == "verified"

    def as_json(self) -> dict[str, Any]:
        """``policySignature`` of /readyz."""
        return {
            "required": self.required,
            "state": self.state,
            "authority": self.authority,
            "version": self.version,
            "digest": self.digest,
            "lastRefusal": None if self.last_refusal is None else self.last_refusal.as_json(),
        }


class SignedSets:
    """The signature and version gate of one policy store (see the module doc)."""

    def __init__(
        self,
        verifier: SetVerifier,
        marks: MarkStore | None,
        *,
        required: bool,
        minimum_version: int = 0,
        on_mark_error: Callable[[MarkError], None] | None = None,
    ) -> None:
        self.required = required
        self._verifier = verifier
        self._marks = marks
        self._minimum = minimum_version
        self._on_mark_error = on_mark_error
        #: The highest set this process loaded.
        self._loaded: Mark | None = None
        #: The mark last read from the store, and one still to write there.
        self._stored: Mark | None = None
        self._pending: Mark | None = None
        self._write_error: str | None = None

    def admit(self, directory: Path) -> Verified:
        """Who signed ``directory``, when it may load now.

        Raises:
            PolicySignatureError: unsigned, untrusted, altered, invalid; replayed
                (below the high-water mark, or its version with other content);
                unavailable (the mark cannot be read).
            PolicyError: ``directory`` cannot be read at all.
        """
        try:
            verified = self._verifier(directory)
        except (PolicySignatureError, PolicyError):
            raise
        except Exception as exc:
            # A verifier raises only those two; should a hostile input find a defect,
            # the set is still refused where /readyz, the metric and the alert show it,
            # rather than left to a generic load failure that keeps saying verified.
            log.exception("policy signature check defect", extra={"outcome": "error"})
            raise PolicySignatureError(
                f"the signature could not be checked ({type(exc).__name__}: {exc}); "
                "this is a defect of trustgate: please report it with the log",
                reason="invalid",
            ) from exc
        self._stored = self._read()
        self._check_version(verified)
        return verified

    def advance(self, verified: Verified) -> None:
        """Record that ``verified`` loaded: the high-water mark moves up to its version."""
        mark = Mark(verified.version, verified.digest)
        if self._loaded is None or mark.version > self._loaded.version:
            self._loaded = mark
        stored = self._stored
        if self._marks is not None and (stored is None or mark.version > stored.version):
            self._pending = mark
        self.retry()

    def retry(self) -> None:
        """Write a mark that could not be written before (called at every check)."""
        if self._pending is None or self._marks is None:
            return
        try:
            self._marks.advance(self._pending)
        except MarkError as exc:
            if self._on_mark_error is not None:
                self._on_mark_error(exc)
            if exc.message != self._write_error:  # once, not at every check
                log.error(
                    "cannot record policy-set version %d in %s, retrying at every check "
                    "(this process still refuses older sets; a restarted one would not know "
                    "of this version): %s",
                    self._pending.version,
                    self._marks.where,
                    exc.message,
                    extra={"outcome": "error"},
                )
            self._write_error = exc.message
            return
        self._stored, self._pending, self._write_error = self._pending, None, None

    def _read(self) -> Mark | None:
        if self._marks is None:
            return None
        try:
            return self._marks.read()
        except MarkError as exc:
            raise PolicySignatureError(
                f"cannot read the highest policy-set version loaded so far from "
                f"{self._marks.where}: {exc.message}; until it can be read, no set loads, "
                "since an older signed set could not be told from the current one",
                reason="unavailable",
            ) from exc

    def _check_version(self, verified: Verified) -> None:
        version = verified.version
        check_minimum(verified, self._minimum)
        marks = [m for m in (self._stored, self._loaded) if m is not None]
        if not marks:
            return
        highest = max(marks, key=lambda m: m.version)
        if version < highest.version:
            raise PolicySignatureError(
                f"the policy set is version {version}, older than version {highest.version} "
                "already loaded: an older signed set is refused so that it cannot be "
                "replayed; "
                + _remedy(
                    verified, highest.version + 1, "sign the current policies with --version {}"
                ),
                reason="replayed",
            )
        if version == highest.version and verified.digest != highest.digest:
            raise PolicySignatureError(
                f"version {version} was already loaded with other content; "
                + _remedy(verified, version + 1, "sign with --version {}"),
                reason="replayed",
            )


def check_minimum(verified: Verified, minimum: int) -> None:
    """Refuse a set signed below ``policies.signature.minimumVersion``.

    The server and ``policy verify`` both apply it, so that what the command
    passes the server loads.

    Raises:
        PolicySignatureError: ``replayed``, saying what to sign (or check out).
    """
    if verified.version < minimum:
        raise PolicySignatureError(
            f"the policy set is version {verified.version}, below policies.signature."
            f"minimumVersion {minimum}: "
            + _remedy(verified, minimum, "sign the current policies with --version {} or higher"),
            reason="replayed",
        )


def _remedy(verified: Verified, version: int, signed: str) -> str:
    """What to do so that a set like ``verified`` reaches ``version``: ``signed`` (a
    format with one ``{}``) for a signature file, a newer commit for ``source: git``."""
    if verified.digest.startswith("git:"):
        # The version of a commit is its committer time, not a flag to pass.
        return (
            f"check out a signed commit whose committer time is {version} (Unix seconds) "
            "or later, such as a new commit on the policy branch"
        )
    return signed.format(version)
