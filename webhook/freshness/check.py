"""``spec.freshness``: the image's Container Health Index grade must reach the minimum.

The policy's sources are tried in order and the first that knows the image
wins. A grade below ``minimumGrade`` denies, naming the grade, its source and
when it dropped; an unknown grade follows ``onUnknown`` (deny by default); a
grade due to fall below the minimum within ``warnBeforeDays`` admits with a
warning. Answers are cached by digest for ``cache.gradeTTL`` (under a day), a
failing source for ``cache.failureTTL``; the grade itself is computed from the
cached schedule at every review, so it drops on time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from webhook.cache.local import Caches, fingerprint
from webhook.checks import Caution, CheckContext
from webhook.core.deadline import Deadline
from webhook.core.errors import CheckFailed, TrustgateError, UpstreamError
from webhook.core.reference import ImageRef
from webhook.freshness.grades import (
    Window,
    at_least,
    deciding,
    drops_below,
    schedule,
    window_at,
)
from webhook.freshness.reports import REPORT_TYPES, ReportError, parse_report
from webhook.freshness.sources import LABELS, FreshnessSources, GradeReport, Unknown
from webhook.policy.model import Attestation, Freshness, Policy

Clock = Callable[[], datetime]
_SHOWN_FIXES = 3


class Attestations(Protocol):
    """What the attestation source needs of the attestation check (signatures/)."""

    def run(self, image: ImageRef, policy: Policy, context: CheckContext) -> str | None:
        """Verify ``policy``'s attestations; raise CheckFailed when too few verify."""
        ...

    def verified_predicates(
        self, image: ImageRef, digest: str, predicate_type: str, policy: Policy
    ) -> list[dict[str, Any]]:
        """The predicates of ``predicate_type`` that ``policy``'s authorities attested."""
        ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


def day(moment: datetime | None) -> str:
    """A moment as a date for messages (YYYY-MM-DD, UTC)."""
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d")


