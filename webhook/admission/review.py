"""AdmissionReview v1 in, AdmissionResponse out.

The request is validated once, here, into a frozen ``AdmissionRequest``: every
field of the envelope is type-checked, and a body that is not an AdmissionReview
gets one line naming the field (HTTP 400). The objects inside are read by
``workloads``, whose refusals are denials. The decision combines the engine's
verdicts into what Kubernetes expects: a denial with one line per denied image,
or an admission with warnings and audit annotations for what audit policies
would have denied. An UPDATE that admits no new image is not judged again
(see ``updates``) unless the configuration asks for it, or it removes the
break-glass annotation. Exceptions and break-glass waive enforce denials
loudly (see ``waivers``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from webhook.admission.decision import AdmissionRequest, Decision
from webhook.admission.decisionlog import log_decision, log_outcome
from webhook.admission.pullidentity import pull_identity
from webhook.admission.updates import UNCHANGED, not_new
from webhook.admission.waivers import (
    Requester,
    audit_annotations,
    break_glass_annotation,
    break_glass_removed,
    requester,
    settle,
)
from webhook.admission.workloads import ContainerImage, find_images, is_understood
from webhook.core.errors import AdmissionReviewError, TrustgateError
from webhook.engine import Engine, Verdict, display
from webhook.policy.model import PolicySet

__all__ = [
    "API_VERSION",
    "AdmissionRequest",
    "Decision",
    "decide",
    "parse_review",
    "response",
    "review",
]

API_VERSION = "admission.k8s.io/v1"
_OPERATIONS = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})
_JUDGED = frozenset({"CREATE", "UPDATE"})
#: The API server truncates longer warnings and drops them past 4 KiB in all.
_MAX_WARNING = 256
_MAX_WARNINGS = 12
_MAX_MESSAGE = 4000
#: Decisions on more images than this are not kept: the memo's size stays bounded in bytes.
_KEEP_MAX_IMAGES = 32


#: JSON's names for the decoded types, as messages about a JSON body use them.
_JSON_NAMES: dict[type, str] = {dict: "object", list: "array", str: "string"}
_JSON_TYPES: dict[type, str] = {dict: "an object", list: "an array", str: "a string"}


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _field(
    data: Mapping[str, Any], key: str, kind: type, where: str, *, required: bool = False
) -> Any:
    """``data[key]`` when it has type ``kind``; None when absent or null and not required."""
    value = data.get(key)
    if value is None:
        if required:
            raise AdmissionReviewError(f"{where}.{key} is required")
        return None
    if type(value) is not kind:
        raise AdmissionReviewError(
            f"{where}.{key} must be {_JSON_TYPES[kind]}, got {_json_type(value)}"
        )
    return value


#: The request's plain string and object fields, and its group/version/kind and
#: resource fields: all checked, read or not, so that a body the API server
#: could not have sent is refused whole instead of half-read.
_STRINGS = ("subResource", "requestSubResource", "name", "namespace")
_OBJECTS = ("options",)
_GVK = ("group", "version", "kind")
_GVR = ("group", "version", "resource")
_GROUP_KINDS = {"kind": _GVK, "requestKind": _GVK, "resource": _GVR, "requestResource": _GVR}


def _strings(data: Mapping[str, Any], keys: tuple[str, ...], where: str) -> None:
    for key in keys:
        value = data.get(key)
        if value is not None and type(value) is not str:
            _field(data, key, str, where)  # raises, naming the field


def _user_info(request: Mapping[str, Any]) -> str:
    """The username, after checking every field of ``request.userInfo``."""
    info = _field(request, "userInfo", dict, "request") or {}
    _strings(info, ("username", "uid"), "request.userInfo")
    groups = _field(info, "groups", list, "request.userInfo") or []
    for index, group in enumerate(groups):
        if type(group) is not str:
            raise AdmissionReviewError(
                f"request.userInfo.groups[{index}] must be a string, got {_json_type(group)}"
            )
    extra = _field(info, "extra", dict, "request.userInfo") or {}
    for key, values in extra.items():
        if type(values) is not list or any(type(v) is not str for v in values):
            raise AdmissionReviewError(
                f"request.userInfo.extra[{json.dumps(key)}] must be an array of strings"
            )
    return str(info.get("username") or "")


def parse_review(body: Any) -> AdmissionRequest:
    """Validate a decoded AdmissionReview and extract its request.

    Every field the API server sends is type-checked, whether or not the
    decision reads it; the objects themselves are checked by ``workloads``
    when they are judged.

    Raises:
        AdmissionReviewError: the body is not an admission.k8s.io/v1 AdmissionReview
            with a request trustgate can answer; the message names the field.
    """
    if type(body) is not dict:
        raise AdmissionReviewError(
            f"the body must be a JSON object (an AdmissionReview), got {_json_type(body)}"
        )
    if body.get("apiVersion") != API_VERSION or body.get("kind") != "AdmissionReview":
        raise AdmissionReviewError(
            f"expected apiVersion {API_VERSION} and kind AdmissionReview "
            "(set admissionReviewVersions: [v1] in the webhook configuration)"
        )
    request = _field(body, "request", dict, "AdmissionReview", required=True)
    uid = _field(request, "uid", str, "request", required=True)
    if not uid:
        raise AdmissionReviewError("request.uid must not be empty")
    for key, fields in _GROUP_KINDS.items():
        value = _field(request, key, dict, "request", required=key == "kind")
        if value is not None:
            _strings(value, fields, f"request.{key}")
    gvk = request["kind"]
    kind = _field(gvk, "kind", str, "request.kind", required=True)
    operation = _field(request, "operation", str, "request", required=True)
    if operation not in _OPERATIONS:
        raise AdmissionReviewError(f"request.operation must be one of {sorted(_OPERATIONS)}")
    _strings(request, _STRINGS, "request")
    for key in _OBJECTS:
        _field(request, key, dict, "request")
    obj = _field(request, "object", dict, "request", required=operation in _JUDGED)
    old = _field(request, "oldObject", dict, "request")
    user = _user_info(request)
    dry_run = request.get("dryRun", False)
    if dry_run is None:
        dry_run = False
    if type(dry_run) is not bool:
        raise AdmissionReviewError(f"request.dryRun must be a boolean, got {_json_type(dry_run)}")
    return AdmissionRequest(
        uid=uid,
        kind=kind,
        operation=operation,
        namespace=request.get("namespace") or "",
        name=request.get("name") or "",
        group=gvk.get("group") or "",
        sub_resource=request.get("subResource") or "",
        user=user,
        dry_run=dry_run,
        object=obj,
        old_object=old,
        groups=tuple((request.get("userInfo") or {}).get("groups") or ()),
    )


def decide(
    engine: Engine,
    request: AdmissionRequest,
    *,
    recheck_unchanged_images: bool = False,
    now: datetime | None = None,
    user_known: bool = True,
) -> Decision:
    """Judge every image of the request's object (the new object on UPDATE).

    An UPDATE that admits no new image (``updates.not_new``) is admitted
    without a re-check unless ``recheck_unchanged_images``, or it removes the
    break-glass annotation from an object not being deleted. Exceptions
    expire against ``now`` (default: the clock); ``user_known`` False (the
    dry-run audit) honours break-glass wherever a policy allows it, whoever
    the user.
    """
    return _judge(
        engine,
        request,
        recheck_unchanged_images=recheck_unchanged_images,
        now=now,
        user_known=user_known,
    )[0]


def _judge(
    engine: Engine,
    request: AdmissionRequest,
    *,
    recheck_unchanged_images: bool,
    now: datetime | None,
    user_known: bool = True,
) -> tuple[Decision, dict[str, Any] | None]:
    """``decide``, with the decision log's outcome fields when the decision was kept.

    The key holds the user and groups, so the kept break-glass entry names the
    right user.
    """
    if request.operation not in _JUDGED or request.object is None:
        return Decision(allowed=True, note=f"{request.operation} is not judged"), None
    found: tuple[ContainerImage, ...] | None = None
    problem: TrustgateError | None = None
    try:
        found = find_images(request.object)
    except TrustgateError as exc:
        problem = exc
    if request.operation == "UPDATE" and not recheck_unchanged_images and found != ():
        reason = not_new(request.old_object, found)
        if reason == UNCHANGED and break_glass_removed(request.old_object, request.object):
            reason = None  # leaving break-glass: back under the policy now
        if reason is not None:
            return _not_rechecked(reason, found or ()), None
    if found is None:
        return (
            Decision(allowed=False, message=f"the {request.kind} cannot be judged: {problem}"),
            None,
        )
    refusal = engine.over_limit(len({item.image for item in found}), request.kind)
    if refusal is not None:
        return Decision(allowed=False, message=refusal, note=refusal), None
    if not found:
        note = "no pod spec found"
        if not is_understood(request.kind):
            note = f"kind {request.kind} is not one trustgate knows and has no pod spec"
        return Decision(allowed=True, note=note), None
    namespace = request.namespace or _namespace_of(request.object)
    policy_set = engine.policy_set
    memo = engine.derived_memo(policy_set)
    # Every input of what follows but the clock, in plain tuples (hashed and
    # compared in C): a decision is kept only when nothing was denied, and
    # then ``now`` (exception expiry) plays no part.
    key = (
        request.kind,
        namespace,
        tuple([(item.image, item.container, item.kind) for item in found]),
        request.user,
        request.groups,
        break_glass_annotation(request.object),
        user_known,
    )
    if memo is not None and (kept := memo.get(key)) is not None:
        return kept  # type: ignore[no-any-return]  # (Decision, its log's outcome fields)
    who = requester(
        namespace, request.object, user=request.user, groups=request.groups, user_known=user_known
    )
    images: dict[str, None] = {}
    containers: dict[str, list[str]] = {}
    volumes: dict[str, list[str]] = {}
    for item in found:
        images.setdefault(item.image)
        used_by = volumes if item.kind == "imageVolume" else containers
        used_by.setdefault(item.image, []).append(item.container)
    verdicts = engine.evaluate(
        images,
        namespace=namespace,
        kind=request.kind,
        policy_set=policy_set,
        # Only the namespace the API server names: a cluster-scoped object claiming
        # one in its metadata must not borrow that namespace's pull secrets.
        pull=(
            pull_identity(request.namespace, request.object)
            if engine.pull_secrets and request.namespace
            else None
        ),
    )
    decision = _decision(verdicts, policy_set, who, now, containers, volumes)
    if memo is None or len(found) > _KEEP_MAX_IMAGES or any(v.denials for v in verdicts):
        return decision, None
    kept = memo[key] = (decision, log_outcome(request, decision))
    return kept


def _decision(
    verdicts: tuple[Verdict, ...],
    policy_set: PolicySet,
    who: Requester,
    now: datetime | None,
    containers: Mapping[str, list[str]],
    volumes: Mapping[str, list[str]],
) -> Decision:
    """The decision on ``verdicts``, after the waivers ``who`` and ``now`` allow."""
    settled = settle(verdicts, policy_set, who, now or datetime.now(UTC))
    verdicts = settled.verdicts
    shown_volumes = {display(k): tuple(v) for k, v in volumes.items()}
    denials = [line + _volume_note(v, shown_volumes) for v in verdicts for line in v.denials]
    warnings = [line + _volume_note(v, shown_volumes) for v in verdicts for line in v.warnings]
    return Decision(
        allowed=not denials,
        message=_bounded("\n".join(denials), _MAX_MESSAGE),
        warnings=tuple(warnings),
        audit_annotations=_annotations(verdicts) | audit_annotations(settled, who),
        verdicts=verdicts,
        containers={display(k): tuple(v) for k, v in containers.items()},
        volumes=shown_volumes,
        waivers=settled.waivers,
        break_glass=who.reason if who.annotated else None,
        ignored=settled.ignored,
    )


def _volume_note(verdict: Verdict, volumes: Mapping[str, tuple[str, ...]]) -> str:
    """`` (image volume "models")`` for a line about an image that volumes mount."""
    names = volumes.get(verdict.image)
    if not names:
        return ""
    quoted = ", ".join(json.dumps(name) for name in names)
    return f" (image volume {quoted})" if len(names) == 1 else f" (image volumes {quoted})"


def _not_rechecked(reason: str, found: tuple[ContainerImage, ...]) -> Decision:
    """The admission of an UPDATE that is no new admission, saying why."""
    unchecked = tuple(dict.fromkeys(display(item.image) for item in found))
    return Decision(
        allowed=True,
        audit_annotations={"not-rechecked": reason},
        note=f"UPDATE admitted without a re-check: {reason}",
        unchecked=unchecked,
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


def review(
    engine: Engine,
    body: Any,
    *,
    recheck_unchanged_images: bool = False,
    now: datetime | None = None,
) -> tuple[dict[str, Any], Decision, AdmissionRequest]:
    """Parse, decide, answer and log one AdmissionReview.

    Raises:
        AdmissionReviewError: when ``body`` is not a valid AdmissionReview.
    """
    started = time.perf_counter()
    request = parse_review(body)
    decision, outcome = _judge(
        engine, request, recheck_unchanged_images=recheck_unchanged_images, now=now
    )
    answer = response(request.uid, decision)
    log_decision(request, decision, time.perf_counter() - started, outcome=outcome)
    return answer, decision, request
