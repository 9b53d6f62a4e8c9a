"""AdmissionReview v1 in, AdmissionResponse out.

The request is validated once, here, into a frozen ``AdmissionRequest``; the
decision combines the engine's verdicts into what Kubernetes expects: a denial
with one line per denied image, or an admission with warnings and audit
annotations for what audit policies would have denied.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook.engine import Engine, Verdict, display
from webhook.errors import AdmissionReviewError, TrustgateError
from webhook.observability import get_logger
from webhook.workloads import find_images, is_understood

API_VERSION = "admission.k8s.io/v1"
_OPERATIONS = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})
_JUDGED = frozenset({"CREATE", "UPDATE"})
#: The API server truncates longer warnings and drops them past 4 KiB in all.
_MAX_WARNING = 256
_MAX_WARNINGS = 12
_MAX_MESSAGE = 4000

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    """The parts of an AdmissionReview request a decision depends on."""

    uid: str
    kind: str
    operation: str
    namespace: str = ""
    name: str = ""
    group: str = ""
    sub_resource: str = ""
    user: str = ""
    dry_run: bool = False
    object: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one request, with what it was based on."""

    allowed: bool
    message: str = ""
    warnings: tuple[str, ...] = ()
    audit_annotations: Mapping[str, str] = field(default_factory=dict)
    verdicts: tuple[Verdict, ...] = ()
    containers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    note: str = ""

    @property
    def label(self) -> str:
        """allowed, warned or denied: the decision metric's label."""
        if not self.allowed:
            return "denied"
        return "warned" if self.warnings else "allowed"


def _field(data: Mapping[str, Any], key: str, kind: type, where: str, required: bool = True) -> Any:
    value = data.get(key)
    if value is None:
        if required:
            raise AdmissionReviewError(f"{where}.{key} is required")
        return None
    if not isinstance(value, kind):
        raise AdmissionReviewError(f"{where}.{key} must be a {kind.__name__}")
    return value


def parse_review(body: Any) -> AdmissionRequest:
    """Validate a decoded AdmissionReview and extract its request.

    Raises:
        AdmissionReviewError: the body is not an admission.k8s.io/v1 AdmissionReview
            with a request trustgate can answer; the message names the field.
    """
    if not isinstance(body, dict):
        raise AdmissionReviewError("the body must be a JSON object (an AdmissionReview)")
    if body.get("apiVersion") != API_VERSION or body.get("kind") != "AdmissionReview":
        raise AdmissionReviewError(
            f"expected apiVersion {API_VERSION} and kind AdmissionReview "
            "(set admissionReviewVersions: [v1] in the webhook configuration)"
        )
    request = _field(body, "request", dict, "AdmissionReview")
    uid = _field(request, "uid", str, "request")
    if not uid:
        raise AdmissionReviewError("request.uid must not be empty")
    gvk = _field(request, "kind", dict, "request")
    kind = _field(gvk, "kind", str, "request.kind")
    operation = _field(request, "operation", str, "request")
    if operation not in _OPERATIONS:
        raise AdmissionReviewError(f"request.operation must be one of {sorted(_OPERATIONS)}")
    obj = _field(request, "object", dict, "request", required=operation in _JUDGED)
    user_info = _field(request, "userInfo", dict, "request", required=False) or {}
    dry_run = request.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise AdmissionReviewError("request.dryRun must be a boolean")
    return AdmissionRequest(
        uid=uid,
        kind=kind,
        operation=operation,
        namespace=_field(request, "namespace", str, "request", required=False) or "",
        name=_field(request, "name", str, "request", required=False) or "",
        group=_field(gvk, "group", str, "request.kind", required=False) or "",
        sub_resource=_field(request, "subResource", str, "request", required=False) or "",
        user=str(user_info.get("username", "")),
        dry_run=dry_run,
        object=obj,
    )


def _object_name(request: AdmissionRequest) -> str:
    if request.name:
        return request.name
    metadata = (request.object or {}).get("metadata")
    if isinstance(metadata, dict):
        name = metadata.get("name") or metadata.get("generateName") or ""
        return str(name)
    return ""


