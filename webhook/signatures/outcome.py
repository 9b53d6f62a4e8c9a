"""What the signature check concluded about one digest: the outcome it caches, and its note.

Separate from ``check`` (which asks the registry and the authorities) so that
the cached value, what it says when the image passes (``note``, with the
signer of each Notation authority) or fails (``reason``), and how long it
stays true (``lifetime``) are read in one place. Pure data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from webhook.checks import Caution

#: At most this many lines of what a Notation level only logged go into the warning.
MAX_LOGGED = 3


@dataclass(frozen=True, slots=True)
class SignatureOutcome:
    """What one verification concluded; cached by digest and authorities.

    ``signers`` names the signer of each counted Notation authority (its
    certificate's subject); ``logged`` is what a Notation level only logged
    about the signatures that verified (a warning on the admitted workload);
    ``until`` is when the verification stops holding on its own (epoch
    seconds: a certificate's end, an expiry), past which it is not cached.
    """

    verified: tuple[str, ...]  # authorities counted, each for a distinct signer
    failures: tuple[tuple[str, str], ...]  # (authority, reason)
    threshold: int
    signers: tuple[tuple[str, str], ...] = ()  # (authority, signer)
    logged: tuple[str, ...] = ()
    until: float | None = None

    @property
    def passed(self) -> bool:
        """Whether enough authorities verified, with distinct keys and identities."""
        return len(self.verified) >= self.threshold

    @property
    def note(self) -> str:
        """``signed by release, wabbit (x509.subject '...')``: who verified."""
        shown = dict(self.signers)
        names = (f"{name} ({shown[name]})" if name in shown else name for name in self.verified)
        return f"signed by {', '.join(names)}"

    def reason(self, platform: str | None = None) -> str:
        """One line: how many verified, and why each other authority did not.

        ``platform`` names the platform image of an index the outcome is about.
        """
        tried = "; ".join(f"{name}: {why}" for name, why in self.failures)
        where = "" if platform is None else f" for platform {platform}"
        return (
            f"signature check failed{where}: {len(self.verified)} of the {self.threshold} "
            f"required authorities verified ({tried})"
        )


def lifetime(outcome: SignatureOutcome) -> float | None:
    """Seconds the outcome stays true (None: until the cache drops it)."""
    return None if outcome.until is None else outcome.until - time.time()


def cautioned(note: str, logged: list[str]) -> str | Caution:
    """``note``, or a Caution adding what a Notation level only logged (the first few)."""
    if not logged:
        return note
    shown = logged[:MAX_LOGGED]
    if len(logged) > MAX_LOGGED:
        shown.append(f"and {len(logged) - MAX_LOGGED} more")
    return Caution(f"{note}; Notation logged {'; '.join(shown)}")
