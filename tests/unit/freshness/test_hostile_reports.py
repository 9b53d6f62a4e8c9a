"""Whatever a signed vulnerability report holds, reading and grading it raises only ReportError.

A report is signed by an authority the policy trusts, but a scanner's output is
still data from outside: far dates, odd types, deep nesting. Hypothesis writes
Trivy, Grype and cosign vuln shapes with random values where dates, severities
and lists go; parse_report must return or raise ReportError, and the grade
schedule of what it returns must compute.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.freshness.grades import grade_at, parse_date, schedule
from webhook.freshness.reports import ReportError, parse_report

DATES = st.one_of(
    st.datetimes(timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=14))])).map(
        lambda moment: moment.isoformat()
    ),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+05:00",
            "9999-12-31T23:59:59-05:00",
            "9999-12-31",
            "9998-12-31T00:00:00Z",
            "0001-01-01",
            "",
            "not a date",
        ]
    ),
)
ANY = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8), DATES),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
SEVERITY = st.one_of(st.sampled_from(["CRITICAL", "HIGH", "low", "Important"]), ANY)


def trivy_vuln() -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {
            "VulnerabilityID": ANY,
            "Severity": SEVERITY,
            "FixedVersion": st.one_of(st.just("1.2"), ANY),
            "PublishedDate": st.one_of(DATES, ANY),
            "PkgName": ANY,
        }
    )


TRIVY = st.fixed_dictionaries(
    {
        "SchemaVersion": st.just(2),
        "CreatedAt": st.one_of(DATES, ANY),
        "Results": st.one_of(
            st.lists(
                st.fixed_dictionaries({"Vulnerabilities": st.lists(trivy_vuln(), max_size=4)})
            ),
            ANY,
        ),
    }
)
GRYPE = st.fixed_dictionaries(
    {
        "descriptor": st.one_of(st.fixed_dictionaries({"timestamp": DATES}), ANY),
        "matches": st.one_of(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "vulnerability": st.fixed_dictionaries(
                            {
                                "id": ANY,
                                "severity": SEVERITY,
                                "published": st.one_of(DATES, ANY),
                                "fix": st.one_of(
                                    st.fixed_dictionaries(
                                        {
                                            "versions": st.just(["1.2"]),
                                            "state": st.sampled_from(["fixed", "not-fixed"]),
                                            "available": st.one_of(
                                                st.lists(
                                                    st.fixed_dictionaries({"date": DATES}),
                                                    max_size=3,
                                                ),
                                                ANY,
                                            ),
                                        }
                                    ),
                                    ANY,
                                ),
                            }
                        ),
                        "artifact": ANY,
                    }
                ),
                max_size=4,
            ),
            ANY,
        ),
    }
)
REPORTS = st.one_of(
    TRIVY,
    GRYPE,
    st.builds(
        lambda inner, finished: {
            "scanner": {"uri": "scanner", "result": inner},
            "metadata": {"scanFinishedOn": finished},
        },
        st.one_of(TRIVY, GRYPE, ANY),
        st.one_of(DATES, ANY),
    ),
    st.dictionaries(st.text(max_size=8), ANY, max_size=4),
)


@settings(max_examples=200, deadline=None)
@given(report=REPORTS)
def test_a_report_reads_and_grades_or_is_a_report_error(report: dict[str, Any]) -> None:
    try:
        parsed = parse_report(report)
    except ReportError:
        return
    schedule(parsed.fixes)
    grade_at(parsed.fixes, dt.datetime(2026, 12, 6, tzinfo=dt.UTC))


@pytest.mark.parametrize(
    "text", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "9999-01-01"]
)
def test_dates_no_grade_can_use_are_no_dates(text: str) -> None:
    assert parse_date(text) is None


def test_a_fix_released_in_9999_is_graded_as_undated() -> None:
    vuln = {
        "VulnerabilityID": "CVE-1",
        "Severity": "CRITICAL",
        "FixedVersion": "1.2",
        "PublishedDate": "9999-12-01T00:00:00Z",
    }
    report = parse_report({"SchemaVersion": 2, "Results": [{"Vulnerabilities": [vuln]}]})
    assert schedule(report.fixes)
    assert report.fixes[0].released == dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def test_a_deeply_nested_report_is_a_report_error() -> None:
    deep: list[Any] = []
    for _ in range(5000):  # deeper than the interpreter's recursion limit
        deep = [deep]
    vuln = {"VulnerabilityID": deep, "Severity": "CRITICAL", "FixedVersion": "1.2"}
    predicate = {
        "scanner": {
            "uri": "x",
            "result": {"SchemaVersion": 2, "Results": [{"Vulnerabilities": [vuln]}]},
        },
        "metadata": {},
    }
    with pytest.raises(ReportError, match="nested too deeply"):
        parse_report(predicate)
