"""``POST /mutate``: an AdmissionReview in, a JSONPatch that pins verified digests out.

The mutating webhook never denies: it answers ``allowed: true`` always, with a
patch when there is something verified to pin and without one otherwise (a
denied or unverified image, an UPDATE that admits no new image, a deadline
that passed, an internal error). The validating webhook, called after it,
decides; it then sees the pinned references and judges the digests they name.

The review runs the same engine as ``/validate`` within the same deadline, so
the checks it runs warm the caches ``/validate`` reads next: the pinned
reference needs no tag resolution, and its verification is cached by digest.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.admission.decisionlog import object_name
from webhook.admission.pinning import Pin, json_patch, pinned_reference, verified_digest
from webhook.admission.review import API_VERSION, AdmissionRequest, parse_review
from webhook.admission.updates import not_new
from webhook.admission.workloads import ContainerImage, find_images
from webhook.core.errors import TrustgateError
from webhook.core.observability import get_logger
from webhook.engine import Engine, Verdict, display

_JUDGED = frozenset({"CREATE", "UPDATE"})

log = get_logger("mutation")


@dataclass(frozen=True, slots=True)
class Mutation:
    """What ``/mutate`` did to one object: what it pinned, what not and why.

    ``skipped`` pairs each image left as written (shown safely) with the
    reason; ``note`` says why nothing was looked at, when nothing was.
    """

    pins: tuple[Pin, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    note: str = ""
    verdicts: tuple[Verdict, ...] = ()

    @property
    def patch(self) -> list[dict[str, Any]]:
        """The JSONPatch operations (empty: no patch)."""
        return json_patch(self.pins)

    @property
    def label(self) -> str:
        """``patched`` or ``unchanged``: the mutation metric's label."""
        return "patched" if self.pins else "unchanged"


def mutate(
    engine: Engine, request: AdmissionRequest, *, recheck_unchanged_images: bool = False
) -> Mutation:
    """Pin every image of the request's object that the checks verified.

    Never raises for what the object or the registries do: anything that
    cannot be pinned is left as written, for ``/validate`` to judge.
    """
    if request.operation not in _JUDGED or request.object is None:
        return Mutation(note=f"{request.operation} is not mutated")
    if not any(policy.pin_digest for policy in engine.policy_set):
        return Mutation(note="no policy sets pinDigest")
    owner = _controller(request)
    if owner is not None:
        return Mutation(note=f"owned by {owner}, which is pinned itself; its copy is not")
    try:
        found = find_images(request.object)
    except TrustgateError as exc:
        return Mutation(note=f"the {request.kind} cannot be read ({exc}); /validate judges it")
    if request.operation == "UPDATE" and not recheck_unchanged_images and found:
        reason = not_new(request.old_object, found)
        if reason is not None:
            return Mutation(note=f"UPDATE not re-pinned: {reason}")
    if request.operation == "UPDATE":
        found = _new_occurrences(request.old_object, found)
    candidates, skipped = _candidates(engine, found)
    if not candidates:
        return Mutation(skipped=tuple(skipped), note="no image to pin" if not found else "")
    deadline = engine.deadline()
    verdicts = engine.evaluate(
        candidates,
        namespace=_namespace(request),
        kind=request.kind,
        deadline=deadline,
        pinning=True,
    )
    if deadline.remaining() <= 0:
        note = f"the review's deadline of {deadline.seconds:g} s passed; nothing pinned"
        return Mutation(skipped=tuple(skipped), note=note, verdicts=verdicts)
    pins: list[Pin] = []
    for image, verdict in zip(candidates, verdicts, strict=True):
        digest, why = verified_digest(verdict)
        if digest is None:
            skipped.append((display(image), why))
            continue
        try:
            pinned = pinned_reference(image, digest)
        except TrustgateError as exc:
            skipped.append((display(image), exc.message))
            continue
        pointers = tuple(item.pointer for item in found if item.image == image)
        pins.append(Pin(image, pinned, digest, pointers))
    return Mutation(tuple(pins), tuple(skipped), verdicts=verdicts)