def decide(engine: Engine, request: AdmissionRequest) -> Decision:
    """Judge every image of the request's object (the new object on UPDATE)."""
    if request.operation not in _JUDGED or request.object is None:
        return Decision(allowed=True, note=f"{request.operation} is not judged")
    try:
        found = find_images(request.object)
    except TrustgateError as exc:
        return Decision(allowed=False, message=f"the {request.kind} cannot be judged: {exc}")
    if not found:
        note = "no pod spec found"
        if not is_understood(request.kind):
            note = f"kind {request.kind} is not one trustgate knows and has no pod spec"
        return Decision(allowed=True, note=note)
    containers: dict[str, list[str]] = {}
    for item in found:
        containers.setdefault(item.image, []).append(item.container)
    namespace = request.namespace or _namespace_of(request.object)
    verdicts = engine.evaluate(containers, namespace=namespace, kind=request.kind)
    denials = [line for v in verdicts for line in v.denials]
    warnings = [line for v in verdicts for line in v.warnings]
    return Decision(
        allowed=not denials,
        message=_bounded("\n".join(denials), _MAX_MESSAGE),
        warnings=tuple(warnings),
        audit_annotations=_annotations(verdicts),
        verdicts=verdicts,
        containers={display(k): tuple(v) for k, v in containers.items()},
    )


def _namespace_of(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("namespace"), str):
        return str(metadata["namespace"])
    return ""


def _annotations(verdicts: tuple[Verdict, ...]) -> dict[str, str]:
    """Audit annotations; the API server prefixes each key with the webhook's name.

    Keys are therefore plain names: a key with its own ``prefix/`` would become
    an invalid qualified name once prefixed and be dropped by the API server.
    """
    violations = [
        {"image": v.image, "policy": r.policy, "check": f.check, "message": f.message}
        for v in verdicts
        for r in v.policies
        if r.mode == "audit" and (f := r.failure) is not None
    ]
    unmatched = [v.image for v in verdicts if v.no_match == "warn"]
    annotations = {}
    if violations:
        annotations["audit-violations"] = json.dumps(violations, separators=(",", ":"))
    if unmatched:
        annotations["no-policy"] = ",".join(unmatched)
    return annotations


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def response(uid: str, decision: Decision) -> dict[str, Any]:
    """The AdmissionReview that answers request ``uid``."""
    answer: dict[str, Any] = {"uid": uid, "allowed": decision.allowed}
    if not decision.allowed:
        answer["status"] = {"code": 403, "reason": "Forbidden", "message": decision.message}
    if decision.warnings:
        shown = [_bounded(w, _MAX_WARNING) for w in decision.warnings[:_MAX_WARNINGS]]
        hidden = len(decision.warnings) - len(shown)
        if hidden > 0:
            shown.append(f"... and {hidden} more trustgate warnings (see the decision log)")
        answer["warnings"] = shown
    if decision.audit_annotations:
        answer["auditAnnotations"] = dict(decision.audit_annotations)
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": answer}


def review(engine: Engine, body: Any) -> tuple[dict[str, Any], Decision, AdmissionRequest]:
    """Parse, decide, answer and log one AdmissionReview.

    Raises:
        AdmissionReviewError: when ``body`` is not a valid AdmissionReview.
    """
    started = time.perf_counter()
    request = parse_review(body)
    decision = decide(engine, request)
    answer = response(request.uid, decision)
    log_decision(request, decision, time.perf_counter() - started)
    return answer, decision, request


def _image_entry(verdict: Verdict, containers: tuple[str, ...]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "image": verdict.image,
        "containers": list(containers),
        "allowed": verdict.allowed,
        "passed": [r.policy for r in verdict.policies if r.passed],
    }
    failed = [
        {
            "policy": r.policy,
            "mode": r.mode,
            "check": f.check,
            "outcome": f.outcome,
            "reason": f.message,
        }
        for r in verdict.policies
        if (f := r.failure) is not None
    ]
    if failed:
        entry["failed"] = failed
    if verdict.no_match is not None:
        entry["noMatch"] = verdict.no_match
    if verdict.reference is None:
        entry["reasons"] = list(verdict.denials)
    return entry


def log_decision(request: AdmissionRequest, decision: Decision, seconds: float) -> None:
    """Write the decision-log line of one review.

    Per image: the policies it passed by name, and for each failure the policy,
    its mode, the check and the reason; the line is written on every review, so
    passing checks are not spelled out.
    """
    images = [_image_entry(v, decision.containers.get(v.image, ())) for v in decision.verdicts]
    log.info(
        "admission review",
        extra={
            "fields": {
                "uid": request.uid,
                "operation": request.operation,
                "kind": request.kind,
                "subResource": request.sub_resource,
                "namespace": request.namespace,
                "name": _object_name(request),
                "user": request.user,
                "dryRun": request.dry_run,
                "allowed": decision.allowed,
                "decision": decision.label,
                "note": decision.note or None,
                "images": images,
                "durationMs": round(seconds * 1000, 3),
            }
        },
    )
