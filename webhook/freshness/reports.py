"""Vulnerability reports (cosign's vuln predicate, Trivy JSON, Grype JSON) -> fixes.

A report counts a vulnerability as an unapplied fix when a fixed version
exists and its severity is Critical or Important (scanners say CRITICAL and
HIGH). The fix is aged from its publication date in the report: Grype's
``fix.available[].date`` when present, else the vulnerability's publication
date (Trivy's ``PublishedDate``). A counted fix without any date is taken as
released at the report's epoch start, the oldest possible: an undated fix must
not make an image look fresher than it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from webhook.freshness.grades import Fix, Severity, parse_date

#: cosign attest --type vuln
COSIGN_VULN = "https://cosign.sigstore.dev/attestation/vuln/v1"
#: The predicate types the attestation source reads by default.
REPORT_TYPES = (COSIGN_VULN,)
#: When an undated fix is counted from: the oldest possible moment.
UNDATED = datetime(1970, 1, 1, tzinfo=UTC)
#: Reports listing more findings than this are refused rather than read.
MAX_FINDINGS = 100_000

_SEVERITIES: dict[str, Severity] = {
    "critical": "Critical",
    "important": "Important",
    "high": "Important",
    "moderate": "Moderate",
    "medium": "Moderate",
    "low": "Low",
    "negligible": "Low",
    "unknown": "Low",
}


class ReportError(ValueError):
    """The predicate is not a vulnerability report this module can read."""


@dataclass(frozen=True, slots=True)
class Report:
    """What a report says: its scanner, when it scanned, and the unapplied fixes."""

    scanner: str
    scanned: datetime | None
    fixes: tuple[Fix, ...]


def severity(text: Any) -> Severity | None:
    """Red Hat's severity for a scanner's label (HIGH is Important); None if unknown."""
    if not isinstance(text, str):
        return None
    return _SEVERITIES.get(text.strip().lower())


def parse_report(predicate: Mapping[str, Any]) -> Report:
    """The fixes and scan time of a report, whatever its shape.

    Raises:
        ReportError: the predicate is none of cosign vuln, Trivy or Grype JSON, or
            is nested too deeply to read (a signed report is still untrusted input).
    """
    try:
        return _report(predicate)
    except RecursionError:
        raise ReportError("the report is nested too deeply to read") from None


def _report(predicate: Mapping[str, Any]) -> Report:
    scanner = predicate.get("scanner")
    if isinstance(scanner, Mapping) and "result" in scanner:
        inner = scanner.get("result")
        if not isinstance(inner, Mapping):
            raise ReportError("the cosign vuln predicate's scanner.result is not an object")
        report = _report(inner)
        metadata = predicate.get("metadata")
        scanned = None
        if isinstance(metadata, Mapping):
            scanned = parse_date(metadata.get("scanFinishedOn")) or parse_date(
                metadata.get("scanStartedOn")
            )
        name = scanner.get("uri") or report.scanner
        return Report(str(name), scanned or report.scanned, report.fixes)
    if "Results" in predicate or "SchemaVersion" in predicate:
        return _trivy(predicate)
    if "matches" in predicate:
        return _grype(predicate)
    raise ReportError(
        "the predicate is not a vulnerability report (expected cosign's vuln predicate, "
        "Trivy JSON with Results, or Grype JSON with matches)"
    )


def _trivy(report: Mapping[str, Any]) -> Report:
    results = report.get("Results") or []
    if not isinstance(results, list):
        raise ReportError("Trivy report: Results is not a list")
    fixes: list[Fix] = []
    for result in results:
        vulns = result.get("Vulnerabilities") if isinstance(result, Mapping) else None
        for vuln in vulns if isinstance(vulns, list) else []:
            if not isinstance(vuln, Mapping) or not vuln.get("FixedVersion"):
                continue
            level = severity(vuln.get("Severity"))
            if level not in ("Critical", "Important"):
                continue
            released = parse_date(vuln.get("PublishedDate")) or UNDATED
            fixes.append(
                Fix(
                    str(vuln.get("VulnerabilityID", "?")),
                    level,
                    released,
                    str(vuln.get("PkgName", "")),
                )
            )
            _bounded(fixes)
    return Report("trivy", parse_date(report.get("CreatedAt")), tuple(fixes))


def _grype(report: Mapping[str, Any]) -> Report:
    matches = report.get("matches")
    if not isinstance(matches, list):
        raise ReportError("Grype report: matches is not a list")
    fixes: list[Fix] = []
    for match in matches:
        vuln = match.get("vulnerability") if isinstance(match, Mapping) else None
        if not isinstance(vuln, Mapping):
            continue
        fix = vuln.get("fix")
        if (
            not isinstance(fix, Mapping)
            or not fix.get("versions")
            or fix.get("state") == "not-fixed"
        ):
            continue
        level = severity(vuln.get("severity"))
        if level not in ("Critical", "Important"):
            continue
        artifact = match.get("artifact")
        package = str(artifact.get("name", "")) if isinstance(artifact, Mapping) else ""
        fixes.append(Fix(str(vuln.get("id", "?")), level, _grype_date(fix, vuln), package))
        _bounded(fixes)
    descriptor = report.get("descriptor")
    scanned = parse_date(descriptor.get("timestamp")) if isinstance(descriptor, Mapping) else None
    return Report("grype", scanned, tuple(fixes))


def _grype_date(fix: Mapping[str, Any], vuln: Mapping[str, Any]) -> datetime:
    available = fix.get("available")
    dates = [
        moment
        for entry in (available if isinstance(available, list) else [])
        if isinstance(entry, Mapping) and (moment := parse_date(entry.get("date"))) is not None
    ]
    if dates:
        return min(dates)
    return parse_date(vuln.get("published")) or UNDATED


def _bounded(fixes: list[Fix]) -> None:
    if len(fixes) > MAX_FINDINGS:
        raise ReportError(f"the report lists more than {MAX_FINDINGS} fixable findings")
