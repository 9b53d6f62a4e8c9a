"""``trustgate audit --output policyreport``: OpenReports and wgpolicyk8s reports.

Every report is checked against the CustomResourceDefinition its group publishes
(tests/data/policyreport, copied from openreports/reports-api and
kubernetes-sigs/wg-policy-prototypes), refusing fields the CRD does not define:
an API server would drop them silently.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support.kube import pod_spec, policy_yaml, workload
from tests.support.kubeapi import (
    ApiServer,
    CustomResource,
    kubeconfig,
    start_api_server,
    stored,
    strict,
)
from webhook.cli.audit import Manifest, Row, audit
from webhook.cli.main import main
from webhook.cli.policyreport import GROUPS, reports
from webhook.config import Config
from webhook.policy.loader import load_directory
from webhook.services import build_engine

NOW = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.UTC)
GOOD = "quay.io/acme/api:1.0"
BAD = "docker.io/library/nginx:1.27"
#: (group, version, plural) of each group's namespaced and cluster-scoped report.
KINDS = {
    "openreports": (
        ("openreports.io", "v1alpha1", "reports"),
        ("openreports.io", "v1alpha1", "clusterreports"),
    ),
    "wgpolicyk8s": (
        ("wgpolicyk8s.io", "v1alpha2", "policyreports"),
        ("wgpolicyk8s.io", "v1alpha2", "clusterpolicyreports"),
    ),
}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    server = start_api_server(tmp_path_factory.mktemp("kubeapi"))
    yield server
    server.stop()


def crd(api: ApiServer, group: str, cluster: bool = False) -> CustomResource:
    return api.crds[KINDS[group][1 if cluster else 0]]


def assert_valid(api: ApiServer, group: str, obj: dict[str, Any]) -> None:
    names = GROUPS[group]  # type: ignore[index]
    cluster = obj["kind"] == names.cluster_kind
    assert obj["kind"] == (names.cluster_kind if cluster else names.kind)
    jsonschema.Draft4Validator(strict(crd(api, group, cluster).schema)).validate(obj)
    name = obj["metadata"]["name"]
    assert len(name) <= 253 and name == name.lower()


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "prod.yaml").write_text(policy_yaml())
    (directory / "audit.yaml").write_text(
        policy_yaml("canary", mode="audit", namespaces='["prod-*"]', registries='["quay.io/**"]')
    )
    return directory


def judged(policies: Path, *objects: dict[str, Any]) -> list[Row]:
    policy_set = load_directory(policies)
    engine = build_engine(lambda: policy_set, Config())
    manifests = [Manifest("deploy.yaml", i, obj) for i, obj in enumerate(objects, 1)]
    return audit(engine, manifests, namespace="default")


@pytest.mark.parametrize("group", ["openreports", "wgpolicyk8s"])
def test_reports_follow_the_crd_schema(api: ApiServer, policies: Path, group: str) -> None:
    rows = judged(
        policies,
        workload("Deployment", pod_spec(GOOD, BAD), name="legacy"),
        workload("Deployment", pod_spec(GOOD), name="api"),
        workload("Pod", pod_spec("ghcr.io/other/tool:1"), name="debug", namespace="dev"),
    )
    rows.append(
        Row("broken.yaml", "-", "", "-", "-", "error", ("broken.yaml, document 2: not YAML",))
    )
    objects = reports(rows, group=group, now=NOW)  # type: ignore[arg-type]
    for obj in objects:
        assert_valid(api, group, obj)
    by_name = {o["metadata"]["name"]: o for o in objects}
    legacy = by_name["trustgate-deployment-legacy"]
    assert legacy["apiVersion"] == GROUPS[group].api_version  # type: ignore[index]
    assert legacy["scope"] == {
        "kind": "Deployment",
        "name": "legacy",
        "namespace": "prod-web",
        "apiVersion": "apps/v1",
    }
    assert legacy["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "trustgate"}
    outcomes = {(r["properties"]["image"], r["policy"]): r for r in legacy["results"]}
    # The enforce policy refuses nginx; the audit policy would (and says so as a warning).
    refused = outcomes[(BAD, "production")]
    assert refused["result"] == "fail" and refused["severity"] == "high"
    assert refused["rule"] == "allowlist"
    assert "not in the registry allowlist" in refused["message"]
    assert outcomes[(BAD, "canary")]["result"] == "warn"
    assert "(audit mode)" in outcomes[(BAD, "canary")]["message"]
    assert outcomes[(GOOD, "production")]["result"] == "pass"
    assert outcomes[(GOOD, "production")]["properties"]["containers"] == "app-0"
    assert legacy["summary"] == {"pass": 2, "fail": 1, "warn": 1, "error": 0, "skip": 0}
    assert all(
        r["timestamp"] == {"seconds": int(NOW.timestamp()), "nanos": 0} for r in legacy["results"]
    )
    # No policy governs namespace dev: defaults.noMatch (deny) refuses the image.
    (debug,) = by_name["trustgate-pod-debug"]["results"]
    assert (debug["policy"], debug["result"]) == ("defaults.noMatch", "fail")
    # A document that could not be read is an error in the cluster-scoped report.
    unreadable = by_name["trustgate-unreadable-documents"]
    assert unreadable["kind"] == GROUPS[group].cluster_kind  # type: ignore[index]
    assert "namespace" not in unreadable["metadata"]
    assert unreadable["results"][0]["result"] == "error"


def test_no_match_allow_is_a_skip_and_names_stay_distinct(api: ApiServer, tmp_path: Path) -> None:
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "prod.yaml").write_text(policy_yaml())
    (directory / "trustgate.yaml").write_text("")
    policy_set = load_directory(directory)
    engine = build_engine(lambda: policy_set, Config(no_match="allow"))
    long = "x" * 250
    objects = [
        workload("Pod", pod_spec(GOOD), name="web", namespace="dev"),
        workload("Pod", pod_spec(GOOD), name=long, namespace="dev"),
        workload("Pod", pod_spec(GOOD), name=long + "y", namespace="dev"),
    ]
    rows = audit(engine, [Manifest("f", i, o) for i, o in enumerate(objects)], namespace="default")
    out = reports(rows, now=NOW)
    assert len({o["metadata"]["name"] for o in out}) == 3
    for obj in out:
        assert_valid(api, "openreports", obj)
        assert [r["result"] for r in obj["results"]] == ["skip"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("group", ["openreports", "wgpolicyk8s"])
def test_audit_prints_reports_kubectl_can_apply(
    api: ApiServer, policies: Path, tmp_path: Path, group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(yaml.safe_dump(workload("Deployment", pod_spec(GOOD, BAD), name="legacy")))
    argv = ["audit", str(manifest), "--policies", str(policies), "-o", "policyreport"]
    code, out, _ = run([*argv, "--report-group", group], capsys)
    assert code == 1
    (obj,) = list(yaml.safe_load_all(out))
    assert_valid(api, group, obj)
    assert obj["summary"]["fail"] == 1


def test_write_reports_needs_a_cluster(
    policies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(yaml.safe_dump(workload("Deployment", pod_spec(GOOD))))
    argv = [
        "audit",
        str(manifest),
        "--policies",
        str(policies),
        "-o",
        "policyreport",
        "--write-reports",
    ]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert "--write-reports needs --cluster and --output policyreport" in err


# --- writing them to the cluster ----------------------------------------------------------


@pytest.fixture
def cluster(api: ApiServer) -> Iterator[ApiServer]:
    api.objects = {
        "deployments": [
            stored("Deployment", "api", "prod-web", GOOD),
            stored("Deployment", "legacy", "prod-web", GOOD, BAD),
        ],
        "pods": [stored("Pod", "etcd", "kube-system", "registry.k8s.io/etcd:3.5")],
    }
    api.custom.clear()
    api.forbidden = set()
    api.requests.clear()
    saved = dict(api.crds)
    yield api
    api.crds = saved


def write(
    api: ApiServer, tmp_path: Path, policies: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str, str]:
    config = kubeconfig(tmp_path / "config", api, token=api.token)
    argv = [
        "audit", "--cluster", "--kubeconfig", str(config), "--policies", str(policies),
        "--exclude-namespace", "kube-system", "-o", "policyreport", "--write-reports", *extra,
    ]  # fmt: skip
    return run(argv, capsys)


def test_cluster_audit_writes_reports_and_removes_stale_ones(
    cluster: ApiServer, tmp_path: Path, policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = cluster
    # A report of a workload deleted since the last run, one in an excluded
    # namespace, and one another tool wrote.
    for name, namespace, labels in (
        ("trustgate-deployment-old", "prod-web", {"app.kubernetes.io/managed-by": "trustgate"}),
        ("trustgate-pod-etcd", "kube-system", {"app.kubernetes.io/managed-by": "trustgate"}),
        ("kyverno-report", "prod-web", {"app.kubernetes.io/managed-by": "kyverno"}),
    ):
        api.custom[("reports", namespace, name)] = {
            "apiVersion": "openreports.io/v1alpha1",
            "kind": "Report",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
        }
    code, out, err = write(api, tmp_path, policies, capsys)
    assert code == 1, err
    assert "wrote 2 Report objects (openreports.io/v1alpha1), deleted 1" in err
    assert set(api.custom) == {
        ("reports", "prod-web", "trustgate-deployment-api"),
        ("reports", "prod-web", "trustgate-deployment-legacy"),
        ("reports", "kube-system", "trustgate-pod-etcd"),
        ("reports", "prod-web", "kyverno-report"),
    }
    legacy = api.custom[("reports", "prod-web", "trustgate-deployment-legacy")]
    assert legacy["summary"]["fail"] == 1
    assert legacy["metadata"]["managedFields"][0]["manager"] == "trustgate"
    applies = [r for r in api.requests if r.method == "PATCH"]
    assert {r.content_type for r in applies} == {"application/apply-patch+yaml"}
    assert all(r.query.get("force") == "true" for r in applies)
    # What was printed is what was written.
    printed = {o["metadata"]["name"]: o for o in yaml.safe_load_all(out)}
    assert printed["trustgate-deployment-legacy"]["results"] == legacy["results"]


def test_cluster_reports_in_the_wgpolicyk8s_group(
    cluster: ApiServer, tmp_path: Path, policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = write(cluster, tmp_path, policies, capsys, "--report-group", "wgpolicyk8s")
    assert code == 1, err
    assert {k[0] for k in cluster.custom} == {"policyreports"}
    assert len(cluster.custom) == 2


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (
            lambda api: api.forbidden.add("reports"),
            "writing reports: forbidden; the identity needs 'patch' on reports",
        ),
        (
            lambda api: api.crds.pop(("openreports.io", "v1alpha1", "reports")),
            "writing reports: not found (does the API server serve "
            "openreports.io/v1alpha1 reports?)",
        ),
    ],
)
def test_report_writes_that_fail_say_why(
    cluster: ApiServer,
    tmp_path: Path,
    policies: Path,
    capsys: pytest.CaptureFixture[str],
    setup: Any,
    message: str,
) -> None:
    setup(cluster)
    code, _, err = write(cluster, tmp_path, policies, capsys)
    assert code == 2
    assert message in err
    assert not cluster.custom


def test_stand_in_refuses_what_the_crd_does_not_allow(cluster: ApiServer, tmp_path: Path) -> None:
    """The schema check is real: a report with a result the CRD does not know is refused."""
    from webhook.core.errors import KubeError
    from webhook.kube.client import KubeClient, Resource
    from webhook.kube.credentials import from_kubeconfig

    bad = {
        "apiVersion": "openreports.io/v1alpha1",
        "kind": "Report",
        "metadata": {"name": "r", "namespace": "prod-web"},
        "results": [{"policy": "p", "result": "denied"}],
        "scope": {"kind": "Deployment", "name": "x", "uid": 5},
    }
    credentials = from_kubeconfig(kubeconfig(tmp_path / "c", cluster, token=cluster.token))
    with KubeClient(credentials) as client, pytest.raises(KubeError) as caught:
        client.apply(Resource("Report", "openreports.io/v1alpha1", "reports"), bad)
    assert "results.0.result: 'denied' is not one of" in str(caught.value)
    assert "scope.uid: 5 is not of type 'string'" in str(caught.value)
    assert not cluster.custom


def test_names_from_manifests_become_valid_distinct_report_names(
    api: ApiServer, policies: Path
) -> None:
    """A file audit can carry any name; two that differ only in case or underscores stay apart."""
    rows = judged(
        policies,
        workload("Deployment", pod_spec(GOOD), name="Web_App"),
        workload("Deployment", pod_spec(GOOD), name="web-app"),
        workload("Deployment", pod_spec(GOOD), name="web.app"),
    )
    out = reports(rows, now=NOW)
    names = [o["metadata"]["name"] for o in out]
    assert len(set(names)) == 3
    assert "trustgate-deployment-web-app" in names and "trustgate-deployment-web.app" in names
    for obj in out:
        assert_valid(api, "openreports", obj)
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", obj["metadata"]["name"])
    assert {o["scope"]["name"] for o in out} == {"Web_App", "web-app", "web.app"}
