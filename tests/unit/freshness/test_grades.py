"""The Container Health Index rules, at every threshold and one day each side."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from webhook.freshness.grades import (
    Fix,
    Grade,
    Severity,
    Window,
    at_least,
    combine,
    deciding,
    drops_below,
    grade_at,
    next_drop,
    schedule,
    window_at,
    worst,
)

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def fix(severity: Severity, age: timedelta, name: str = "RHSA-1") -> Fix:
    return Fix(name, severity, NOW - age)


# (severity, age, grade): every threshold, one day each side, and the exact edge.
TABLE: list[tuple[Severity, timedelta, Grade]] = [
    ("Critical", timedelta(0), "B"),
    ("Critical", 6 * DAY, "B"),
    ("Critical", 7 * DAY - timedelta(seconds=1), "B"),
    ("Critical", 7 * DAY, "C"),
    ("Critical", 8 * DAY, "C"),
    ("Critical", 29 * DAY, "C"),
    ("Critical", 30 * DAY, "D"),
    ("Critical", 31 * DAY, "D"),
    ("Critical", 89 * DAY, "D"),
    ("Critical", 90 * DAY, "E"),
    ("Critical", 91 * DAY, "E"),
    ("Critical", 364 * DAY, "E"),
    ("Critical", 365 * DAY, "F"),
    ("Critical", 366 * DAY, "F"),
    ("Critical", 3650 * DAY, "F"),
    ("Important", timedelta(0), "B"),
    ("Important", 29 * DAY, "B"),
    ("Important", 30 * DAY - timedelta(seconds=1), "B"),
    ("Important", 30 * DAY, "C"),
    ("Important", 31 * DAY, "C"),
    ("Important", 89 * DAY, "C"),
    ("Important", 90 * DAY, "D"),
    ("Important", 91 * DAY, "D"),
    ("Important", 364 * DAY, "D"),
    ("Important", 365 * DAY, "F"),
    ("Important", 366 * DAY, "F"),
    ("Moderate", 3650 * DAY, "A"),
    ("Low", 3650 * DAY, "A"),
]


@pytest.mark.parametrize(("severity", "age", "grade"), TABLE)
def test_one_fix(severity: Severity, age: timedelta, grade: Grade) -> None:
    assert grade_at([fix(severity, age)], NOW) == grade


@pytest.mark.parametrize(("severity", "age", "grade"), TABLE)
def test_schedule_agrees_with_grade_at(severity: Severity, age: timedelta, grade: Grade) -> None:
    windows = schedule([fix(severity, age)])
    found = window_at(windows, NOW)
    assert found is not None and found.grade == grade


def test_no_fix_is_a() -> None:
    assert grade_at([], NOW) == "A"
    assert schedule([]) == (Window("A"),)
    assert deciding([], NOW) == ()


def test_a_fix_not_yet_released_does_not_count() -> None:
    assert grade_at([Fix("RHSA-9", "Critical", NOW + DAY)], NOW) == "A"


@pytest.mark.parametrize(
    ("fixes", "grade"),
    [
        # The worst fix decides, whichever severity gives it.
        ([fix("Critical", 2 * DAY), fix("Important", 100 * DAY)], "D"),
        ([fix("Critical", 40 * DAY), fix("Important", 100 * DAY)], "D"),
        ([fix("Critical", 100 * DAY), fix("Important", 100 * DAY)], "E"),
        ([fix("Critical", 2 * DAY), fix("Important", 2 * DAY)], "B"),
        ([fix("Important", 400 * DAY), fix("Critical", 1 * DAY)], "F"),
        # Moderate and Low never count, however old.
        ([fix("Moderate", 900 * DAY), fix("Low", 900 * DAY), fix("Important", DAY)], "B"),
    ],
)
def test_mixed_sets_take_the_worst(fixes: list[Fix], grade: Grade) -> None:
    assert grade_at(fixes, NOW) == grade


def test_deciding_fixes_are_those_giving_the_grade() -> None:
    old = fix("Important", 100 * DAY, "RHSA-old")
    new = fix("Critical", 2 * DAY, "RHSA-new")
    ignored = fix("Moderate", 900 * DAY, "RHSA-moderate")
    assert deciding([new, old, ignored], NOW) == (old,)


def test_schedule_dates_of_a_critical_fix() -> None:
    released = datetime(2024, 1, 1, tzinfo=UTC)
    windows = schedule([Fix("RHSA-1", "Critical", released)])
    assert windows == (
        Window("A", None, released),
        Window("B", released, released + 7 * DAY),
        Window("C", released + 7 * DAY, released + 30 * DAY),
        Window("D", released + 30 * DAY, released + 90 * DAY),
        Window("E", released + 90 * DAY, released + 365 * DAY),
        Window("F", released + 365 * DAY, None),
    )


def test_schedule_dates_of_an_important_fix_skip_e() -> None:
    released = datetime(2024, 1, 1, tzinfo=UTC)
    grades = [w.grade for w in schedule([Fix("RHSA-1", "Important", released)])]
    assert grades == ["A", "B", "C", "D", "F"]


def test_schedule_of_mixed_fixes_merges_equal_neighbours() -> None:
    day0 = datetime(2024, 1, 1, tzinfo=UTC)
    # Important at day 0 (B until day 30); Critical at day 20 (B until 27, C until 50).
    windows = schedule([Fix("I", "Important", day0), Fix("C", "Critical", day0 + 20 * DAY)])
    assert windows[:4] == (
        Window("A", None, day0),
        Window("B", day0, day0 + 27 * DAY),
        Window("C", day0 + 27 * DAY, day0 + 50 * DAY),
        Window("D", day0 + 50 * DAY, day0 + 110 * DAY),
    )
    for a, b in pairwise(windows):
        assert a.grade != b.grade and a.end == b.start


def test_next_drop_and_drop_below() -> None:
    windows = schedule([fix("Critical", 2 * DAY)])
    drop = next_drop(windows, NOW)
    assert drop is not None and drop.grade == "C" and drop.start == NOW + 5 * DAY
    below = drops_below(windows, "C", NOW)
    assert below is not None and below.grade == "D" and below.start == NOW + 28 * DAY
    assert drops_below(windows, "F", NOW) is None
    assert next_drop(schedule([fix("Critical", 400 * DAY)]), NOW) is None


def test_drop_below_of_an_image_already_below_is_when_it_fell_below() -> None:
    # Critical fix 40 days old: C from day 7, D from day 30 (ten days ago), then E, F later.
    windows = schedule([fix("Critical", 40 * DAY)])
    current = window_at(windows, NOW)
    assert current is not None and current.grade == "D"
    below = drops_below(windows, "C", NOW)
    assert below is not None and below.grade == "D" and below.start == NOW - 10 * DAY
    # Below B since the C window began (33 days ago), across the later drop to D.
    below_b = drops_below(windows, "B", NOW)
    assert below_b is not None and below_b.grade == "C" and below_b.start == NOW - 33 * DAY
    # Still above E today: the answer is the future window, as before.
    below_e = drops_below(windows, "E", NOW)
    assert below_e is not None and below_e.grade == "F" and below_e.start is not None
    assert below_e.start > NOW


@pytest.mark.parametrize(
    ("grade", "minimum", "ok"),
    [("A", "B", True), ("B", "B", True), ("C", "B", False), ("F", "A", False), ("E", "F", True)],
)
def test_at_least(grade: Grade, minimum: Grade, ok: bool) -> None:
    assert at_least(grade, minimum) is ok


def test_worst() -> None:
    assert worst(["B", "D", "A"]) == "D"
    assert worst([]) == "A"


def test_combine_takes_the_worst_architecture_at_every_moment() -> None:
    d = datetime(2024, 1, 1, tzinfo=UTC)
    amd64 = (
        Window("A", d, d + 10 * DAY),
        Window("B", d + 10 * DAY, d + 40 * DAY),
        Window("C", d + 40 * DAY),
    )
    arm64 = (Window("B", d + 5 * DAY, d + 20 * DAY), Window("D", d + 20 * DAY))
    combined = combine([amd64, arm64])
    assert combined == (
        Window("A", d, d + 5 * DAY),
        Window("B", d + 5 * DAY, d + 20 * DAY),
        Window("D", d + 20 * DAY, None),
    )
    assert window_at(combined, d - DAY) is None
