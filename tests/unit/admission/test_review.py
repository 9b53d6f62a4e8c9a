"""AdmissionReview parsing, the request-level decision and the response shape."""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

import pytest

from tests.support.builders import engine, policy
from tests.support.kube import RESOURCES, pod_spec, review, workload
from webhook.admission.decisionlog import MAX_IMAGES_BYTES
from webhook.admission.review import decide, parse_review, response
from webhook.admission.review import review as run_review
from webhook.core.errors import AdmissionReviewError
from webhook.engine import Engine
from webhook.policy.model import PolicySet

GOOD = "registry.redhat.io/ubi9/ubi:9.4"
BAD = "docker.io/library/nginx:1.27"


@pytest.fixture
def prod():
    return engine(policy(), policy("audit-all", mode="audit", namespaces=("*",)))


def decide_on(e, body: dict):
    return decide(e, parse_review(body))


@pytest.mark.parametrize("kind", sorted(RESOURCES))
@pytest.mark.parametrize("where", ["containers", "init", "ephemeral"])
def test_every_kind_and_container_list_is_judged(prod, kind: str, where: str) -> None:
    images = {"containers": (BAD,), "init": (), "ephemeral": ()}
    args = (
        {"init": (BAD,)}
        if where == "init"
        else {"ephemeral": (BAD,)}
        if where == "ephemeral"
        else {}
    )
    spec = pod_spec(*(images["containers"] if where == "containers" else (GOOD,)), **args)
    decision = decide_on(prod, review(workload(kind, spec)))
    assert not decision.allowed
    assert BAD in decision.message
    assert decision.containers[BAD]


@pytest.mark.parametrize("kind", sorted(RESOURCES))
def test_clean_workloads_are_admitted(prod, kind: str) -> None:
    decision = decide_on(prod, review(workload(kind, pod_spec(GOOD, init=(GOOD,)))))
    assert decision.allowed
    assert decision.warnings == ()


def test_update_is_judged_on_the_new_object(prod) -> None:
    new = workload("Deployment", pod_spec(BAD))
    old = workload("Deployment", pod_spec(GOOD))
    assert not decide_on(prod, review(new, operation="UPDATE", old=old)).allowed
    assert decide_on(prod, review(old, operation="UPDATE", old=new)).allowed


def test_ephemeral_container_subresource(prod) -> None:
    pod = workload("Pod", pod_spec(GOOD, ephemeral=("busybox",)))
    before = workload("Pod", pod_spec(GOOD))
    body = review(pod, operation="UPDATE", old=before, sub_resource="ephemeralcontainers")
    decision = decide_on(prod, body)
    assert not decision.allowed
    assert "image busybox denied" in decision.message


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT"])
def test_delete_and_connect_are_admitted(prod, operation: str) -> None:
    body = review(workload("Pod", pod_spec(BAD)), operation=operation)
    decision = decide_on(prod, body)
    assert decision.allowed
    assert decision.note == f"{operation} is not judged"


def test_unknown_kind_without_pod_spec_is_admitted_and_noted(prod) -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}}
    decision = decide_on(prod, review(obj))
    assert decision.allowed
    assert "ConfigMap is not one trustgate knows" in decision.note


def test_unknown_kind_with_a_pod_template_is_judged(prod) -> None:
    obj = workload("Rollout", pod_spec(BAD))
    assert not decide_on(prod, review(obj)).allowed


def test_malformed_pod_spec_is_denied(prod) -> None:
    obj = workload("Pod", pod_spec(GOOD))
    obj["spec"]["containers"][0]["image"] = 42
    decision = decide_on(prod, review(obj))
    assert not decision.allowed
    assert "cannot be judged" in decision.message


def test_audit_policy_admits_with_warnings_and_annotations() -> None:
    e = engine(policy(mode="audit"))
    body = review(workload("Deployment", pod_spec(BAD, GOOD)))
    answer = response(body["request"]["uid"], decide_on(e, body))["response"]
    assert answer["allowed"] is True
    assert "status" not in answer
    assert answer["warnings"] == [
        f'image {BAD} would be denied by policy "production" (audit mode): repository '
        "docker.io/library/nginx is not in the registry allowlist "
        "(registry.redhat.io/**, quay.io/acme/**)"
    ]
    (key,) = answer["auditAnnotations"]
    assert key == "audit-violations"
    assert "/" not in key
    assert json.loads(answer["auditAnnotations"][key]) == [
        {
            "image": BAD,
            "policy": "production",
            "check": "allowlist",
            "message": "repository docker.io/library/nginx is not in the registry allowlist "
            "(registry.redhat.io/**, quay.io/acme/**)",
        }
    ]


