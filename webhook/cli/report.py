"""Audit and check results as a table, JSON, JUnit XML or policy reports.

Rows whose image an image volume mounts name the volume (a ``VOLUME`` column
in the table, ``volumes`` in JSON, the test name in JUnit); ``error`` rows,
documents that could not be read, count apart from images.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from dataclasses import asdict
from xml.etree import ElementTree as ET

import yaml

from webhook.cli.audit import Row
from webhook.cli.policyreport import Group, reports
from webhook.core.counts import counted

FORMATS = ("table", "json", "junit", "policyreport")


_SHORT_DIGEST = len("sha256:") + 12
_LABELS = ("allowed", "warned", "waived", "denied", "error")


def _table(rows: Sequence[Row]) -> str:
    if not rows:
        return "no workload images found\n"
    digests = any(r.digest for r in rows)
    volumes = any(r.volumes for r in rows)
    header = [
        "RESOURCE",
        "NAMESPACE",
        "IMAGE",
        *(["VOLUME"] if volumes else []),
        *(["DIGEST"] if digests else []),
        "DECISION",
    ]
    lines = []
    for r in rows:
        cells = [r.resource, r.namespace or "-", r.image]
        if volumes:
            cells.append(",".join(r.volumes) or "-")
        if digests:
            cells.append(r.digest[:_SHORT_DIGEST] if r.digest else "-")
        cells.append(r.decision.upper())
        lines.append((cells, "; ".join(r.waivers + r.reasons + r.notes) or "-"))
    widths = [max(len(c[i]) for c in [header] + [cells for cells, _ in lines])
              for i in range(len(header))]  # fmt: skip
    out = []
    for cells, reason in [(header, "REASON"), *lines]:
        out.append("  ".join([*(c.ljust(w) for c, w in zip(cells, widths, strict=True)), reason]))
    counts = {d: sum(1 for r in rows if r.decision == d) for d in _LABELS}
    out.append("")
    summary = (
        f"{counted(len(rows) - counts['error'], 'image')}: {counts['allowed']} allowed, "
        f"{counts['warned']} warned, {counts['denied']} denied"
    )
    if counts["waived"]:
        summary += f"; {counts['waived']} run only thanks to an exception or break-glass"
    if counts["error"]:
        summary += f"; {counted(counts['error'], 'unreadable document')}"
    out.append(summary)
    return "\n".join(out) + "\n"


def _json(rows: Sequence[Row]) -> str:
    items = []
    for row in rows:
        item = asdict(row)
        item["reasons"] = list(row.reasons)
        item["notes"] = list(row.notes)
        item["containers"] = list(row.containers)
        item["volumes"] = list(row.volumes)
        item["waivers"] = list(row.waivers)
        # Per-policy detail belongs to policy reports; the JSON rows stay as they were.
        del item["policies"], item["no_match"]
        items.append(item)
    return json.dumps(items, indent=2) + "\n"


def _junit(rows: Sequence[Row]) -> str:
    suite = ET.Element(
        "testsuite",
        name="trustgate",
        tests=str(len(rows)),
        failures=str(sum(1 for r in rows if r.decision == "denied")),
        errors=str(sum(1 for r in rows if r.decision == "error")),
        skipped="0",
    )
    for row in rows:
        name = f"{row.resource} {row.image}"
        if row.volumes:
            name += f" (image volume {','.join(row.volumes)})"
        case = ET.SubElement(
            suite, "testcase", classname=f"{row.source}:{row.namespace or '-'}", name=name
        )
        if row.decision in ("denied", "error"):
            tag = "failure" if row.decision == "denied" else "error"
            failure = ET.SubElement(case, tag, message=row.reasons[0] if row.reasons else "")
            failure.text = "\n".join(row.reasons)
        elif row.reasons or row.notes or row.waivers:
            lines = row.waivers + row.reasons + row.notes
            ET.SubElement(case, "system-out").text = "\n".join(lines)
    ET.indent(suite)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
    )


def _policyreport(rows: Sequence[Row], group: Group, now: datetime.datetime | None) -> str:
    objects = reports(rows, group=group, now=now or datetime.datetime.now(datetime.UTC))
    # YAML documents, as `kubectl apply -f -` reads them.
    return yaml.safe_dump_all(objects, sort_keys=False) if objects else ""


def render(
    rows: Sequence[Row],
    fmt: str,
    *,
    group: Group = "openreports",
    now: datetime.datetime | None = None,
) -> str:
    """``rows`` in format ``fmt`` (one of FORMATS).

    ``group`` and ``now`` apply to ``policyreport``: the reports' API group and time.
    """
    if fmt == "policyreport":
        return _policyreport(rows, group, now)
    if fmt == "json":
        return _json(rows)
    if fmt == "junit":
        return _junit(rows)
    return _table(rows)