class FreshnessCheck:
    """Grades from Pyxis, signed vulnerability reports or a grades file, against the minimum."""

    name = "freshness"
    pure = False

    def __init__(
        self,
        sources: FreshnessSources,
        caches: Caches,
        attestations: Attestations,
        clock: Clock = _utc_now,
    ) -> None:
        self._sources = sources
        self._caches = caches
        self._attestations = attestations
        self._clock = clock

    def run(self, image: ImageRef, policy: Policy, context: CheckContext) -> str | Caution | None:
        """Return a note with the grade, or a Caution; raise when the grade is too low.

        Raises:
            CheckFailed: the grade is below the minimum, or unknown under
                ``onUnknown: deny`` because no source knows the image.
            UpstreamError: the grade is unknown under ``onUnknown: deny`` and a
                source failed (Pyxis down, a registry timeout).
        """
        freshness = policy.freshness
        if freshness is None:
            return None
        now = self._clock()
        found, unknowns = self.grade(image, policy, context)
        if found is None:
            return self._unknown(freshness, unknowns)
        if window_at(found.windows, now) is not None:
            context.vouch()  # a known grade of this digest; the engine ignores it on a denial
        return self._judge(freshness, found, now)

    def grade(
        self, image: ImageRef, policy: Policy, context: CheckContext
    ) -> tuple[GradeReport | None, list[Unknown]]:
        """The first source's report that knows the image, and why earlier ones did not.

        Never raises for a source's failure: it becomes an Unknown with
        ``failed`` set. Resolving the digest may raise an UpstreamError.
        """
        freshness = policy.freshness
        unknowns: list[Unknown] = []
        if freshness is None:
            return None, unknowns
        digest = context.resolve()
        now = self._clock()
        for source in freshness.sources:
            answer = self._lookup(source, image, digest, policy, context, now)
            if isinstance(answer, GradeReport):
                return answer, unknowns
            unknowns.append(answer)
        return None, unknowns

    def _lookup(
        self,
        source: str,
        image: ImageRef,
        digest: str,
        policy: Policy,
        context: CheckContext,
        now: datetime,
    ) -> GradeReport | Unknown:
        freshness = policy.freshness
        assert freshness is not None
        key: tuple[str, ...] = ("grade", source, digest)
        if source == "attestation":
            key += (image.repository, _reports_basis(policy, freshness))
        elif source == "static":
            key += (image.repository,)
        failed = self._caches.failures.get(key)
        if isinstance(failed, Unknown):
            return failed

        def ask(limit: Deadline) -> GradeReport | Unknown:
            # ``limit`` is this review's deadline (context.deadline).
            return self._ask(source, image, digest, policy, context)

        # Concurrent reviews of one image ask each source once (single flight).
        try:
            answer = self._caches.grades.get_or_compute(key, ask, context.deadline)
        except TrustgateError as exc:
            unknown = Unknown(source, exc.message, failed=True)
            self._caches.failures.put(key, unknown)
            return unknown
        if not isinstance(answer, GradeReport | Unknown):
            return Unknown(source, "the cached answer is not a grade")
        if isinstance(answer, GradeReport) and source == "attestation":
            return _recent_enough(answer, freshness, now)
        return answer

    def _ask(
        self, source: str, image: ImageRef, digest: str, policy: Policy, context: CheckContext
    ) -> GradeReport | Unknown:
        if source == "pyxis":
            return self._sources.from_pyxis(digest, context.deadline)
        if source == "static":
            return self._sources.from_static(image.repository, digest)
        if source == "attestation":
            return self._from_reports(image, digest, policy, context)
        return Unknown(source, f"unknown grade source {source!r}")

    def _from_reports(
        self, image: ImageRef, digest: str, policy: Policy, context: CheckContext
    ) -> GradeReport | Unknown:
        """The newest verified vulnerability report, graded."""
        predicates, why = self._reports(image, digest, policy, context)
        if not predicates:
            return Unknown("attestation", why)
        reports = []
        problems = []
        for predicate in predicates:
            try:
                reports.append(parse_report(predicate))
            except ReportError as exc:
                problems.append(str(exc))
        if not reports:
            return Unknown("attestation", "; ".join(sorted(set(problems))))
        oldest = datetime.min.replace(tzinfo=UTC)
        report = max(reports, key=lambda r: r.scanned or oldest)
        detail = f"{report.scanner} report scanned {day(report.scanned)}"
        return GradeReport(
            "attestation", schedule(report.fixes), report.fixes, detail, report.scanned
        )

    def _reports(
        self, image: ImageRef, digest: str, policy: Policy, context: CheckContext
    ) -> tuple[list[dict[str, Any]], str]:
        """Verified report predicates, from the source's own authorities or spec.attestations."""
        freshness = policy.freshness
        assert freshness is not None
        types = freshness.report_types or REPORT_TYPES
        found: list[dict[str, Any]] = []
        reasons: list[str] = []
        for predicate_type in types:
            if freshness.report_authorities:
                requirement = Attestation(predicate_type, freshness.report_authorities)
                scoped = replace(policy, attestations=(requirement,))
                try:
                    self._attestations.run(image, scoped, context)
                except CheckFailed as exc:
                    reasons.append(exc.message)
                    continue
                found.extend(
                    self._attestations.verified_predicates(image, digest, predicate_type, scoped)
                )
            else:
                found.extend(
                    self._attestations.verified_predicates(image, digest, predicate_type, policy)
                )
        if found:
            return found, ""
        if reasons:
            return [], "no trusted vulnerability report: " + "; ".join(reasons)
        return [], (
            "no vulnerability report verified by spec.attestations "
            f"(predicate types {', '.join(types)})"
        )

    def _unknown(self, freshness: Freshness, unknowns: list[Unknown]) -> str | Caution:
        why = "; ".join(f"{LABELS.get(u.source, u.source)}: {u.reason}" for u in unknowns)
        text = f"freshness grade unknown ({why})"
        if freshness.on_unknown == "allow":
            return f"{text}; admitted by onUnknown: allow"
        if freshness.on_unknown == "warn":
            return Caution(f"{text}; admitted by onUnknown: warn")
        message = f"{text}; onUnknown is deny"
        if any(u.failed for u in unknowns):
            raise UpstreamError(message, check=self.name)
        raise CheckFailed(message, check=self.name)

    def _judge(self, freshness: Freshness, found: GradeReport, now: datetime) -> str | Caution:
        minimum = freshness.minimum_grade
        current = window_at(found.windows, now)
        if current is None:
            return self._unknown(
                freshness,
                [Unknown(found.source, f"its published grades do not cover {day(now)}")],
            )
        grade = current.grade
        source = f"{found.label}, {found.detail}" if found.detail else found.label
        if not at_least(grade, minimum):
            # Since it fell below the minimum, which may be before the current grade began.
            fell = drops_below(found.windows, minimum, now)
            start = fell.start if fell is not None else current.start
            since = f" since {day(start)}" if start is not None else ""
            raise CheckFailed(
                f"freshness grade {grade} is below the minimum {minimum} ({source}){since}"
                + _fixes(found, now),
                check=self.name,
            )
        note = f"freshness grade {grade} ({source})"
        drop = drops_below(found.windows, minimum, now)
        if drop is not None and drop.start is not None:
            note += f", falls to {drop.grade} on {day(drop.start)}"
            warn = freshness.warn_before_days
            if warn is not None and drop.start - now <= timedelta(days=warn):
                return Caution(
                    f"{note}, below the minimum {minimum} within {warn} days (warnBeforeDays)"
                    + _fixes(found, drop.start)
                )
        return note


def _fixes(found: GradeReport, at: datetime) -> str:
    chosen = deciding(found.fixes, at)
    if not chosen:
        return ""
    shown = ", ".join(f"{f.id} ({f.severity}, released {day(f.released)})" for f in chosen[:3])
    more = f" and {len(chosen) - _SHOWN_FIXES} more" if len(chosen) > _SHOWN_FIXES else ""
    return f"; unapplied fixes: {shown}{more}"


def _recent_enough(
    found: GradeReport, freshness: Freshness, now: datetime
) -> GradeReport | Unknown:
    limit = freshness.max_report_age_days
    if limit is None:
        return found
    if found.scanned is None:
        return Unknown("attestation", f"the report has no scan time and maxReportAge is {limit}d")
    if now - found.scanned > timedelta(days=limit):
        return Unknown(
            "attestation",
            f"the newest report was scanned {day(found.scanned)}, more than {limit} days ago "
            "(maxReportAge)",
        )
    return found


def _reports_basis(policy: Policy, freshness: Freshness) -> str:
    """What a report answer depends on: the authorities (own or spec.attestations) and types."""
    trusted = (freshness.report_authorities, freshness.report_types)
    basis = (
        trusted if freshness.report_authorities else (policy.attestations, freshness.report_types)
    )
    return fingerprint(basis)


def windows_text(windows: tuple[Window, ...]) -> list[dict[str, str | None]]:
    """A schedule as JSON-ready dicts in Pyxis's shape: grade, start_date, end_date."""
    return [
        {
            "grade": w.grade,
            "start_date": None if w.start is None else w.start.isoformat(),
            "end_date": None if w.end is None else w.end.isoformat(),
        }
        for w in windows
    ]