def test_enforce_denial_response_shape(prod) -> None:
    body = review(workload("Pod", pod_spec(BAD, "ghcr.io/x/y:1", GOOD)), uid="abc-123")
    answer = response("abc-123", decide_on(prod, body))
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    resp = answer["response"]
    assert resp["uid"] == "abc-123"
    assert resp["allowed"] is False
    assert resp["status"]["code"] == 403
    lines = resp["status"]["message"].split("\n")
    assert len(lines) == 2
    assert lines[0].startswith(f'image {BAD} denied by policy "production": ')
    assert lines[1].startswith('image ghcr.io/x/y:1 denied by policy "production": ')


def test_warnings_are_bounded() -> None:
    e = engine(policy(mode="audit"))
    images = [f"ghcr.io/acme/{'x' * 200}-{i}:1" for i in range(30)]
    body = review(workload("Pod", pod_spec(*images)))
    warnings = response("u", decide_on(e, body))["response"]["warnings"]
    assert len(warnings) == 13
    assert all(len(w) <= 256 for w in warnings)
    assert warnings[-1] == "... and 18 more trustgate warnings (see the decision log)"


def test_decision_log_line(prod, caplog: pytest.LogCaptureFixture) -> None:
    body = review(workload("Deployment", pod_spec(BAD)), dry_run=True)
    with caplog.at_level(logging.INFO, logger="trustgate"):
        run_review(prod, body)
    (record,) = [r for r in caplog.records if r.name == "trustgate.admission"]
    fields: dict[str, Any] = record.__dict__["fields"]
    assert fields["uid"] == body["request"]["uid"]
    assert fields["dryRun"] is True
    assert fields["operation"] == "CREATE"
    assert fields["kind"] == "Deployment"
    assert fields["namespace"] == "prod-web"
    assert fields["name"] == "web"
    assert fields["user"] == "kubernetes-admin"
    assert fields["allowed"] is False
    (image,) = fields["images"]
    assert image["image"] == BAD
    assert image["containers"] == ["app-0"]
    assert image["passed"] == []
    assert [(f["policy"], f["mode"], f["check"], f["outcome"]) for f in image["failed"]] == [
        ("production", "enforce", "allowlist", "deny"),
        ("audit-all", "audit", "allowlist", "deny"),
    ]
    assert "not in the registry allowlist" in image["failed"][0]["reason"]
    assert fields["durationMs"] >= 0


def _broken(mutate) -> dict:
    body = review(workload("Pod", pod_spec(GOOD)))
    mutate(body)
    return body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "must be a JSON object"),
        ({}, "expected apiVersion admission.k8s.io/v1"),
        (
            _broken(lambda b: b.update(apiVersion="admission.k8s.io/v1beta1")),
            "admissionReviewVersions",
        ),
        (_broken(lambda b: b.update(kind="Pod")), "kind AdmissionReview"),
        (_broken(lambda b: b.pop("request")), "request is required"),
        (_broken(lambda b: b.update(request="x")), "request must be an object, got string"),
        (_broken(lambda b: b["request"].pop("uid")), "request.uid is required"),
        (_broken(lambda b: b["request"].update(uid="")), "must not be empty"),
        (_broken(lambda b: b["request"].update(uid=5)), "request.uid must be a string, got number"),
        (_broken(lambda b: b["request"].pop("kind")), "request.kind is required"),
        (_broken(lambda b: b["request"]["kind"].pop("kind")), "request.kind.kind is required"),
        (_broken(lambda b: b["request"].update(operation="PATCH")), "operation must be one of"),
        (_broken(lambda b: b["request"].update(object=None)), "request.object is required"),
        (
            _broken(lambda b: b["request"].update(object=[1])),
            "request.object must be an object, got array",
        ),
        (_broken(lambda b: b["request"].update(dryRun="yes")), "dryRun must be a boolean"),
        (
            _broken(lambda b: b["request"].update(namespace=3)),
            "request.namespace must be a string, got number",
        ),
    ],
)
def test_malformed_reviews_are_rejected(body: Any, message: str) -> None:
    with pytest.raises(AdmissionReviewError, match=message):
        parse_review(copy.deepcopy(body))


