"""The decision log: one JSON line per review, saying what was decided and why.

Written by ``admission.review`` for every review; the line's fields are
documented in docs/webhook.md. The logger keeps the name it has always had,
``trustgate.admission``, which log pipelines filter on.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from webhook.admission.decision import AdmissionRequest, Decision
from webhook.admission.waivers import shown_reason
from webhook.core.observability import get_logger, log_fields
from webhook.engine import Verdict

__all__ = ["log_decision", "log_outcome", "object_name"]

log = get_logger("admission")

#: Most bytes the ``images`` entries of one decision-log line may take. Past it
#: the line keeps the denied images first, then the others in order, as many as
#: fit, and says how many it left out (``imagesOmitted``): a review of
#: thousands of images must not write a line of megabytes (each line is held in
#: memory until the log sink takes it).
MAX_IMAGES_BYTES = 64 * 1024


def _object_name(request: AdmissionRequest) -> str:
    if request.name:
        return request.name
    metadata = (request.object or {}).get("metadata")
    if isinstance(metadata, dict):
        name = metadata.get("name") or metadata.get("generateName") or ""
        return str(name)
    return ""


def object_name(request: AdmissionRequest) -> str:
    """The object's name (or generateName) for logs; the request's name when it has one."""
    return _object_name(request)


def _image_entry(verdict: Verdict, decision: Decision) -> dict[str, Any]:
    # One pass over the policy results (a result passed exactly when nothing
    # failed); this runs for every image of every review.
    passed: list[str] = []
    failed: list[dict[str, Any]] = []
    for r in verdict.policies:
        f = r.failure
        if f is None:
            passed.append(r.policy)
        else:
            failed.append(
                {
                    "policy": r.policy,
                    "mode": r.mode,
                    "check": f.check,
                    "outcome": f.outcome,
                    "reason": f.message,
                }
            )
    entry: dict[str, Any] = {
        "image": verdict.image,
        "containers": list(decision.containers.get(verdict.image, ())),
        "allowed": verdict.allowed,
        "passed": passed,
    }
    if verdict.digest is not None:
        entry["digest"] = verdict.digest  # for a reference pinned to it, what runs
    if verdict.login is not None:
        entry["login"] = verdict.login  # the source the registry accepted, never the secret
    volumes = decision.volumes.get(verdict.image)
    if volumes:
        entry["volumes"] = list(volumes)
    if failed:
        entry["failed"] = failed
    if verdict.no_match is not None:
        entry["noMatch"] = verdict.no_match
    if verdict.reference is None:
        entry["reasons"] = list(verdict.denials)
    if decision.waivers:
        waived = [
            {
                "policy": w.policy or None,
                "check": w.check,
                "by": w.by,
                "exception": w.exception or None,
            }
            for w in decision.waivers
            if w.image == verdict.image
        ]
        if waived:
            entry["waived"] = waived
    return entry


def _break_glass_entry(request: AdmissionRequest, decision: Decision) -> dict[str, Any] | None:
    """The decision log's record of a break-glass annotation: who, why, what it did."""
    if decision.break_glass is None:
        return None
    honoured = [w.image for w in decision.waivers if not w.exception]
    return {
        "reason": shown_reason(decision.break_glass),
        "user": request.user,
        "groups": list(request.groups),
        "honoured": bool(honoured) and decision.allowed,
        "images": list(dict.fromkeys(honoured)),
        "ignored": list(decision.ignored) or None,
    }


def log_decision(
    request: AdmissionRequest,
    decision: Decision,
    seconds: float,
    *,
    outcome: dict[str, Any] | None = None,
) -> None:
    """Write the decision-log line of one review.

    Per image: the containers and image volumes that use it, the policies it
    passed by name, and for each failure the policy, its mode, the check and
    the reason; the line is written on every review, so passing checks are not
    spelled out. An UPDATE admitted without a re-check lists its images under
    ``notRechecked`` and says why in ``note``. Images admitted through an
    exception or break-glass say so (``waived``); ``exceptions`` names the
    exceptions used, and ``breakGlass`` records the annotation's reason, the
    user and whether it was honoured. An ignored annotation is also logged
    as a warning of its own. ``outcome``: the line's fields from ``allowed``
    to ``breakGlass`` (:func:`log_outcome`), when kept with the decision.
    """
    if decision.ignored:
        log.warning(
            "break-glass annotation not honoured",
            extra={
                "fields": {
                    "uid": request.uid,
                    "user": request.user,
                    "namespace": request.namespace,
                    "name": _object_name(request),
                    "ignored": list(decision.ignored),
                }
            },
        )
    if not log.isEnabledFor(logging.INFO):
        return
    if outcome is None:
        outcome = log_outcome(request, decision)
    log_fields(
        log,
        logging.INFO,
        "admission review",
        {
            "uid": request.uid,
            "operation": request.operation,
            "kind": request.kind,
            "subResource": request.sub_resource,
            "namespace": request.namespace,
            "name": _object_name(request),
            "user": request.user,
            "dryRun": request.dry_run,
            **outcome,
            "durationMs": round(seconds * 1000, 3),
        },
    )


def log_outcome(request: AdmissionRequest, decision: Decision) -> dict[str, Any]:
    """The decision-log fields that follow from the decision (and, for break-glass, the user).

    They are the same for every request with the same inputs, so a kept
    decision keeps them too (see ``admission``).
    """
    exceptions = sorted({w.exception for w in decision.waivers if w.exception})
    images, omitted = _bounded([_image_entry(v, decision) for v in decision.verdicts])
    unchecked, unchecked_omitted = _bounded(list(decision.unchecked))
    outcome = {
        "allowed": decision.allowed,
        "decision": decision.label,
        "note": decision.note or None,
        "images": images,
        "notRechecked": unchecked or None,
        "exceptions": exceptions or None,
        "breakGlass": _break_glass_entry(request, decision),
    }
    # Only on a line that was cut: how many entries it left out.
    if omitted:
        outcome["imagesOmitted"] = omitted
    if unchecked_omitted:
        outcome["notRecheckedOmitted"] = unchecked_omitted
    return outcome


def _bounded(entries: list[Any], limit: int = MAX_IMAGES_BYTES) -> tuple[list[Any], int]:
    """``entries`` within ``limit`` bytes of JSON, and how many were left out.

    One encoding of the whole list decides (orjson, microseconds for a usual
    review); only a list past the limit is cut, keeping the entries of denied
    images first.
    """
    if len(orjson.dumps(entries, default=str)) <= limit:
        return entries, 0
    ranked = sorted(entries, key=lambda e: not isinstance(e, dict) or e.get("allowed", True))
    kept: list[Any] = []
    used = 2  # the brackets
    for entry in ranked:
        size = len(orjson.dumps(entry, default=str)) + 1
        if used + size > limit:
            break
        kept.append(entry)
        used += size
    return kept, len(entries) - len(kept)
