"""The freshness check: sources in order, minimum grade, onUnknown, warnBeforeDays, caching."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.pyxis import Pyxis, grades, image_record, running_pyxis
from webhook.cache.local import Caches
from webhook.checks import Caution, CheckContext
from webhook.core.deadline import Deadline
from webhook.core.errors import CheckFailed, UpstreamError
from webhook.core.reference import parse_reference
from webhook.freshness.check import FreshnessCheck
from webhook.freshness.pyxis import PyxisSettings
from webhook.freshness.sources import FreshnessSettings, FreshnessSources
from webhook.policy.globs import Glob
from webhook.policy.model import Freshness, Match, OnUnknown, Policy
from webhook.registry.client import RegistryClient
from webhook.signatures.attestations import AttestationCheck

NOW = datetime(2024, 6, 1, tzinfo=UTC)
DAY = timedelta(days=1)
GOOD = "sha256:" + "a" * 64
STALE = "sha256:" + "d" * 64
DROPPING = "sha256:" + "c" * 64
DOWN = "sha256:" + "5" * 64
UNKNOWN = "sha256:" + "9" * 64
FILE_ONLY = "sha256:" + "f" * 64

GRADES_FILE = f"""\
grades:
  - digest: {FILE_ONLY}
    grade: B
  - image: quay.io/acme/**
    fixes:
      - {{id: RHSA-2024:0001, severity: Critical, released: "2024-05-01"}}
      - {{id: RHSA-2024:0002, severity: Moderate, released: "2020-01-01"}}
"""


@pytest.fixture(scope="module")
def pyxis() -> Iterator[Pyxis]:
    with running_pyxis() as double:
        double.add(
            image_record("amd64", GOOD, grades(("A", NOW - 30 * DAY, None))),
            image_record(
                "amd64",
                STALE,
                grades(("B", NOW - 90 * DAY, NOW - 20 * DAY), ("D", NOW - 20 * DAY, None)),
            ),
            image_record(
                "amd64",
                DROPPING,
                grades(("B", NOW - 3 * DAY, NOW + 4 * DAY), ("C", NOW + 4 * DAY, None)),
            ),
        )
        double.failures[DOWN] = "500"
        yield double


def checker(pyxis: Pyxis, tmp_path: Path) -> tuple[FreshnessCheck, Caches]:
    grades_file = tmp_path / "grades.yaml"
    grades_file.write_text(GRADES_FILE)
    settings = FreshnessSettings(pyxis=PyxisSettings(url=pyxis.url), static_file=grades_file)
    caches = Caches()
    attestations = AttestationCheck(RegistryClient({}), caches)
    return FreshnessCheck(
        FreshnessSources(settings), caches, attestations, clock=lambda: NOW
    ), caches


def policy(
    minimum: str = "B",
    sources: tuple[str, ...] = ("pyxis",),
    on_unknown: OnUnknown = "deny",
    warn_before_days: int | None = None,
) -> Policy:
    return Policy(
        name="production",
        mode="enforce",
        match=Match(),
        registries=(Glob("**"),),
        freshness=Freshness(minimum, sources, on_unknown, None, warn_before_days),  # type: ignore[arg-type]
    )


def run(
    check: FreshnessCheck,
    digest: str,
    rule: Policy,
    image: str = "registry.access.redhat.com/ubi9/ubi",
) -> str | Caution | None:
    ref = parse_reference(f"{image}@{digest}")
    return check.run(ref, rule, CheckContext(Deadline(5), lambda: digest, digest))


def test_good_grade_passes_with_a_note(pyxis: Pyxis, tmp_path: Path) -> None:
    check, _ = checker(pyxis, tmp_path)
    assert run(check, GOOD, policy()) == "freshness grade A (Pyxis, architecture amd64)"


def test_low_grade_is_denied_with_grade_source_and_date(pyxis: Pyxis, tmp_path: Path) -> None:
    check, _ = checker(pyxis, tmp_path)
    with pytest.raises(CheckFailed) as caught:
        run(check, STALE, policy())
    assert caught.value.message == (
        "freshness grade D is below the minimum B (Pyxis, architecture amd64) since 2024-05-12"
    )
    assert run(check, STALE, policy(minimum="D")) == "freshness grade D (Pyxis, architecture amd64)"


def test_note_says_when_the_grade_falls_below_the_minimum(pyxis: Pyxis, tmp_path: Path) -> None:
    check, _ = checker(pyxis, tmp_path)
    assert run(check, DROPPING, policy()) == (
        "freshness grade B (Pyxis, architecture amd64), falls to C on 2024-06-05"
    )


@pytest.mark.parametrize(("days", "warned"), [(3, False), (4, True), (30, True)])
def test_warn_before_days(pyxis: Pyxis, tmp_path: Path, days: int, warned: bool) -> None:
    check, _ = checker(pyxis, tmp_path)
    result = run(check, DROPPING, policy(warn_before_days=days))
    assert isinstance(result, Caution) is warned
    if isinstance(result, Caution):
        assert result.message == (
            "freshness grade B (Pyxis, architecture amd64), falls to C on 2024-06-05, "
            f"below the minimum B within {days} days (warnBeforeDays)"
        )


@pytest.mark.parametrize("on_unknown", ["deny", "warn", "allow"])
def test_unknown_grade_follows_on_unknown(
    pyxis: Pyxis, tmp_path: Path, on_unknown: OnUnknown
) -> None:
    check, _ = checker(pyxis, tmp_path)
    rule = policy(on_unknown=on_unknown)
    reason = f"freshness grade unknown (Pyxis: Pyxis at {pyxis.url} does not know {UNKNOWN})"
    if on_unknown == "deny":
        with pytest.raises(CheckFailed) as caught:
            run(check, UNKNOWN, rule)
        assert caught.value.message == f"{reason}; onUnknown is deny"
    elif on_unknown == "warn":
        assert run(check, UNKNOWN, rule) == Caution(f"{reason}; admitted by onUnknown: warn")
    else:
        assert run(check, UNKNOWN, rule) == f"{reason}; admitted by onUnknown: allow"


def test_pyxis_down_is_an_upstream_error_and_is_remembered(pyxis: Pyxis, tmp_path: Path) -> None:
    check, caches = checker(pyxis, tmp_path)
    with pytest.raises(
        UpstreamError, match=r"Pyxis: Pyxis at .* answered HTTP 500\); onUnknown is deny"
    ):
        run(check, DOWN, policy())
    asked = pyxis.asked(DOWN)
    with pytest.raises(UpstreamError):
        run(check, DOWN, policy())
    assert pyxis.asked(DOWN) == asked  # the failure is cached for cache.failureTTL
    caches.failures.clear()
    with pytest.raises(UpstreamError):
        run(check, DOWN, policy())
    assert pyxis.asked(DOWN) == asked + 1


def test_grades_are_cached_by_digest(pyxis: Pyxis, tmp_path: Path) -> None:
    check, _ = checker(pyxis, tmp_path)
    before = pyxis.asked(GOOD)
    for _ in range(3):
        run(check, GOOD, policy())
    assert pyxis.asked(GOOD) == before + 1


def test_first_source_that_knows_wins(pyxis: Pyxis, tmp_path: Path) -> None:
    check, _ = checker(pyxis, tmp_path)
    # Pyxis is down, the grades file knows the digest: the file answers.
    assert run(check, FILE_ONLY, policy(sources=("pyxis", "static"))) == (
        "freshness grade B (grades file, entry " + FILE_ONLY + ")"
    )
    # Pyxis knows GOOD, so the file is never read for it.
    assert run(check, GOOD, policy(sources=("pyxis", "static"))).startswith(
        "freshness grade A (Pyxis"
    )  # type: ignore[union-attr]


def test_static_fixes_are_graded_now(pyxis: Pyxis, tmp_path: Path) -> None:
    check, _ = checker(pyxis, tmp_path)
    # A Critical fix released 2024-05-01 is 31 days old on 2024-06-01: D. Moderate never counts.
    # It has been below B since it turned C (day 7), not only since it turned D (day 30).
    with pytest.raises(CheckFailed) as caught:
        run(check, UNKNOWN, policy(sources=("static",)), image="quay.io/acme/api")
    assert caught.value.message == (
        "freshness grade D is below the minimum B (grades file, entry quay.io/acme/**) since "
        "2024-05-08; unapplied fixes: RHSA-2024:0001 (Critical, released 2024-05-01)"
    )


def test_static_without_a_file_is_unknown(pyxis: Pyxis) -> None:
    caches = Caches()
    sources = FreshnessSources(FreshnessSettings(pyxis=PyxisSettings(url=pyxis.url)))
    check = FreshnessCheck(
        sources, caches, AttestationCheck(RegistryClient({}), caches), lambda: NOW
    )
    with pytest.raises(
        CheckFailed, match=r"grades file: no grades file is configured \(freshness.static.file\)"
    ):
        run(check, GOOD, policy(sources=("static",)))
