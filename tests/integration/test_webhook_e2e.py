"""End to end: AdmissionReviews as kube-apiserver sends them, to `trustgate serve` over TLS."""

from __future__ import annotations

import http.client
import json
import ssl
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import Server, start_server, stop_server, wait_for
from tests.support.kube import RESOURCES, pod_spec, policy_yaml, review, workload
from tests.support.mutations import admitted_by_accident, mutated_reviews

pytestmark = pytest.mark.e2e

GOOD = "registry.redhat.io/ubi9/ubi-minimal:9.4"
BAD = "docker.io/library/nginx:1.27"


def answer(server: Server, body: dict) -> dict:
    result = server.post(json.dumps(body))
    assert result.status_code == 200, result.text
    payload = result.json()
    assert payload["apiVersion"] == "admission.k8s.io/v1"
    assert payload["kind"] == "AdmissionReview"
    assert payload["response"]["uid"] == body["request"]["uid"]
    return payload["response"]


@pytest.mark.parametrize("kind", sorted(RESOURCES))
def test_every_workload_kind(webhook_server: Server, kind: str) -> None:
    denied = answer(webhook_server, review(workload(kind, pod_spec(GOOD, init=(BAD,)))))
    assert denied["allowed"] is False
    assert denied["status"]["code"] == 403
    assert denied["status"]["message"] == (
        f'image {BAD} denied by policy "production": repository docker.io/library/nginx is not '
        "in the registry allowlist (registry.redhat.io/**, quay.io/acme/**)"
    )
    allowed = answer(webhook_server, review(workload(kind, pod_spec(GOOD, init=(GOOD,)))))
    assert allowed == {"uid": allowed["uid"], "allowed": True}


def test_update_delete_and_ephemeral_containers(webhook_server: Server) -> None:
    good, bad = workload("Pod", pod_spec(GOOD)), workload("Pod", pod_spec(BAD))
    assert answer(webhook_server, review(bad, operation="UPDATE", old=good))["allowed"] is False
    assert answer(webhook_server, review(good, operation="UPDATE", old=bad))["allowed"] is True
    assert answer(webhook_server, review(bad, operation="DELETE"))["allowed"] is True
    debug = workload("Pod", pod_spec(GOOD, ephemeral=("busybox:1.36",)))
    body = review(debug, operation="UPDATE", old=good, sub_resource="ephemeralcontainers")
    response = answer(webhook_server, body)
    assert response["allowed"] is False
    assert "image busybox:1.36 denied" in response["status"]["message"]


def test_audit_namespace_admits_with_warnings(webhook_server: Server) -> None:
    body = review(workload("Deployment", pod_spec(BAD), namespace="staging"), dry_run=True)
    response = answer(webhook_server, body)
    assert response["allowed"] is True
    assert response["warnings"] == [
        f'image {BAD} would be denied by policy "staging" (audit mode): repository '
        "docker.io/library/nginx is not in the registry allowlist "
        "(registry.redhat.io/**, quay.io/acme/**)"
    ]
    violations = json.loads(response["auditAnnotations"]["audit-violations"])
    assert violations[0]["policy"] == "staging"


def test_unmatched_namespace_is_denied_by_default(webhook_server: Server) -> None:
    response = answer(webhook_server, review(workload("Pod", pod_spec(GOOD), namespace="dev")))
    assert response["allowed"] is False
    assert "no policy governs" in response["status"]["message"]


def test_decision_log_records_the_review(webhook_server: Server) -> None:
    body = review(workload("Job", pod_spec(BAD)), dry_run=True, uid="log-me-1234")
    answer(webhook_server, body)
    (entry,) = webhook_server.log_lines("log-me-1234")
    assert entry["dryRun"] is True
    assert entry["kind"] == "Job"
    assert entry["allowed"] is False
    assert entry["images"][0]["image"] == BAD


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"not json", 400),
        (b'{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}', 400),
    ],
)
def test_bad_bodies(webhook_server: Server, data: bytes, status: int) -> None:
    result = webhook_server.post(data)
    assert result.status_code == status
    assert "error" in result.json()


def test_oversized_body_is_refused_before_it_is_read(webhook_server: Server) -> None:
    """A 1 GiB body announced in Content-Length gets 413 after the first kilobyte."""
    host, port = webhook_server.url.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=str(webhook_server.ca))
    connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=10)
    connection.putrequest("POST", "/validate")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(1024**3))
    connection.endheaders()
    connection.send(b"{" + b" " * 1023)
    result = connection.getresponse()
    assert result.status == 413
    assert json.loads(result.read()) == {"error": "the body is larger than 4194304 bytes"}
    connection.close()
    assert webhook_server.get("/healthz").status_code == 200