#: Every field of an AdmissionReview request, and a value of the wrong type for it.
WRONG_TYPES: list[tuple[tuple[str | int, ...], Any, str]] = [
    (("apiVersion",), ["admission.k8s.io/v1"], "expected apiVersion"),
    (("kind",), {"kind": "AdmissionReview"}, "expected apiVersion"),
    (("request", "uid"), ["u"], "request.uid must be a string, got array"),
    (("request", "kind"), "Pod", "request.kind must be an object, got string"),
    (("request", "kind", "group"), 1, "request.kind.group must be a string, got number"),
    (("request", "kind", "version"), [], "request.kind.version must be a string"),
    (("request", "kind", "kind"), {"a": 1}, "request.kind.kind must be a string, got object"),
    (("request", "resource"), [], "request.resource must be an object, got array"),
    (("request", "resource", "resource"), 1, "request.resource.resource must be a string"),
    (("request", "requestKind"), True, "request.requestKind must be an object, got boolean"),
    (("request", "requestKind", "kind"), 2, "request.requestKind.kind must be a string"),
    (("request", "requestResource"), "x", "request.requestResource must be an object"),
    (("request", "subResource"), [], "request.subResource must be a string, got array"),
    (("request", "requestSubResource"), {}, "request.requestSubResource must be a string"),
    (("request", "name"), 1.5, "request.name must be a string, got number"),
    (("request", "namespace"), ["prod"], "request.namespace must be a string, got array"),
    (("request", "operation"), ["CREATE"], "request.operation must be a string, got array"),
    (("request", "userInfo"), "admin", "request.userInfo must be an object, got string"),
    (("request", "userInfo", "username"), {}, "request.userInfo.username must be a string"),
    (("request", "userInfo", "uid"), 7, "request.userInfo.uid must be a string"),
    (("request", "userInfo", "groups"), "g", "request.userInfo.groups must be an array"),
    (("request", "userInfo", "groups", 0), None, r"request.userInfo.groups\[0\] must be a string"),
    (("request", "userInfo", "extra"), [], "request.userInfo.extra must be an object"),
    (("request", "object"), "{}", "request.object must be an object, got string"),
    (("request", "oldObject"), [], "request.oldObject must be an object, got array"),
    (("request", "dryRun"), 0, "request.dryRun must be a boolean, got number"),
    (("request", "options"), "x", "request.options must be an object, got string"),
]


def _set(body: dict, path: tuple[str | int, ...], value: Any) -> dict:
    body = json.loads(json.dumps(body))  # kube.review shares the GVK between kind fields
    node: Any = body
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return body


@pytest.mark.parametrize(
    ("path", "value", "message"),
    WRONG_TYPES,
    ids=[".".join(map(str, p)) for p, _, _ in WRONG_TYPES],
)
def test_every_request_field_is_type_checked(path: tuple, value: Any, message: str) -> None:
    old = workload("Pod", pod_spec(GOOD))
    body = review(workload("Pod", pod_spec(BAD)), operation="UPDATE", old=old)
    body["request"]["userInfo"]["uid"] = "1"
    body["request"]["userInfo"]["extra"] = {"scopes": ["a"]}
    with pytest.raises(AdmissionReviewError, match=message):
        parse_review(_set(body, path, value))


def test_user_extra_values_must_be_arrays_of_strings() -> None:
    body = review(workload("Pod", pod_spec(GOOD)))
    body["request"]["userInfo"]["extra"] = {"scopes": ["a", 1]}
    with pytest.raises(AdmissionReviewError, match=r'request.userInfo.extra\["scopes"\]'):
        parse_review(body)


def test_optional_fields_may_be_null() -> None:
    body = review(workload("Pod", pod_spec(GOOD)))
    for key in ("name", "namespace", "subResource", "options", "oldObject", "dryRun", "userInfo"):
        body["request"][key] = None
    request = parse_review(body)
    assert (request.name, request.namespace, request.user, request.dry_run) == ("", "", "", False)


def test_parse_keeps_what_the_decision_needs() -> None:
    body = review(workload("Deployment", pod_spec(GOOD)), dry_run=True, uid="u-1")
    request = parse_review(body)
    assert (request.uid, request.kind, request.group, request.operation) == (
        "u-1",
        "Deployment",
        "apps",
        "CREATE",
    )
    assert (request.namespace, request.name, request.user, request.dry_run) == (
        "prod-web",
        "web",
        "kubernetes-admin",
        True,
    )


