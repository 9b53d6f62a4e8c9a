"""One exception tree for everything trustgate can refuse or fail at.

Every error carries the image, the policy and the check it concerns, so the
admission layer needs a single ``except TrustgateError`` and an operator reading
a denial sees what failed where. ``outcome`` tells a refusal on the merits
(``"deny"``) from a failure to decide (``"error"``); both deny in enforce mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

Outcome = Literal["deny", "error"]


class TrustgateError(Exception):
    """Root of every trustgate error.

    ``str()`` names the image, the policy and the check when they are known,
    followed by the message, e.g.
    ``image quay.io/acme/api:1.2, policy "production", check allowlist: ...``.
    """

    outcome: ClassVar[Outcome] = "error"

    def __init__(
        self,
        message: str,
        *,
        image: str | None = None,
        policy: str | None = None,
        check: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.image = image
        self.policy = policy
        self.check = check

    def __str__(self) -> str:
        context = []
        if self.image is not None:
            context.append(f"image {self.image}")
        if self.policy is not None:
            context.append(f'policy "{self.policy}"')
        if self.check is not None:
            context.append(f"check {self.check}")
        if not context:
            return self.message
        return f"{', '.join(context)}: {self.message}"


class ConfigError(TrustgateError):
    """The global configuration file is missing, unreadable or invalid."""


class PolicyError(TrustgateError):
    """A policy file is unreadable or invalid.

    ``location`` names the file, the document (1-based) and the field, so that
    the message alone is enough to find the mistake.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        document: int | None = None,
        field: str | None = None,
        policy: str | None = None,
    ) -> None:
        super().__init__(message, policy=policy)
        self.file = file
        self.document = document
        self.field = field

    @property
    def location(self) -> str:
        """Where the mistake is: ``file, document N, field a.b[0]``."""
        parts = []
        if self.file is not None:
            parts.append(self.file)
        if self.document is not None:
            parts.append(f"document {self.document}")
        if self.field:
            parts.append(f"field {self.field}")
        return ", ".join(parts)

    def __str__(self) -> str:
        location = self.location
        text = f"{location}: {self.message}" if location else self.message
        if self.policy is not None:
            text = f'policy "{self.policy}": {text}'
        return text


class PolicyErrors(PolicyError):
    """Every mistake found while loading policies, in file and document order.

    With one mistake, ``str()``, ``file``, ``document`` and ``field`` are those
    of that mistake; with several, ``str()`` lists them one per line.
    """

    def __init__(self, errors: Sequence[PolicyError]) -> None:
        if not errors:
            raise ValueError("PolicyErrors needs at least one error")
        first = errors[0]
        if len(errors) == 1:
            super().__init__(
                first.message,
                file=first.file,
                document=first.document,
                field=first.field,
                policy=first.policy,
            )
        else:
            lines = "\n".join(f"  {error}" for error in errors)
            super().__init__(f"{len(errors)} policy errors:\n{lines}")
        self.errors: list[PolicyError] = list(errors)


class ImageReferenceError(TrustgateError):
    """An image reference does not follow the distribution reference grammar."""

    outcome: ClassVar[Outcome] = "deny"


class CheckFailed(TrustgateError):
    """A policy check looked at the image and refused it."""

    outcome: ClassVar[Outcome] = "deny"


class UpstreamError(TrustgateError):
    """A service the decision depends on (a registry, Pyxis) failed or timed out."""


class AdmissionReviewError(TrustgateError):
    """The request body is not an AdmissionReview trustgate can answer."""


class WorkloadError(TrustgateError):
    """An object's pod spec is malformed where an image should be."""

    outcome: ClassVar[Outcome] = "deny"


class CheckUnavailable(TrustgateError):
    """A policy asks for a check this build cannot perform.

    Reported as an error, never skipped: an unperformed check must not pass.
    """


class ManifestError(TrustgateError):
    """A manifest file given to ``trustgate audit`` cannot be read or parsed."""


class KubeError(TrustgateError):
    """The Kubernetes API cannot be reached, refuses a request, or is not configured.

    Raised by ``trustgate audit --cluster`` and by the registration of the webhooks
    (``serve --register``); never on the admission path.
    """