_valid = json.dumps(review(workload("Deployment", pod_spec(BAD, GOOD)))).encode()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.integers(0, len(_valid)).map(lambda n: _valid[:n])
    | st.binary(max_size=300)
    | st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=12),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
        max_leaves=20,
    ).map(
        lambda v: json.dumps(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": v}
        ).encode()
    )
)
def test_random_and_truncated_bodies_never_break_the_server(
    webhook_server: Server, data: bytes
) -> None:
    result = webhook_server.post(data)
    assert result.status_code in (200, 400)


MODELS = "ghcr.io/acme/models:7"


@pytest.mark.parametrize("kind", sorted(RESOURCES))
def test_an_image_volume_outside_the_allowlist_is_denied(webhook_server: Server, kind: str) -> None:
    spec = pod_spec(GOOD, init=(GOOD,), volumes=(MODELS,))
    denied = answer(webhook_server, review(workload(kind, spec)))
    assert denied["allowed"] is False
    assert denied["status"]["message"] == (
        f'image {MODELS} denied by policy "production": repository ghcr.io/acme/models is not '
        'in the registry allowlist (registry.redhat.io/**, quay.io/acme/**) (image volume "data-0")'
    )
    allowed = answer(webhook_server, review(workload(kind, pod_spec(GOOD, volumes=(GOOD,)))))
    assert allowed["allowed"] is True


def test_the_decision_log_names_the_image_volume(webhook_server: Server) -> None:
    body = review(workload("CronJob", pod_spec(GOOD, volumes=(MODELS,))), uid="volume-log-1")
    answer(webhook_server, body)
    (entry,) = webhook_server.log_lines("volume-log-1")
    (image,) = [i for i in entry["images"] if i["image"] == MODELS]
    assert image["volumes"] == ["data-0"]
    assert image["containers"] == []
    assert image["failed"][0]["check"] == "allowlist"


def _finalizer_removed(obj: dict) -> dict:
    new = json.loads(json.dumps(obj))
    new["metadata"]["finalizers"] = []
    return new


def _not_rechecked(server: Server, reason: str) -> float:
    sample = f'trustgate_not_rechecked_updates_total{{reason="{reason}"}} '
    lines = [line for line in server.get("/metrics").text.splitlines() if line.startswith(sample)]
    return float(lines[0].split()[-1]) if lines else 0.0


def test_an_update_that_changes_no_image_is_admitted_without_a_recheck(
    webhook_server: Server,
) -> None:
    """A Pod admitted before the policy denied its image can still lose its finalizer."""
    before = {r: _not_rechecked(webhook_server, r) for r in ("unchanged", "deleting")}
    old = workload("Pod", pod_spec(BAD, volumes=(MODELS,)))
    old["metadata"]["finalizers"] = ["example.com/cleanup"]
    body = review(_finalizer_removed(old), operation="UPDATE", old=old, uid="unchanged-1")
    response = answer(webhook_server, body)
    assert response["allowed"] is True
    assert response["auditAnnotations"] == {"not-rechecked": "no image changed"}
    (entry,) = webhook_server.log_lines("unchanged-1")
    assert entry["note"] == "UPDATE admitted without a re-check: no image changed"
    assert entry["notRechecked"] == [BAD, MODELS]

    deleting = workload("Deployment", pod_spec(BAD))
    deleting["metadata"].update(deletionTimestamp="2026-11-28T23:00:00Z", finalizers=["x/y"])
    body = review(_finalizer_removed(deleting), operation="UPDATE", old=deleting)
    response = answer(webhook_server, body)
    assert response["allowed"] is True
    assert response["auditAnnotations"] == {"not-rechecked": "the object is being deleted"}
    assert _not_rechecked(webhook_server, "unchanged") == before["unchanged"] + 1
    assert _not_rechecked(webhook_server, "deleting") == before["deleting"] + 1


@pytest.mark.parametrize(
    ("old_spec", "new_spec"),
    [
        (pod_spec(GOOD), pod_spec(BAD)),
        (pod_spec(GOOD, volumes=(GOOD,)), pod_spec(GOOD, volumes=(MODELS,))),
        (pod_spec(BAD), pod_spec(BAD, GOOD)),
        (pod_spec(GOOD, BAD), pod_spec(BAD, GOOD)),
    ],
    ids=["image swapped", "volume image swapped", "container added", "images moved"],
)
def test_an_update_that_changes_an_image_is_still_checked(
    webhook_server: Server, old_spec: dict, new_spec: dict
) -> None:
    old, new = workload("Deployment", old_spec), workload("Deployment", new_spec)
    old["metadata"]["finalizers"] = ["example.com/cleanup"]  # a metadata change rides along
    response = answer(webhook_server, review(new, operation="UPDATE", old=old))
    assert response["allowed"] is False
    assert "denied by policy" in response["status"]["message"]
    assert "auditAnnotations" not in response


