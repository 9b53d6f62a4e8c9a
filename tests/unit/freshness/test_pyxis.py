"""The Pyxis client against a local double answering the catalog's shapes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.pyxis import Pyxis, grades, image_record, running_pyxis
from webhook.core.deadline import Deadline
from webhook.core.errors import UpstreamError
from webhook.freshness.grades import Window, parse_date
from webhook.freshness.pyxis import PyxisClient, PyxisSettings
from webhook.freshness.sources import FreshnessSettings, FreshnessSources, GradeReport, Unknown

T0 = datetime(2024, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
INDEX = "sha256:" + "1" * 64
AMD64 = "sha256:" + "a" * 64
ARM64 = "sha256:" + "b" * 64
SINGLE = "sha256:" + "c" * 64
EMPTY = "sha256:" + "e" * 64


@pytest.fixture(scope="module")
def pyxis() -> Iterator[Pyxis]:
    with running_pyxis() as double:
        double.add(
            image_record(
                "amd64",
                AMD64,
                grades(
                    ("A", T0, T0 + 10 * DAY),
                    ("B", T0 + 10 * DAY, T0 + 40 * DAY),
                    ("C", T0 + 40 * DAY, None),
                ),
                list_digest=INDEX,
            ),
            image_record(
                "arm64",
                ARM64,
                grades(("A", T0, T0 + 20 * DAY), ("D", T0 + 20 * DAY, None)),
                list_digest=INDEX,
            ),
            image_record("amd64", SINGLE, grades(("B", T0, None))),
            image_record("amd64", EMPTY, []),
        )
        yield double


def sources(pyxis: Pyxis, **settings: object) -> FreshnessSources:
    return FreshnessSources(FreshnessSettings(pyxis=PyxisSettings(url=pyxis.url, **settings)))  # type: ignore[arg-type]


def test_multi_architecture_image_takes_the_worst_grade(pyxis: Pyxis) -> None:
    report = sources(pyxis).from_pyxis(INDEX, Deadline(5))
    assert isinstance(report, GradeReport)
    assert report.detail == "architectures amd64, arm64"
    assert report.windows == (
        Window("A", T0, T0 + 10 * DAY),
        Window("B", T0 + 10 * DAY, T0 + 20 * DAY),
        Window("D", T0 + 20 * DAY, None),
    )


def test_single_manifest_by_schema2_digest(pyxis: Pyxis) -> None:
    client = PyxisClient(PyxisSettings(url=pyxis.url))
    (found,) = client.grades(SINGLE, Deadline(5))
    assert (found.architecture, found.image_id) == ("amd64", SINGLE)
    assert found.windows == (Window("B", T0, None),)


def test_one_architecture_of_an_index_by_its_own_digest(pyxis: Pyxis) -> None:
    report = sources(pyxis).from_pyxis(ARM64, Deadline(5))
    assert isinstance(report, GradeReport) and report.detail == "architecture arm64"


def test_unknown_and_empty(pyxis: Pyxis) -> None:
    missing = sources(pyxis).from_pyxis("sha256:" + "9" * 64, Deadline(5))
    assert isinstance(missing, Unknown) and "does not know sha256:9999" in missing.reason
    empty = sources(pyxis).from_pyxis(EMPTY, Deadline(5))
    assert isinstance(empty, Unknown)
    assert empty.reason == f"Pyxis knows {EMPTY} but publishes no freshness grades for it"


def test_404_is_unknown_and_500_an_upstream_error(pyxis: Pyxis) -> None:
    gone, broken = "sha256:" + "4" * 64, "sha256:" + "5" * 64
    pyxis.failures.update({gone: "404", broken: "500"})
    assert isinstance(sources(pyxis).from_pyxis(gone, Deadline(5)), Unknown)
    with pytest.raises(
        UpstreamError,
        match=r"^Pyxis at http://127\.0\.0\.1:\d+/api/containers/v1 answered HTTP 500$",
    ):
        sources(pyxis).from_pyxis(broken, Deadline(5))


def test_an_answer_nested_3000_levels_is_an_upstream_error(pyxis: Pyxis) -> None:
    deep = "sha256:" + "7" * 64
    pyxis.failures[deep] = "deep"
    with pytest.raises(
        UpstreamError,
        match=r"^Pyxis at http://127\.0\.0\.1:\d+/api/containers/v1 answered something that is "
        r"not JSON: it nests too deeply",
    ):
        sources(pyxis).from_pyxis(deep, Deadline(5))


def test_slow_pyxis_times_out_within_the_deadline(pyxis: Pyxis) -> None:
    slow = "sha256:" + "6" * 64
    pyxis.failures[slow] = "slow"
    pyxis.slow_seconds = 3.0
    started = datetime.now(UTC)
    with pytest.raises(UpstreamError, match=r"timed out: .*deadline of 0\.5 s passed"):
        sources(pyxis, timeout=5.0).from_pyxis(slow, Deadline(0.5))
    assert datetime.now(UTC) - started < timedelta(seconds=2)


def test_api_key_header_and_filter(pyxis: Pyxis) -> None:
    sources(pyxis, api_key="s3cret").from_pyxis(SINGLE, Deadline(5))
    query, headers = pyxis.requests[-1]
    assert headers.get("X-API-KEY") == "s3cret"
    assert "manifest_list_digest" in query and "manifest_schema2_digest" in query
    sources(pyxis).from_pyxis(SINGLE, Deadline(5))
    assert "X-API-KEY" not in pyxis.requests[-1][1]


def test_unreachable_pyxis_is_an_upstream_error() -> None:
    with running_pyxis() as double:
        url = double.url
    client = PyxisClient(PyxisSettings(url=url))
    with pytest.raises(UpstreamError, match="cannot be reached"):
        client.grades(SINGLE, Deadline(2))


def test_only_digests_are_asked_about() -> None:
    client = PyxisClient(PyxisSettings(url="http://127.0.0.1:9"))
    with pytest.raises(UpstreamError, match="only about sha256 digests"):
        client.grades("sha256:abc or image_id==x", Deadline(2))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T00:00:00+00:00", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-01T02:00:00+02:00", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-01T00:00:00.123456789Z", datetime(2024, 5, 1, 0, 0, 0, 123456, tzinfo=UTC)),
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_date(text: str | None, expected: datetime | None) -> None:
    assert parse_date(text) == expected


def test_the_api_key_does_not_follow_a_redirect_to_another_host() -> None:
    with running_pyxis([image_record("amd64", "sha256:" + "7" * 64, [])]) as elsewhere:
        with running_pyxis() as redirecting:
            redirecting.redirect = elsewhere.url
            client = PyxisClient(PyxisSettings(url=redirecting.url, api_key="s3cret"))
            with pytest.raises(UpstreamError, match=r"redirected to http://127\.0\.0\.1:\d+; the"):
                client.grades("sha256:" + "7" * 64, Deadline(5))
            assert redirecting.requests[0][1].get("X-API-KEY") == "s3cret"
        assert elsewhere.requests == []  # neither the key nor the question went there


def test_the_api_key_stays_on_the_pyxis_host_through_its_own_redirects() -> None:
    with running_pyxis() as redirecting:
        redirecting.redirect = redirecting.url
        client = PyxisClient(PyxisSettings(url=redirecting.url, api_key="s3cret"))
        with pytest.raises(UpstreamError, match="redirected more than 3 times"):
            client.grades("sha256:" + "7" * 64, Deadline(5))
        assert len(redirecting.requests) == 4
        assert all(headers.get("X-API-KEY") == "s3cret" for _, headers in redirecting.requests)