def _new_occurrences(
    old: Mapping[str, Any] | None, found: tuple[ContainerImage, ...]
) -> tuple[ContainerImage, ...]:
    """The images of an UPDATE not written at the same place in the stored object.

    Only they are pinned: a Pod's image may be changed in place, and the
    kubelet restarts a container whose image string changes, so pinning an
    unchanged container beside a changed one would restart it for nothing.
    """
    if old is None:
        return found
    try:
        before = {(item.pointer, item.image) for item in find_images(old)}
    except TrustgateError:
        return found
    return tuple(item for item in found if (item.pointer, item.image) not in before)


def _controller(request: AdmissionRequest) -> str | None:
    """``Kind/name`` of the controller owning a templated object (not a Pod), if any.

    A controller finds its ReplicaSet (or Job, ...) by comparing its template
    with its own: a ReplicaSet pinned where its Deployment is not would look
    like another one, and the Deployment controller would create ReplicaSets
    without end. Pods are compared by no controller, so they are pinned.
    """
    if request.kind == "Pod":
        return None
    metadata = (request.object or {}).get("metadata")
    owners = metadata.get("ownerReferences") if isinstance(metadata, dict) else None
    if not isinstance(owners, list):
        return None
    for owner in owners:
        if isinstance(owner, dict) and owner.get("controller") is True:
            return display(f"{owner.get('kind', '?')}/{owner.get('name', '?')}")
    return None


def _candidates(
    engine: Engine, found: tuple[ContainerImage, ...]
) -> tuple[list[str], list[tuple[str, str]]]:
    """The distinct images that could be pinned, and the others with the reason."""
    candidates: list[str] = []
    skipped: list[tuple[str, str]] = []
    for image in dict.fromkeys(item.image for item in found):
        try:
            ref = engine.parse(image)
        except TrustgateError:
            skipped.append((display(image), "invalid image reference"))
            continue
        if ref.digest is not None:
            skipped.append((display(image), "already pinned by digest"))
        else:
            candidates.append(image)
    return candidates, skipped


def _namespace(request: AdmissionRequest) -> str:
    if request.namespace:
        return request.namespace
    metadata = (request.object or {}).get("metadata")
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    return namespace if isinstance(namespace, str) else ""


def mutation_response(uid: str, mutation: Mutation) -> dict[str, Any]:
    """The AdmissionReview that answers request ``uid``: allowed, with the patch if any."""
    answer: dict[str, Any] = {"uid": uid, "allowed": True}
    patch = mutation.patch
    if patch:
        encoded = json.dumps(patch, separators=(",", ":")).encode()
        answer["patchType"] = "JSONPatch"
        answer["patch"] = base64.b64encode(encoded).decode("ascii")
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": answer}


def unpatched(uid: str) -> dict[str, Any]:
    """The answer when the mutation itself failed: allowed, nothing changed."""
    return mutation_response(uid, Mutation())


def mutation_review(
    engine: Engine, body: Any, *, recheck_unchanged_images: bool = False
) -> tuple[dict[str, Any], Mutation, AdmissionRequest]:
    """Parse, mutate, answer and log one AdmissionReview.

    Raises:
        AdmissionReviewError: when ``body`` is not a valid AdmissionReview.
    """
    started = time.perf_counter()
    request = parse_review(body)
    mutation = mutate(engine, request, recheck_unchanged_images=recheck_unchanged_images)
    answer = mutation_response(request.uid, mutation)
    log_mutation(request, mutation, time.perf_counter() - started)
    return answer, mutation, request


def log_mutation(request: AdmissionRequest, mutation: Mutation, seconds: float) -> None:
    """Write the decision-log line of one mutation: what was pinned where, what not and why."""
    log.info(
        "mutation review",
        extra={
            "fields": {
                "uid": request.uid,
                "operation": request.operation,
                "kind": request.kind,
                "namespace": request.namespace,
                "name": object_name(request),
                "user": request.user,
                "dryRun": request.dry_run,
                "patched": bool(mutation.pins),
                "pinned": [
                    {
                        "image": display(pin.image),
                        "digest": pin.digest,
                        "paths": list(pin.pointers),
                    }
                    for pin in mutation.pins
                ]
                or None,
                "notPinned": [{"image": i, "reason": r} for i, r in mutation.skipped] or None,
                "note": mutation.note or None,
                "durationMs": round(seconds * 1000, 3),
            }
        },
    )
