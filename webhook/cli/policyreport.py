"""Audit results as policy reports, the objects Policy Reporter and other UIs show.

Two API groups carry the same shape: ``openreports.io/v1alpha1`` (``Report`` and
``ClusterReport``; where Kyverno moved its reports) and, as an option,
``wgpolicyk8s.io/v1alpha2`` (``PolicyReport`` and ``ClusterPolicyReport``).

One report per workload, named after it and scoped to it (``scope``), as Kyverno
lays reports out: each stays small however large a namespace grows, and a report
whose workload is gone is found by name. Each result is one policy's outcome for
one image of the workload:

- ``pass``: every check passed; ``warn``: an audit-mode policy would deny, or a
  check passed with a caution; ``fail``: an enforce-mode policy denies;
  ``error``: a check could not run (a registry down, a deadline); ``skip``: no
  policy matched and ``defaults.noMatch`` is ``allow``.
- ``policy`` is the ImagePolicy's name (``defaults.noMatch`` when none matched),
  ``rule`` the check, ``properties`` the image, its digest and containers.

Documents that could not be read (file audits only) go into one cluster-scoped
report. Everything here is pure: ``now`` is a parameter.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from webhook.cli.audit import Row
from webhook.engine import PolicyResult

__all__ = ["GROUPS", "MANAGED_BY", "Group", "ReportGroup", "reports"]

Group = Literal["openreports", "wgpolicyk8s"]
Result = Literal["pass", "fail", "warn", "error", "skip"]

#: The label every report trustgate writes carries; stale ones are found by it.
MANAGED_BY = {"app.kubernetes.io/managed-by": "trustgate"}
SOURCE = "trustgate"
CATEGORY = "Image verification"
NO_MATCH_POLICY = "defaults.noMatch"
#: Kubernetes object names: DNS subdomains of at most 253 characters.
_MAX_NAME = 253
_NAME_CHARS = re.compile(r"[^a-z0-9.-]+")
#: The API version of the workload kinds the audit judges, for ``scope``.
_API_VERSIONS = {
    "Pod": "v1",
    "ReplicationController": "v1",
    "PodTemplate": "v1",
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "ReplicaSet": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
}


@dataclass(frozen=True, slots=True)
class ReportGroup:
    """One API group's names for the namespaced and cluster-scoped report."""

    api_version: str
    kind: str
    cluster_kind: str
    plural: str
    cluster_plural: str


GROUPS: dict[Group, ReportGroup] = {
    "openreports": ReportGroup(
        "openreports.io/v1alpha1", "Report", "ClusterReport", "reports", "clusterreports"
    ),
    "wgpolicyk8s": ReportGroup(
        "wgpolicyk8s.io/v1alpha2",
        "PolicyReport",
        "ClusterPolicyReport",
        "policyreports",
        "clusterpolicyreports",
    ),
}


def _name(kind: str, name: str) -> str:
    """``trustgate-<kind>-<name>``, a valid object name, distinct per workload."""
    readable = _NAME_CHARS.sub("-", f"trustgate-{kind}-{name}".lower()).strip("-.")
    if len(readable) <= _MAX_NAME and readable == f"trustgate-{kind}-{name}".lower():
        return readable
    # Lowercasing or cutting could make two workloads' names meet: add a hash of both.
    digest = hashlib.sha256(f"{kind}/{name}".encode()).hexdigest()[:10]
    return f"{readable[: _MAX_NAME - 11].rstrip('-.')}-{digest}"


def _properties(row: Row) -> dict[str, str]:
    found = {
        "image": row.image,
        "digest": row.digest or "",
        "containers": ",".join(row.containers),
        "volumes": ",".join(row.volumes),
    }
    return {key: value for key, value in found.items() if value}


def _policy_result(policy: PolicyResult, row: Row) -> tuple[Result, str, str]:
    """(result, rule, message) of one policy for one image."""
    failure = policy.failure
    if failure is not None:
        outcome: Result = "error" if failure.outcome == "error" else "fail"
        if outcome == "fail" and policy.mode != "enforce":
            outcome = "warn"
        suffix = "" if policy.mode == "enforce" else " (audit mode)"
        return outcome, failure.check, f"image {row.image}{suffix}: {failure.message}"
    cautions = policy.cautions
    if cautions:
        return "warn", cautions[0].check, "; ".join(c.message for c in cautions)
    notes = [r.message for r in policy.results if r.message]
    checks = ", ".join(r.check for r in policy.results) or "match"
    return "pass", checks, "; ".join(notes) or f"image {row.image} passed every check"


def _results(row: Row, timestamp: dict[str, int]) -> Iterator[dict[str, Any]]:
    common: dict[str, Any] = {"source": SOURCE, "category": CATEGORY, "timestamp": timestamp}
    if row.decision == "error":
        yield {
            **common,
            "policy": SOURCE,
            "rule": "read",
            "result": "error",
            "message": "; ".join(row.reasons),
            "properties": {"source": row.source},
        }
        return
    if not row.policies:
        # No policy matched the image (or the object was refused before any did).
        outcome: Result = (
            "fail" if row.decision == "denied" else "warn" if row.decision == "warned" else "skip"
        )
        yield {
            **common,
            "policy": NO_MATCH_POLICY if row.no_match else SOURCE,
            "rule": "match",
            "result": outcome,
            "message": "; ".join(row.reasons) or f"image {row.image}: no policy governs it",
            "properties": _properties(row),
            **({"severity": "high"} if outcome == "fail" else {}),
        }
        return
    for policy in row.policies:
        outcome, rule, message = _policy_result(policy, row)
        yield {
            **common,
            "policy": policy.policy,
            "rule": rule,
            "result": outcome,
            "message": message,
            "properties": {**_properties(row), "mode": policy.mode},
            **({"severity": "high"} if outcome == "fail" else {}),
        }


def _summary(results: Sequence[dict[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(("pass", "fail", "warn", "error", "skip"), 0)
    for result in results:
        counts[result["result"]] += 1
    return counts


def reports(
    rows: Iterable[Row], *, group: Group = "openreports", now: datetime.datetime
) -> list[dict[str, Any]]:
    """One report per judged workload (and one for unreadable documents), in ``group``.

    Reports come in the order their workloads first appear in ``rows``.
    """
    names = GROUPS[group]
    timestamp = {"seconds": int(now.timestamp()), "nanos": 0}
    grouped: dict[tuple[str, str, str], list[Row]] = {}
    for row in rows:
        grouped.setdefault((row.namespace, row.kind, row.name), []).append(row)
    out = []
    for (namespace, kind, name), members in grouped.items():
        results = [r for row in members for r in _results(row, timestamp)]
        metadata: dict[str, Any] = {"labels": dict(MANAGED_BY)}
        report: dict[str, Any] = {"apiVersion": names.api_version}
        if namespace:
            report["kind"] = names.kind
            metadata["name"] = _name(kind, name)
            metadata["namespace"] = namespace
            scope = {"kind": kind, "name": name, "namespace": namespace}
            if kind in _API_VERSIONS:
                scope["apiVersion"] = _API_VERSIONS[kind]
            report["scope"] = scope
        else:
            report["kind"] = names.cluster_kind
            metadata["name"] = (
                "trustgate-unreadable-documents" if kind == "-" else _name(kind, name)
            )
        report["metadata"] = metadata
        if group == "openreports":
            report["source"] = SOURCE
        report["summary"] = _summary(results)
        report["results"] = results
        out.append(report)
    return out
