"""The Container Health Index rules: unapplied security fixes and their age -> a grade.

Only unapplied fixes for Critical and Important flaws count. Each gives a grade
from its age (the time since the fix was released); the image's grade is the
worst of them, and ``A`` without any. Ages only grow, so a grade only falls:
besides the grade at ``now`` this module computes the whole schedule (each
grade with its start and end, the shape Pyxis publishes), which says when an
image will drop next.

Everything here is pure: no clock (``now`` is a parameter), no I/O. Windows
are half-open like Pyxis's ``start_date <= now < end_date``; "up to 7 days"
means the first 7 x 24 hours after the release, and "12 months" is 365 days.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

Grade = Literal["A", "B", "C", "D", "E", "F"]
Severity = Literal["Critical", "Important", "Moderate", "Low"]

#: Best first.
GRADES: tuple[Grade, ...] = ("A", "B", "C", "D", "E", "F")
_RANK = {grade: rank for rank, grade in enumerate(GRADES)}

#: The one table: per counted severity, (age limit, grade while younger) in
#: order, then the grade of an older fix. Moderate and Low never count.
THRESHOLDS: dict[Severity, tuple[tuple[tuple[timedelta, Grade], ...], Grade]] = {
    "Critical": (
        (
            (timedelta(days=7), "B"),
            (timedelta(days=30), "C"),
            (timedelta(days=90), "D"),
            (timedelta(days=365), "E"),
        ),
        "F",
    ),
    "Important": (
        (
            (timedelta(days=30), "B"),
            (timedelta(days=90), "C"),
            (timedelta(days=365), "D"),
        ),
        "F",
    ),
}


@dataclass(frozen=True, slots=True)
class Fix:
    """One released, unapplied security fix: an advisory or CVE, its severity, its release.

    ``released`` must be timezone-aware. ``package`` is informative only.
    """

    id: str
    severity: Severity
    released: datetime
    package: str = ""

    @property
    def counts(self) -> bool:
        """Whether the severity counts toward the grade (Critical or Important)."""
        return self.severity in THRESHOLDS


@dataclass(frozen=True, slots=True)
class Window:
    """One grade from ``start`` (inclusive) to ``end`` (exclusive); None is unbounded."""

    grade: Grade
    start: datetime | None = None
    end: datetime | None = None

    def contains(self, moment: datetime) -> bool:
        """Whether ``moment`` falls in the window."""
        after_start = self.start is None or self.start <= moment
        return after_start and (self.end is None or moment < self.end)


def rank(grade: Grade) -> int:
    """0 for A up to 5 for F."""
    return _RANK[grade]


def at_least(grade: Grade, minimum: Grade) -> bool:
    """Whether ``grade`` is ``minimum`` or better."""
    return _RANK[grade] <= _RANK[minimum]


def worst(grades: Iterable[Grade]) -> Grade:
    """The worst of ``grades``; A for none."""
    return max(grades, key=_RANK.__getitem__, default="A")


def fix_grade(fix: Fix, now: datetime) -> Grade:
    """The grade ``fix`` alone gives at ``now``: A before its release or when it does not count."""
    if not fix.counts or now < fix.released:
        return "A"
    limits, oldest = THRESHOLDS[fix.severity]
    age = now - fix.released
    for limit, grade in limits:
        if age < limit:
            return grade
    return oldest


def grade_at(fixes: Iterable[Fix], now: datetime) -> Grade:
    """The image's grade at ``now``: the worst grade any of its fixes gives."""
    return worst(fix_grade(fix, now) for fix in fixes)


def deciding(fixes: Iterable[Fix], now: datetime) -> tuple[Fix, ...]:
    """The fixes that give the grade at ``now`` (none when the grade is A), oldest first."""
    fixes = tuple(fixes)
    grade = grade_at(fixes, now)
    if grade == "A":
        return ()
    chosen = (fix for fix in fixes if fix_grade(fix, now) == grade)
    return tuple(sorted(chosen, key=lambda fix: (fix.released, fix.id)))


