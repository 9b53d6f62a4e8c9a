"""What the engine decides about one image: results per check and policy, and the Verdict.

Separate from the engine because these are the data every layer above it
reads (admission, the decision log, reports), frozen so that verdicts can be
shared between threads and kept in memos; the engine that produces them is
orchestration, and changes for other reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from webhook.core.reference import ImageRef
from webhook.policy.model import Mode, NoMatch

#: "warn": the check passed, and the workload gets a warning (a Caution).
Outcome = Literal["pass", "warn", "deny", "error"]

_MAX_SHOWN = 200


def display(text: str) -> str:
    """``text`` made safe to show in one line: printable ASCII, bounded length.

    Image strings come from the request and may carry control characters meant
    to forge log lines or warnings.
    """
    if text.isascii() and text.isprintable() and len(text) <= _MAX_SHOWN:
        return text
    shown = repr(text[:_MAX_SHOWN])
    return shown if len(text) <= _MAX_SHOWN else shown + "..."


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check: why it failed, or a note on how it passed.

    ``digest`` is the digest the check verified itself (a signature over it, an
    attestation about it, a known grade of it), when it passed that way.
    """

    check: str
    outcome: Outcome
    message: str = ""
    digest: str | None = None


@dataclass(frozen=True, slots=True)
class PolicyResult:
    """The outcome of one policy for one image; the first failed check ends it."""

    policy: str
    mode: Mode
    results: tuple[CheckResult, ...]
    #: The policy's ``pinDigest``: whether ``/mutate`` pins what it verified.
    pin: bool = False

    @property
    def passed(self) -> bool:
        """Whether every check passed (some perhaps with a warning)."""
        return all(r.outcome in ("pass", "warn") for r in self.results)

    @property
    def failure(self) -> CheckResult | None:
        """The failed check, if any."""
        return next((r for r in self.results if r.outcome in ("deny", "error")), None)

    @property
    def cautions(self) -> tuple[CheckResult, ...]:
        """Checks that passed with a warning for the workload."""
        return tuple(r for r in self.results if r.outcome == "warn")


@dataclass(frozen=True, slots=True)
class Verdict:
    """Everything decided about one image.

    ``denials`` are enforce failures (the workload is refused); ``warnings`` are
    audit failures and no-match warnings (the workload is admitted). Each entry
    is one line naming the image, the policy and the failed check. ``digest`` is
    what the reference resolved to, when a check needed it.
    """

    image: str
    reference: ImageRef | None
    policies: tuple[PolicyResult, ...]
    denials: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    no_match: NoMatch | None = None
    digest: str | None = None
    #: Where the login the registry accepted came from (``pull secret team-a/regcred``,
    #: ``anonymous``), when a check called the image's registry. Never a secret.
    login: str | None = None

    @property
    def notes(self) -> tuple[str, ...]:
        """How the image passed each check that says so: ``policy "p": signed by release``."""
        return tuple(
            f'policy "{policy.policy}": {result.message}'
            for policy in self.policies
            for result in policy.results
            if result.outcome == "pass" and result.message
        )

    @property
    def allowed(self) -> bool:
        """Whether no enforce policy denied the image."""
        return not self.denials


#: A place held for a verdict that a check thread is working out.
PENDING = Verdict("", None, ())


def denial_line(image: str, policy: str, mode: Mode, failure: CheckResult) -> str:
    verb = "denied" if mode == "enforce" else "would be denied"
    suffix = "" if mode == "enforce" else " (audit mode)"
    return f'image {image} {verb} by policy "{policy}"{suffix}: {failure.message}'