def test_recheck_unchanged_images_setting_judges_every_update(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "production.yaml").write_text(policy_yaml())
    server = start_server(tmp_path, policies, "admission: {recheckUnchangedImages: true}\n")
    try:
        old = workload("Pod", pod_spec(BAD))
        old["metadata"].update(deletionTimestamp="2026-11-28T23:00:00Z", finalizers=["x/y"])
        body = review(_finalizer_removed(old), operation="UPDATE", old=old)
        response = answer(server, body)
        assert response["allowed"] is False
        assert f"image {BAD} denied" in response["status"]["message"]
    finally:
        assert stop_server(server) == 0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("apiVersion", ["apps/v1"], "apiVersion must be a string, got list"),
        ("apiVersion", {"group": "apps"}, "apiVersion must be a string, got dict"),
        ("kind", ["Deployment"], "kind must be a string, got list"),
        ("metadata", ["web"], "metadata must be a mapping, got list"),
    ],
)
def test_a_mistyped_object_is_denied_not_a_server_error(
    webhook_server: Server, field: str, value: object, message: str
) -> None:
    body = review(workload("Deployment", pod_spec(GOOD)))
    body["request"]["object"][field] = value
    response = answer(webhook_server, body)
    assert response["allowed"] is False
    assert response["status"] == {
        "code": 403,
        "reason": "Forbidden",
        "message": f"the Deployment cannot be judged: {message}",
    }
    assert "Traceback" not in webhook_server.log_text()


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=mutated_reviews(GOOD))
def test_a_field_of_the_wrong_type_anywhere_never_breaks_the_server(
    webhook_server: Server, body: dict
) -> None:
    result = webhook_server.post(json.dumps(body))
    assert "Traceback" not in result.text
    assert result.status_code in (200, 400), result.text
    if result.status_code == 200:
        payload = result.json()
        assert payload["response"].get("status", {}).get("code", 403) == 403
        assert not admitted_by_accident(body, payload)


def test_server_is_healthy_and_counts(webhook_server: Server) -> None:
    assert webhook_server.get("/healthz").json() == {"status": "ok"}
    assert webhook_server.get("/readyz").json()["policies"] == 2
    metrics = webhook_server.get("/metrics").text
    assert 'trustgate_admission_requests_total{decision="denied"}' in metrics
    assert 'trustgate_admission_requests_total{decision="error"}' not in metrics
    assert "trustgate_admission_duration_seconds_bucket" in metrics


def test_policy_reload_including_configmap_swap(tmp_path: Path) -> None:
    """A ConfigMap volume: files are links into ..data, swapped atomically on update."""
    policies = tmp_path / "policies"
    version1 = policies / "..2026_11_01_00_00_00.000000001"
    version1.mkdir(parents=True)
    (version1 / "prod.yaml").write_text(policy_yaml(registries='["quay.io/acme/**"]'))
    (policies / "..data").symlink_to(version1.name)
    (policies / "prod.yaml").symlink_to("..data/prod.yaml")
    server = start_server(tmp_path, policies)
    try:
        body = review(workload("Pod", pod_spec(GOOD)))
        assert answer(server, body)["allowed"] is False

        version2 = policies / "..2026_11_01_00_05_00.000000002"
        version2.mkdir()
        (version2 / "prod.yaml").write_text(policy_yaml(registries='["registry.redhat.io/**"]'))
        (policies / "..data_tmp").symlink_to(version2.name)
        (policies / "..data_tmp").rename(policies / "..data")
        assert wait_for(lambda: answer(server, review(workload("Pod", pod_spec(GOOD))))["allowed"])

        version3 = policies / "..2026_11_01_00_10_00.000000003"
        version3.mkdir()
        (version3 / "prod.yaml").write_text("apiVersion: trustgate.dev/v1alpha1\nkind: Nope\n")
        (policies / "..data_tmp").symlink_to(version3.name)
        (policies / "..data_tmp").rename(policies / "..data")
        assert wait_for(lambda: server.get("/readyz").json()["lastError"] is not None)
        assert "prod.yaml" in server.get("/readyz").json()["lastError"]
        assert answer(server, review(workload("Pod", pod_spec(GOOD))))["allowed"] is True
        assert "trustgate_policy_reload_success 0.0" in server.get("/metrics").text
    finally:
        assert stop_server(server) == 0
