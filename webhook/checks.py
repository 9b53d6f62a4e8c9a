"""The checks a policy runs on an image, behind one protocol.

A check returns ``None`` when the image passes and raises a ``TrustgateError``
when it does not; only the engine turns that into a recorded result. This
module holds the protocol, what checks share (``CheckContext``, ``Caution``)
and the two checks that need no network; it imports no other check. The
network checks are built by name in ``services.py``, the one place that wires
implementations together, and a policy section with no working backend fails
closed (``Unavailable``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from webhook.core.deadline import Deadline
from webhook.core.errors import CheckFailed, CheckUnavailable
from webhook.core.reference import ImageRef
from webhook.policy.model import Policy


@dataclass(slots=True)
class CheckContext:
    """What the checks of one image share during one review.

    ``resolve()`` returns the digest the reference points at, asking ``resolver``
    (the registry) at most once per image and review, and only when a check
    needs it: the allowlist runs first, so an image outside it never leads to a
    request. ``digest`` is what was resolved so far, for reports. ``vouched`` is
    the digest the running check verified itself (a signature, an attestation,
    a known grade), which is all ``/mutate`` may pin; the engine clears it
    before each check.
    """

    deadline: Deadline
    resolver: Callable[[], str]
    digest: str | None = None
    vouched: str | None = None
    #: The review is ``/mutate``'s: its verdict decides what to pin, never an
    #: admission, so ``requireDigest`` lets a tag through to be verified and pinned.
    pinning: bool = False

    def resolve(self) -> str:
        """The image's digest, resolved once."""
        if self.digest is None:
            self.digest = self.resolver()
        return self.digest

    def vouch(self) -> None:
        """Record that the running check verified the resolved digest itself.

        A check calls it only when what it checked is bound to that digest (a
        signature over it, a grade of it), never for an admission by default
        (an unknown grade under ``onUnknown: allow``).
        """
        self.vouched = self.digest


@dataclass(frozen=True, slots=True)
class Caution:
    """What a check returns when the image passes but the workload should carry a warning.

    ``message`` becomes a warning on the admitted workload (``kubectl`` shows
    it), in enforce and audit mode alike: e.g. a freshness grade that will
    fall below the minimum within ``warnBeforeDays``.
    """

    message: str


class Check(Protocol):
    """One check of one image against one policy.

    ``pure`` says that ``run`` depends on nothing but its arguments (no network,
    no clock), so the engine may remember its outcome for as long as the policy
    set stays the same.
    """

    name: str
    pure: bool

    def run(self, image: ImageRef, policy: Policy, context: CheckContext) -> str | Caution | None:
        """Return if ``image`` passes; raise a TrustgateError saying why not.

        What it returns is an optional short note on how the image passed
        (``signed by release``), shown by ``trustgate check`` and audit reports,
        or a Caution: the image passes and the workload gets a warning.
        """
        ...


class Allowlist:
    """The image's repository must match one of the policy's registry globs.

    It runs first and needs no network: an image outside the allowlist is never
    contacted, so image names cannot steer trustgate to arbitrary hosts.
    """

    name = "allowlist"
    pure = True

    def run(self, image: ImageRef, policy: Policy, context: CheckContext) -> str | None:
        """Raise CheckFailed when no registry glob matches the repository."""
        for glob in policy.registries:
            if glob.matches(image.repository):
                return None
        allowed = ", ".join(str(g) for g in policy.registries)
        raise CheckFailed(
            f"repository {image.repository} is not in the registry allowlist ({allowed})",
            check=self.name,
        )


class Digest:
    """``requireDigest``: the reference must pin a digest, so what runs is what was checked."""

    name = "digest"
    pure = True

    def run(self, image: ImageRef, policy: Policy, context: CheckContext) -> str | None:
        """Raise CheckFailed when the reference has no digest.

        Under ``/mutate`` (``context.pinning``) a tag passes: the verdict only
        says whether to pin it, and ``/validate`` then sees the pinned digest.
        """
        if image.digest is None and not context.pinning:
            raise CheckFailed(
                "the image is not pinned by digest; use "
                f"{image.repository}@sha256:<digest> (the policy sets requireDigest)",
                check=self.name,
            )
        return None


class Unavailable:
    """Stands in for a check this build cannot perform, and denies."""

    pure = True

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, image: ImageRef, policy: Policy, context: CheckContext) -> str | None:
        """Always raise CheckUnavailable."""
        raise CheckUnavailable(
            f"the policy requires {self.name} verification, which this version of "
            "trustgate cannot perform yet; the image cannot be admitted under it",
            check=self.name,
        )


def checks_for(policy: Policy, checks: dict[str, Check]) -> tuple[Check, ...]:
    """The checks ``policy`` asks for, cheapest first.

    ``checks`` maps names to built checks; a name missing from it is an
    Unavailable check, so a gap denies instead of passing.
    """
    names = ["allowlist"]
    if policy.require_digest:
        names.append("digest")
    if policy.signatures is not None:
        names.append("signatures")
    if policy.attestations:
        names.append("attestations")
    if policy.freshness is not None:
        names.append("freshness")
    return tuple(checks.get(name) or Unavailable(name) for name in names)


def offline_checks() -> dict[str, Check]:
    """The checks that need no network: what an engine built without services runs.

    Every other check a policy asks for is then Unavailable (``checks_for``),
    so such an engine denies rather than skips them.
    """
    return {"allowlist": Allowlist(), "digest": Digest()}
