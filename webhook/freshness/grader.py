"""``trustgate grade``: an image's grade, its source, the fixes behind it and its schedule.

The grade is looked up exactly as the freshness check does (same sources,
caches and deadline), for the policy that governs the image in the given
namespace; an image no freshness policy governs is graded from ``sources``
alone, with no minimum.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from webhook.checks import CheckContext
from webhook.core.deadline import Deadline
from webhook.core.errors import TrustgateError
from webhook.core.reference import ImageRef, parse_reference
from webhook.freshness.check import FreshnessCheck, day, windows_text
from webhook.freshness.grades import (
    Fix,
    Grade,
    Window,
    at_least,
    deciding,
    drops_below,
    next_drop,
    window_at,
)
from webhook.freshness.sources import LABELS, Unknown
from webhook.policy.globs import Glob
from webhook.policy.model import Freshness, Match, Policy, PolicySet

Resolver = Callable[[ImageRef, Deadline], str]


@dataclass(frozen=True, slots=True)
class GradeResult:
    """What ``trustgate grade`` says about one image."""

    image: str
    digest: str | None
    policy: str | None
    minimum: Grade | None
    grade: Grade | None
    source: str | None
    detail: str
    fixes: tuple[Fix, ...]
    schedule: tuple[Window, ...]
    next_drop: Window | None
    below_at: Window | None
    unknown: tuple[str, ...]

    @property
    def passes(self) -> bool:
        """Whether the grade is known and reaches the minimum (any grade without one)."""
        if self.grade is None:
            return False
        return self.minimum is None or at_least(self.grade, self.minimum)

    def as_json(self) -> dict[str, Any]:
        """The result as JSON-ready data; dates in ISO 8601, the schedule in Pyxis's shape."""
        return {
            "image": self.image,
            "digest": self.digest,
            "policy": self.policy,
            "minimumGrade": self.minimum,
            "grade": self.grade,
            "passes": self.passes,
            "source": self.source,
            "detail": self.detail,
            "fixes": [
                {
                    "id": f.id,
                    "severity": f.severity,
                    "released": f.released.isoformat(),
                    "package": f.package,
                }
                for f in self.fixes
            ],
            "schedule": windows_text(self.schedule),
            "nextDrop": None if self.next_drop is None else windows_text((self.next_drop,))[0],
            "belowMinimumFrom": None
            if self.below_at is None or self.below_at.start is None
            else self.below_at.start.isoformat(),
            "unknown": list(self.unknown),
        }

    def lines(self) -> list[str]:
        """The result for people: one headline, then fixes and schedule."""
        head = f"{self.image}: "
        if self.grade is None:
            head += "grade unknown"
        else:
            head += f"grade {self.grade} ({self.source}{', ' + self.detail if self.detail else ''})"
        if self.minimum is not None:
            verdict = "passes" if self.passes else "fails"
            head += f'; {verdict} the minimum {self.minimum} of policy "{self.policy}"'
        out = [head]
        if self.digest:
            out.append(f"  digest: {self.digest}")
        out.extend(f"  unknown: {why}" for why in self.unknown)
        for fix in self.fixes:
            released = day(fix.released)
            out.append(
                f"  fix: {fix.id} ({fix.severity}, released {released}) {fix.package}".rstrip()
            )
        if self.next_drop is not None:
            out.append(f"  next drop: {self.next_drop.grade} on {day(self.next_drop.start)}")
        if self.below_at is not None:
            out.append(f"  below the minimum from: {day(self.below_at.start)}")
        for w in self.schedule:
            out.append(f"  schedule: {w.grade} from {day(w.start)} until {day(w.end)}")
        return out


class Grader:
    """Grades images the way the freshness check does."""

    def __init__(self, check: FreshnessCheck, resolver: Resolver, deadline_seconds: float) -> None:
        self._check = check
        self._resolver = resolver
        self._deadline_seconds = deadline_seconds

    def grade(
        self,
        image: str,
        policies: PolicySet,
        *,
        namespace: str,
        kind: str,
        sources: tuple[str, ...],
        now: datetime,
    ) -> GradeResult:
        """Grade ``image`` for the first freshness policy governing it (or ``sources``).

        Raises:
            TrustgateError: the reference is invalid (lookup failures become ``unknown``).
        """
        ref = parse_reference(image)
        governing = [p for p in policies.matching(namespace, kind, ref) if p.freshness is not None]
        policy = governing[0] if governing else _adhoc(sources)
        if governing and sources:
            assert policy.freshness is not None
            policy = replace(policy, freshness=replace(policy.freshness, sources=sources))
        deadline = Deadline(self._deadline_seconds)
        context = CheckContext(deadline, lambda: self._resolver(ref, deadline), ref.digest)
        try:
            found, unknowns = self._check.grade(ref, policy, context)
        except TrustgateError as exc:
            found, unknowns = None, [Unknown("registry", exc.message, failed=True)]
        minimum = policy.freshness.minimum_grade if governing and policy.freshness else None
        reasons = tuple(f"{LABELS.get(u.source, u.source)}: {u.reason}" for u in unknowns)
        current = None if found is None else window_at(found.windows, now)
        return GradeResult(
            image=image,
            digest=context.digest,
            policy=policy.name if governing else None,
            minimum=minimum,
            grade=None if current is None else current.grade,
            source=None if found is None else found.label,
            detail="" if found is None else found.detail,
            fixes=() if found is None else deciding(found.fixes, now),
            schedule=() if found is None else found.windows,
            next_drop=None if found is None else next_drop(found.windows, now),
            below_at=None
            if found is None or minimum is None
            else drops_below(found.windows, minimum, now),
            unknown=reasons,
        )


def _adhoc(sources: tuple[str, ...]) -> Policy:
    return Policy(
        name="(no policy)",
        mode="audit",
        match=Match(),
        registries=(Glob("**"),),
        freshness=Freshness("F", sources or ("pyxis", "static")),
    )
