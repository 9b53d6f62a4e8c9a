"""``trustgate audit`` of an AdmissionReview judges its request as ``trustgate review`` does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import BAD, GOOD, REPO, run
from tests.support.kube import pod_spec, policy_yaml, review, workload

EXAMPLE = REPO / "docs" / "examples" / "admission-review.json"


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "prod.yaml").write_text(policy_yaml())
    return directory


def test_audit_of_the_example_review_denies_what_review_denies(
    capsys: pytest.CaptureFixture[str],
) -> None:
    shipped = str(REPO / "policies")
    code, out, _ = run(capsys, "review", str(EXAMPLE), "--policies", shipped)
    message = json.loads(out)["response"]["status"]["message"]
    assert code == 1
    code, out, _ = run(capsys, "audit", str(EXAMPLE), "--policies", shipped, "-o", "json")
    (row,) = json.loads(out)
    assert code == 1
    # The request's namespace (prod-web) governs, not the default namespace.
    assert (row["kind"], row["name"], row["namespace"]) == ("Deployment", "web", "prod-web")
    assert row["decision"] == "denied" and row["reasons"] == [message]


def test_audit_follows_the_request_operation_and_namespace(
    policies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The object names no namespace; the request says prod-a, where the policy enforces.
    body = review(workload("Deployment", pod_spec(BAD), namespace="prod-a"))
    body["request"]["object"]["metadata"].pop("namespace")
    (tmp_path / "create.json").write_text(json.dumps(body))
    code, out, _ = run(capsys, "audit", str(tmp_path / "create.json"), "--policies", str(policies))
    assert code == 1 and "DENIED" in out
    # A DELETE is not judged, by review or by audit.
    deleted = review(workload("Deployment", pod_spec(BAD), namespace="prod-a"), operation="DELETE")
    (tmp_path / "delete.json").write_text(json.dumps(deleted))
    code, out, err = run(
        capsys, "audit", str(tmp_path / "delete.json"), "--policies", str(policies)
    )
    # Nothing judged is no pass.
    assert code == 2 and "no workload images found" in out
    assert "nothing was judged" in err


def test_audit_says_when_a_review_cannot_be_judged(
    policies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = {"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {}}
    (tmp_path / "old.json").write_text(json.dumps(old))
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (tmp_path / "old.json").rename(manifests / "old.json")
    (manifests / "good.yaml").write_text(json.dumps(workload("Pod", pod_spec(GOOD))))
    code, out, _ = run(capsys, "audit", str(manifests), "--policies", str(policies))
    assert code == 2
    assert (
        "old.json: document 1: an AdmissionReview that cannot be judged: expected apiVersion" in out
    )
    assert "ERROR" in out and "1 image: 1 allowed" in out