def _breakpoints(fix: Fix) -> list[datetime]:
    if not fix.counts:
        return []
    limits, _ = THRESHOLDS[fix.severity]
    return [fix.released, *(fix.released + limit for limit, _ in limits)]


def schedule(fixes: Iterable[Fix]) -> tuple[Window, ...]:
    """Every grade the image will have, in order, each with its start and end.

    The first window starts unbounded, the last ends unbounded; neighbours never
    share a grade. Without counted fixes the schedule is a single ``A``.
    """
    fixes = tuple(fix for fix in fixes if fix.counts)
    moments = sorted({moment for fix in fixes for moment in _breakpoints(fix)})
    windows: list[Window] = []
    start: datetime | None = None
    grade: Grade = "A"
    for moment in moments:
        after = grade_at(fixes, moment)
        if after != grade:
            windows.append(Window(grade, start, moment))
            start, grade = moment, after
    windows.append(Window(grade, start, None))
    return tuple(windows)


def window_at(windows: Sequence[Window], now: datetime) -> Window | None:
    """The window holding ``now``, or None when the schedule does not cover it."""
    return next((window for window in windows if window.contains(now)), None)


def next_drop(windows: Sequence[Window], now: datetime) -> Window | None:
    """The first later window with a worse grade than the one holding ``now``."""
    current = window_at(windows, now)
    if current is None:
        return None
    later = (w for w in windows if w.start is not None and w.start > now)
    return next((w for w in later if _RANK[w.grade] > _RANK[current.grade]), None)


def drops_below(windows: Sequence[Window], minimum: Grade, now: datetime) -> Window | None:
    """The window from which the grade is below ``minimum``, if it is now or will be.

    For an image already below the minimum this is the first window of the run
    of below-minimum windows that holds ``now`` (the date it fell below), not a
    later drop; otherwise the first later window below the minimum.
    """
    ordered = sorted(windows, key=lambda w: (w.start is not None, w.start or now))
    current = window_at(ordered, now)
    if current is not None and not at_least(current.grade, minimum):
        start = ordered.index(current)
        while start > 0:
            before = ordered[start - 1]
            if at_least(before.grade, minimum) or before.end != ordered[start].start:
                break
            start -= 1
        return ordered[start]
    later = (w for w in ordered if w.start is not None and w.start > now)
    return next((w for w in later if not at_least(w.grade, minimum)), None)


def combine(schedules: Sequence[Sequence[Window]]) -> tuple[Window, ...]:
    """One schedule whose grade is, at every moment, the worst of ``schedules``.

    A multi-architecture image is as fresh as its stalest architecture. A
    moment one schedule does not cover takes the worst of those that do; a
    moment none covers is left out.
    """
    if len(schedules) == 1:
        return tuple(schedules[0])
    moments = sorted(
        {m for windows in schedules for w in windows for m in (w.start, w.end) if m is not None}
    )
    probes: list[datetime | None] = [None, *moments]
    windows: list[Window] = []
    for index, moment in enumerate(probes):
        end = moments[index] if index < len(moments) else None
        grades = [
            w.grade for found in schedules if (w := _covering(found, moment, end)) is not None
        ]
        if not grades:
            continue
        grade = worst(grades)
        last = windows[-1] if windows else None
        if last is not None and last.grade == grade and last.end == moment:
            windows[-1] = Window(grade, last.start, end)
        else:
            windows.append(Window(grade, moment, end))
    return tuple(windows)


def _covering(
    windows: Sequence[Window], start: datetime | None, end: datetime | None
) -> Window | None:
    """The window covering the span [start, end) of a combined schedule."""
    for window in windows:
        if start is None:
            if window.start is None:
                return window
            continue
        if window.contains(start):
            return window
    return None


def parse_date(value: Any) -> datetime | None:
    """An ISO 8601 date or date-time as an aware UTC datetime; None if it is not one.

    A value without a zone is taken as UTC, as Pyxis and scanners mean it.
    """
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+05:00 is before the first moment a datetime holds
        return None
    # A grade's windows run up to a year past a fix's release; past 9998 that is no datetime.
    return moment if moment.year < 9999 else None
