"""What a review asks and what was decided: the data admission and the decision log share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook.admission.waivers import Waiver
from webhook.engine import Verdict

__all__ = ["AdmissionRequest", "Decision"]


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    """The parts of an AdmissionReview request a decision depends on."""

    uid: str
    kind: str
    operation: str
    namespace: str = ""
    name: str = ""
    group: str = ""
    sub_resource: str = ""
    user: str = ""
    dry_run: bool = False
    object: Mapping[str, Any] | None = None
    old_object: Mapping[str, Any] | None = None
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one request, with what it was based on.

    ``containers`` and ``volumes`` name, per image (as shown), the containers
    and image volumes that use it; ``unchecked`` are the images of an UPDATE
    admitted without a re-check, and ``note`` says why. ``waivers`` are the
    denials exceptions and break-glass waived; ``break_glass`` is the
    annotation's reason (None without the annotation) and ``ignored`` says
    why it was not honoured where it was not.
    """

    allowed: bool
    message: str = ""
    warnings: tuple[str, ...] = ()
    audit_annotations: Mapping[str, str] = field(default_factory=dict)
    verdicts: tuple[Verdict, ...] = ()
    containers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    note: str = ""
    volumes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    unchecked: tuple[str, ...] = ()
    waivers: tuple[Waiver, ...] = ()
    break_glass: str | None = None
    ignored: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """allowed, warned or denied: the decision metric's label."""
        if not self.allowed:
            return "denied"
        return "warned" if self.warnings else "allowed"