MODELS = "ghcr.io/acme/models:7"


@pytest.mark.parametrize("kind", sorted(RESOURCES))
def test_image_volumes_are_judged_and_named(prod, kind: str) -> None:
    body = review(workload(kind, pod_spec(GOOD, volumes=(GOOD, MODELS))))
    decision = decide_on(prod, body)
    assert not decision.allowed
    assert decision.message == (
        f'image {MODELS} denied by policy "production": repository ghcr.io/acme/models is not '
        'in the registry allowlist (registry.redhat.io/**, quay.io/acme/**) (image volume "data-1")'
    )
    assert decision.volumes == {GOOD: ("data-0",), MODELS: ("data-1",)}
    assert decision.containers == {GOOD: ("app-0",)}


def test_image_volume_in_the_decision_log(prod, caplog: pytest.LogCaptureFixture) -> None:
    body = review(workload("Pod", pod_spec(GOOD, volumes=(MODELS, MODELS))))
    with caplog.at_level(logging.INFO, logger="trustgate"):
        answer, _, _ = run_review(prod, body)
    assert '(image volumes "data-0", "data-1")' in answer["response"]["status"]["message"]
    (record,) = [r for r in caplog.records if r.name == "trustgate.admission"]
    fields: dict[str, Any] = record.__dict__["fields"]
    by_image = {entry["image"]: entry for entry in fields["images"]}
    assert by_image[MODELS]["volumes"] == ["data-0", "data-1"]
    assert by_image[MODELS]["containers"] == []
    assert by_image[MODELS]["failed"][0]["check"] == "allowlist"
    assert "volumes" not in by_image[GOOD]


def _finalizer_removed(obj: dict) -> dict:
    new = copy.deepcopy(obj)
    new["metadata"]["finalizers"] = []
    return new


def test_an_update_that_changes_no_image_is_not_rechecked(
    prod, caplog: pytest.LogCaptureFixture
) -> None:
    """A Pod from before the policy can still lose its finalizer."""
    old = workload("Pod", pod_spec(BAD, volumes=(MODELS,)))
    old["metadata"]["finalizers"] = ["example.com/cleanup"]
    body = review(_finalizer_removed(old), operation="UPDATE", old=old)
    with caplog.at_level(logging.INFO, logger="trustgate"):
        answer, decision, _ = run_review(prod, body)
    assert answer["response"] == {
        "uid": body["request"]["uid"],
        "allowed": True,
        "auditAnnotations": {"not-rechecked": "no image changed"},
    }
    assert decision.verdicts == ()
    (record,) = [r for r in caplog.records if r.name == "trustgate.admission"]
    fields: dict[str, Any] = record.__dict__["fields"]
    assert fields["note"] == "UPDATE admitted without a re-check: no image changed"
    assert fields["notRechecked"] == [BAD, MODELS]
    assert fields["images"] == []


def test_an_update_of_an_object_being_deleted_is_not_rechecked(prod) -> None:
    old = workload("Deployment", pod_spec(BAD))
    old["metadata"].update(deletionTimestamp="2026-11-28T23:00:00Z", finalizers=["x/y"])
    decision = decide_on(prod, review(_finalizer_removed(old), operation="UPDATE", old=old))
    assert decision.allowed
    assert decision.audit_annotations == {"not-rechecked": "the object is being deleted"}


@pytest.mark.parametrize(
    "new_images",
    [
        {"images": (BAD, GOOD)},
        {"images": (GOOD,), "volumes": (BAD,)},
        {"images": (BAD,), "init": (BAD,)},
    ],
    ids=["container added", "image moved to a volume", "init container added"],
)
def test_an_update_that_changes_an_image_is_judged_in_full(prod, new_images: dict) -> None:
    old = workload("Pod", pod_spec(BAD))
    images = new_images.pop("images")
    new = workload("Pod", pod_spec(*images, **new_images))
    decision = decide_on(prod, review(new, operation="UPDATE", old=old))
    assert not decision.allowed
    assert f"image {BAD} denied" in decision.message
    assert "not-rechecked" not in decision.audit_annotations


