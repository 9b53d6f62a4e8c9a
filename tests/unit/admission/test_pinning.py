"""webhook.admission.pinning: which verdicts may be pinned, the pinned reference, the JSONPatch."""

from __future__ import annotations

import copy

import jsonpatch
import pytest

from tests.support.kube import pod_spec, workload
from webhook.admission.pinning import Pin, json_patch, pinned_reference, verified_digest
from webhook.admission.workloads import find_images
from webhook.core.errors import ImageReferenceError
from webhook.core.reference import parse_reference
from webhook.engine import CheckResult, PolicyResult, Verdict

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
IMAGE = "quay.io/acme/api:1.0"

ALLOW = CheckResult("allowlist", "pass")
SIGNED = CheckResult("signatures", "pass", "signed by release", D1)
GRADED_WARN = CheckResult("freshness", "warn", "grade B, falls to C soon", D1)
UNKNOWN_ALLOWED = CheckResult("freshness", "pass", "freshness grade unknown; admitted")
UNSIGNED = CheckResult("signatures", "deny", "no signature found")


def verdict(*policies: PolicyResult, image: str = IMAGE, digest: str | None = D1) -> Verdict:
    denials = tuple(
        f"denied by {p.policy}" for p in policies if p.mode == "enforce" and not p.passed
    )
    warnings = tuple(
        f"would be denied by {p.policy}" for p in policies if p.mode == "audit" and not p.passed
    )
    return Verdict(image, parse_reference(image), policies, denials, warnings, digest=digest)


def result(name: str, *checks: CheckResult, mode: str = "enforce", pin: bool = True):
    return PolicyResult(name, mode, (ALLOW, *checks), pin)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("policies", "pinned", "why"),
    [
        ((result("prod", SIGNED),), D1, ""),
        ((result("prod", GRADED_WARN),), D1, ""),  # a caution still verified the grade
        ((result("prod", SIGNED), result("fresh", GRADED_WARN)), D1, ""),
        # one policy pins, the other verifies the same digest without asking
        ((result("prod", SIGNED), result("fresh", GRADED_WARN, pin=False)), D1, ""),
        ((result("prod", SIGNED, pin=False),), None, "no policy governing it sets pinDigest"),
        ((result("prod", UNSIGNED),), None, "denied"),
        # an audit policy found fault with it: admitted, but left as written
        (
            (result("prod", SIGNED), result("rollout", UNSIGNED, mode="audit")),
            None,
            'policy "rollout" did not pass',
        ),
        ((result("rollout", UNSIGNED, mode="audit"),), None, 'policy "rollout" did not pass'),
        # an unknown grade admitted by onUnknown verified nothing about the digest
        ((result("fresh", UNKNOWN_ALLOWED),), None, "no check verified a digest"),
        (
            (result("prod", SIGNED), result("fresh", CheckResult("freshness", "pass", "", D2))),
            None,
            "its checks verified different digests",
        ),
        ((), None, "no policy governs it"),
    ],
)
def test_verified_digest(policies: tuple[PolicyResult, ...], pinned: str | None, why: str) -> None:
    digest, reason = verified_digest(verdict(*policies))
    assert digest == pinned
    assert reason.startswith(why)


def test_a_digest_other_than_the_resolved_one_is_never_pinned() -> None:
    """The verdict's digest is what the reference resolved to; a check's must be that one."""
    digest, reason = verified_digest(verdict(result("prod", SIGNED), digest=D2))
    assert digest is None
    assert reason == "its checks verified different digests"


def test_pinned_and_invalid_references_are_left_alone() -> None:
    pinned = f"{IMAGE}@{D1}"
    assert verified_digest(verdict(result("prod", SIGNED), image=pinned)) == (
        None,
        "already pinned by digest",
    )
    broken = Verdict("Not An Image", None, (), denials=("invalid",))
    assert verified_digest(broken) == (None, "invalid image reference")


@pytest.mark.parametrize(
    ("written", "pinned"),
    [
        ("quay.io/acme/api:1.0", f"quay.io/acme/api:1.0@{D1}"),
        ("nginx", f"nginx:latest@{D1}"),  # the tag that was resolved is kept
        ("nginx:1.27", f"nginx:1.27@{D1}"),  # not rewritten to docker.io/library/nginx
        ("docker.io/library/nginx:1.27", f"docker.io/library/nginx:1.27@{D1}"),
        ("index.docker.io/acme/app:v2", f"index.docker.io/acme/app:v2@{D1}"),
        ("localhost:5000/app", f"localhost:5000/app:latest@{D1}"),  # a port is not a tag
        ("127.0.0.1:5000/team/app:v1", f"127.0.0.1:5000/team/app:v1@{D1}"),
        ("[::1]:5000/app:v1", f"[::1]:5000/app:v1@{D1}"),
        ("Quay.IO/acme/api:1.0", f"Quay.IO/acme/api:1.0@{D1}"),
    ],
)
def test_pinned_reference_keeps_what_was_written(written: str, pinned: str) -> None:
    assert pinned_reference(written, D1) == pinned
    before, after = parse_reference(written), parse_reference(pinned)
    assert (after.repository, after.tag, after.digest) == (before.repository, before.tag, D1)


@pytest.mark.parametrize(
    ("written", "digest", "message"),
    [
        (f"{IMAGE}@{D2}", D1, "already pinned by digest"),
        (IMAGE, "sha256:abc", "must have 64 hex characters"),
        (IMAGE, "md5:" + "0" * 32, 'digest algorithm "md5" is not accepted'),
        ("UPPER/case:1", D1, "repository names must be lowercase"),
    ],
)
def test_pinned_reference_refuses(written: str, digest: str, message: str) -> None:
    with pytest.raises(ImageReferenceError, match=message):
        pinned_reference(written, digest)


def test_patch_applies_under_rfc_6902_and_changes_only_the_images() -> None:
    spec = pod_spec(IMAGE, "nginx", init=(IMAGE,), ephemeral=("nginx",), volumes=(IMAGE,))
    obj = workload("CronJob", spec)
    found = find_images(obj)
    pins = [
        Pin(image, pinned_reference(image, digest), digest, pointers)
        for image, digest in ((IMAGE, D1), ("nginx", D2))
        for pointers in [tuple(i.pointer for i in found if i.image == image)]
    ]
    patch = json_patch(pins)
    assert [op["op"] for op in patch] == ["test", "replace"] * len(found)
    patched = jsonpatch.apply_patch(obj, patch)
    images = [i.image for i in find_images(patched)]
    assert images == [
        f"{IMAGE}@{D1}",
        f"nginx:latest@{D2}",
        f"{IMAGE}@{D1}",
        f"nginx:latest@{D2}",
        f"{IMAGE}@{D1}",
    ]
    # everything else is untouched
    for item in find_images(patched):
        jsonpatch.JsonPointer(item.pointer).set(patched, "x")
    for item in find_images(obj):
        jsonpatch.JsonPointer(item.pointer).set(obj, "x")
    assert patched == obj


def test_a_patch_never_rewrites_a_value_that_changed() -> None:
    """Another webhook rewrote the image in between: the test op fails the whole patch."""
    obj = workload("Pod", pod_spec(IMAGE, IMAGE))
    (pointers,) = {tuple(i.pointer for i in find_images(obj))}
    patch = json_patch([Pin(IMAGE, f"{IMAGE}@{D1}", D1, pointers)])
    changed = copy.deepcopy(obj)
    changed["spec"]["containers"][1]["image"] = "evil.example/api:1.0"
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(changed, patch)
    assert changed["spec"]["containers"][0]["image"] == IMAGE
