"""Report shapes (cosign vuln, Trivy, Grype), the grades file, and the freshness policy forms."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.cosign import generate_key, public_pem
from webhook.core.errors import ConfigError, PolicyError
from webhook.freshness.reports import UNDATED, ReportError, parse_report
from webhook.freshness.static import load_grades
from webhook.policy.loader import load_directory

TRIVY = {
    "SchemaVersion": 2,
    "CreatedAt": "2024-05-30T10:00:00.123456789Z",
    "Results": [
        {
            "Vulnerabilities": [
                {
                    "VulnerabilityID": "CVE-1",
                    "Severity": "CRITICAL",
                    "FixedVersion": "2",
                    "PublishedDate": "2024-05-01T00:00:00Z",
                },
                {"VulnerabilityID": "CVE-2", "Severity": "HIGH", "FixedVersion": "2"},
                {"VulnerabilityID": "CVE-3", "Severity": "HIGH", "FixedVersion": ""},
                {"VulnerabilityID": "CVE-4", "Severity": "MEDIUM", "FixedVersion": "2"},
            ]
        }
    ],
}


def test_trivy_counts_fixable_critical_and_high_only() -> None:
    report = parse_report(TRIVY)
    assert report.scanner == "trivy"
    assert report.scanned == datetime(2024, 5, 30, 10, 0, 0, 123456, tzinfo=UTC)
    assert [(f.id, f.severity, f.released) for f in report.fixes] == [
        ("CVE-1", "Critical", datetime(2024, 5, 1, tzinfo=UTC)),
        ("CVE-2", "Important", UNDATED),  # undated: counted as the oldest possible
    ]


def test_cosign_vuln_predicate_wraps_a_report_and_dates_the_scan() -> None:
    predicate = {
        "scanner": {"uri": "pkg:github/aquasecurity/trivy@0.50.0", "result": TRIVY},
        "metadata": {"scanFinishedOn": "2024-05-31T00:00:00Z"},
    }
    report = parse_report(predicate)
    assert report.scanner == "pkg:github/aquasecurity/trivy@0.50.0"
    assert report.scanned == datetime(2024, 5, 31, tzinfo=UTC)
    assert len(report.fixes) == 2


def test_grype_uses_the_fix_date_and_skips_unfixed() -> None:
    report = parse_report(
        {
            "matches": [
                {
                    "vulnerability": {
                        "id": "A",
                        "severity": "High",
                        "fix": {
                            "versions": ["1"],
                            "state": "fixed",
                            "available": [{"version": "1", "date": "2024-02-03"}],
                        },
                    }
                },
                {
                    "vulnerability": {
                        "id": "B",
                        "severity": "Critical",
                        "fix": {"versions": [], "state": "not-fixed"},
                    }
                },
                {
                    "vulnerability": {
                        "id": "C",
                        "severity": "Negligible",
                        "fix": {"versions": ["1"], "state": "fixed"},
                    }
                },
            ],
            "descriptor": {"timestamp": "2024-05-01T00:00:00Z"},
        }
    )
    assert [(f.id, f.severity, f.released) for f in report.fixes] == [
        ("A", "Important", datetime(2024, 2, 3, tzinfo=UTC))
    ]


def test_something_else_is_not_a_report() -> None:
    with pytest.raises(ReportError, match="not a vulnerability report"):
        parse_report({"builder": {"id": "ci"}})


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "grades: [{digest: 'sha256:ab', grade: G}]",
            r"grades\[0\]\.grade must be one of A, B, C, D, E, F \(got 'G'\)",
        ),
        ("grades: [{image: x/**}]", r"grades\[0\]: give exactly one of grade and fixes"),
        (
            "grades: [{digest: 'sha256:ab', image: x, grade: A}]",
            r"give exactly one of digest and image",
        ),
        (
            "grades: [{image: x, fixes: [{id: R, severity: Critical}]}]",
            r"fixes\[0\]\.released must be a date",
        ),
        (
            "grades: [{image: x, fixes: [{id: R, severity: Urgent, released: 2024-01-01}]}]",
            r"severity must be",
        ),
        ("nothing: here", "expected a mapping with a list under grades"),
    ],
)
def test_grades_file_mistakes_are_named(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "g.yaml").write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_grades(tmp_path / "g.yaml")


def test_grades_file_digest_wins_over_glob(tmp_path: Path) -> None:
    digest = "sha256:" + "1" * 64
    (tmp_path / "g.yaml").write_text(
        f"grades:\n  - image: quay.io/**\n    grade: F\n  - digest: '{digest}'\n    grade: A\n"
    )
    grades = load_grades(tmp_path / "g.yaml")
    assert grades.lookup("quay.io/acme/x", digest).match == digest  # type: ignore[union-attr]
    assert grades.lookup("quay.io/acme/x", "sha256:" + "2" * 64).match == "quay.io/**"  # type: ignore[union-attr]
    assert grades.lookup("docker.io/library/x", "sha256:" + "2" * 64) is None


HEAD = (
    "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: p}\n"
    "spec:\n  registries: ['**']\n"
)


def test_attestation_source_with_its_own_authorities(tmp_path: Path) -> None:
    (tmp_path / "k.pub").write_text(public_pem(generate_key()))
    (tmp_path / "p.yaml").write_text(
        HEAD
        + "  freshness:\n    minimumGrade: B\n    sources: [pyxis, {attestation: {authorities: "
        "[{name: scanner, key: {file: k.pub}}], predicateTypes: ['https://x.dev/trivy']}}]\n"
    )
    (policy,) = load_directory(tmp_path).policies
    assert policy.freshness is not None
    assert policy.freshness.sources == ("pyxis", "attestation")
    assert [a.name for a in policy.freshness.report_authorities] == ["scanner"]
    assert policy.freshness.report_types == ("https://x.dev/trivy",)


def test_plain_attestation_source_needs_authorities(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        HEAD + "  freshness: {minimumGrade: B, sources: [attestation]}\n"
    )
    with pytest.raises(
        PolicyError,
        match=r"field spec.freshness.sources\[0\]: the attestation source needs authorities",
    ):
        load_directory(tmp_path)


def test_plain_attestation_source_reuses_spec_attestations(tmp_path: Path) -> None:
    (tmp_path / "k.pub").write_text(public_pem(generate_key()))
    (tmp_path / "p.yaml").write_text(
        HEAD
        + "  attestations:\n    - predicateType: https://cosign.sigstore.dev/attestation/vuln/v1\n"
        "      authorities: [{name: scanner, key: {file: k.pub}}]\n"
        "  freshness: {minimumGrade: B, sources: [attestation]}\n"
    )
    (policy,) = load_directory(tmp_path).policies
    assert policy.freshness is not None and policy.freshness.report_authorities == ()


def test_unknown_source_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(HEAD + "  freshness: {minimumGrade: B, sources: [trivy]}\n")
    with pytest.raises(PolicyError, match="must be one of pyxis, attestation, static"):
        load_directory(tmp_path)