def test_recheck_unchanged_images_judges_every_update(prod) -> None:
    old = workload("Pod", pod_spec(BAD))
    old["metadata"]["deletionTimestamp"] = "2026-11-28T23:00:00Z"
    request = parse_review(review(_finalizer_removed(old), operation="UPDATE", old=old))
    assert decide(prod, request).allowed
    decision = decide(prod, request, recheck_unchanged_images=True)
    assert not decision.allowed
    assert f"image {BAD} denied" in decision.message


def test_a_malformed_update_of_an_unchanged_object_is_still_refused(prod) -> None:
    old = workload("Pod", pod_spec(GOOD))
    new = copy.deepcopy(old)
    new["spec"]["volumes"] = [{"name": "m", "image": "not-a-source"}]
    decision = decide_on(prod, review(new, operation="UPDATE", old=old))
    assert not decision.allowed
    assert decision.message == (
        "the Pod cannot be judged: spec.volumes[0].image must be a mapping, got str"
    )


def test_an_update_of_an_object_without_images_is_admitted_as_before(prod) -> None:
    scale = {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web"}}
    decision = decide_on(prod, review(scale, operation="UPDATE", old=scale))
    assert decision.allowed
    assert decision.audit_annotations == {}
    assert decision.note == "kind Scale is not one trustgate knows and has no pod spec"


# --- admission.maxImages and the size of the decision-log line -------------------------


class Counting:
    """The allowlist check, counting the images it is asked about."""

    name = "allowlist"
    pure = False

    def __init__(self) -> None:
        self.calls = 0

    def run(self, image: object, policy: object, context: object) -> None:
        self.calls += 1


def capped(limit: int | None) -> tuple[Engine, Counting]:
    check = Counting()
    policy_set = PolicySet((policy(namespaces=("*",), registries=("**",)),))
    return Engine(lambda: policy_set, checks={"allowlist": check}, max_images=limit), check


def many(count: int, repeat: int = 1) -> dict:
    images = [f"quay.io/acme/app{i % count}:1" for i in range(count * repeat)]
    return review(workload("Pod", pod_spec(*images)))


def test_a_review_past_max_images_is_denied_naming_the_limit_before_any_check() -> None:
    e, check = capped(200)
    decision = decide_on(e, many(201))
    assert not decision.allowed
    assert decision.message == (
        "the Pod names 201 distinct images, more than the 200 one review may judge "
        "(admission.maxImages); split the workload or raise the limit"
    )
    assert check.calls == 0
    assert decision.verdicts == ()


def test_max_images_counts_distinct_images() -> None:
    e, check = capped(200)
    assert decide_on(e, many(200, repeat=3)).allowed  # 600 containers, 200 images
    assert check.calls == 200


def test_the_engine_refuses_too_many_images_for_any_caller() -> None:
    e, check = capped(2)
    images = ["quay.io/acme/a:1", "quay.io/acme/b:1", "quay.io/acme/c:1"]
    verdicts = e.evaluate(images, namespace="prod-web", kind="Pod", pinning=True)
    assert [v.allowed for v in verdicts] == [False, False, False]
    assert "admission.maxImages" in verdicts[0].denials[0]
    assert check.calls == 0


def test_the_decision_log_line_is_bounded_and_counts_what_it_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    images = [f"quay.io/acme/{'x' * 150}{i}:1" for i in range(3000)] + [BAD]
    policy_set = PolicySet((policy(),))  # BAD is denied, the rest allowed
    e = Engine(lambda: policy_set)
    with caplog.at_level(logging.INFO, logger="trustgate"):
        answer, _, _ = run_review(e, review(workload("Pod", pod_spec(*images))))
    assert answer["response"]["allowed"] is False
    (record,) = [r for r in caplog.records if r.name == "trustgate.admission"]
    fields: dict[str, Any] = record.__dict__["fields"]
    size = len(json.dumps(fields["images"], separators=(",", ":")))
    assert size <= MAX_IMAGES_BYTES
    assert fields["images"][0]["image"] == BAD  # the denied image is kept first
    assert fields["imagesOmitted"] == len(images) - len(fields["images"]) > 2000


def test_a_usual_line_has_no_omitted_fields(prod, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="trustgate"):
        run_review(prod, review(workload("Pod", pod_spec(GOOD, BAD))))
    (record,) = [r for r in caplog.records if r.name == "trustgate.admission"]
    fields = record.__dict__["fields"]
    assert [i["image"] for i in fields["images"]] == [GOOD, BAD]
    assert "imagesOmitted" not in fields and "notRecheckedOmitted" not in fields
