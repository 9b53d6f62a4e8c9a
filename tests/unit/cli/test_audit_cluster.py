"""``trustgate audit --cluster`` against a stand-in API server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import webhook.kube.credentials as kube_credentials
from tests.support.kube import policy_yaml
from tests.support.kubeapi import (
    ApiServer,
    exec_plugin,
    kubeconfig,
    plugin_calls,
    start_api_server,
    stored,
)
from tests.support.kubecluster import BAD, GOOD, exec_user, fill_production
from webhook.cli.main import main


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    server = start_api_server(tmp_path_factory.mktemp("kubeapi"))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def cluster(api: ApiServer) -> Iterator[ApiServer]:
    """A small production cluster: one Deployment runs an image the policy refuses."""
    fill_production(api)
    yield api


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "prod.yaml").write_text(policy_yaml(namespaces='["prod-*", "kube-system"]'))
    return directory


def run(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, env: dict
) -> tuple[int, str, str]:
    for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_audit_cluster_reports_what_would_be_denied(
    api: ApiServer,
    tmp_path: Path,
    policies: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = kubeconfig(tmp_path / "config", api, token=api.token)
    argv = ["audit", "--cluster", "--policies", str(policies), "--output", "json"]
    code, out, err = run(argv, capsys, monkeypatch, {"KUBECONFIG": str(config)})
    assert code == 1
    rows = json.loads(out)
    denied = {
        (r["kind"], r["namespace"], r["name"], r["image"])
        for r in rows
        if r["decision"] == "denied"
    }
    assert denied == {
        ("Deployment", "prod-web", "legacy", BAD),
        ("Pod", "prod-web", "debug", BAD),
        ("Pod", "kube-system", "etcd", "registry.k8s.io/etcd:3.5"),
    }
    legacy = next(r for r in rows if r["name"] == "legacy" and r["image"] == BAD)
    assert "not in the registry allowlist" in legacy["reasons"][0]
    assert {r["source"] for r in rows} == {"cluster"}
    assert f"auditing {api.url}" in err
    assert "trustgate: deployments: 2 judged" in err
    assert "trustgate: pods: 3 judged, 5 owned by another workload or excluded" in err


def test_audit_cluster_one_namespace_clean(
    api: ApiServer,
    tmp_path: Path,
    policies: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = kubeconfig(tmp_path / "config", api, token=api.token)
    argv = [
        "audit",
        "--cluster",
        "--kubeconfig",
        str(config),
        "-n",
        "prod-data",
        "--policies",
        str(policies),
    ]
    code, out, _ = run(argv, capsys, monkeypatch, {})
    assert code == 0
    assert "StatefulSet/db" in out
    assert "1 image: 1 allowed, 0 warned, 0 denied" in out


def test_audit_cluster_excludes_namespaces_as_the_webhook_does(
    api: ApiServer,
    tmp_path: Path,
    policies: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = kubeconfig(tmp_path / "config", api, token=api.token)
    argv = [
        "audit", "--cluster", "--kubeconfig", str(config), "--policies", str(policies),
        "--exclude-namespace", "kube-system", "--output", "junit",
    ]  # fmt: skip
    code, out, _ = run(argv, capsys, monkeypatch, {})
    assert code == 1
    assert "etcd" not in out
    assert 'failures="2"' in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["audit"], "give manifest paths or --cluster"),
        (["audit", "--cluster", "deploy/"], "give manifest paths or --cluster"),
        (["audit", "--cluster"], "no Kubernetes configuration"),
    ],
)
def test_audit_usage(
    argv: list[str],
    message: str,
    policies: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, _, err = run(
        [*argv, "--policies", str(policies)], capsys, monkeypatch, {"HOME": str(tmp_path)}
    )
    assert code == 2
    assert message in err


def test_audit_cluster_in_a_pod(
    api: ApiServer,
    tmp_path: Path,
    policies: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the chart's CronJob runs: no kubeconfig, the pod's service account."""
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(api.token)
    (account / "ca.crt").write_bytes(api.ca.read_bytes())
    (account / "namespace").write_text("trustgate")
    monkeypatch.setattr(kube_credentials, "SERVICE_ACCOUNT", account)
    host, port = api.url.removeprefix("https://").split(":")
    env = {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port, "HOME": str(tmp_path)}
    code, out, err = run(
        ["audit", "--cluster", "--policies", str(policies), "-n", "prod-web"],
        capsys,
        monkeypatch,
        env,
    )
    assert code == 1
    assert "in-cluster service account" in err
    assert "Deployment/legacy" in out


def test_audit_cluster_reports_a_grade_that_has_dropped(
    api: ApiServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Admitted when deployed, denied today: the fix it lacks has aged its grade to F."""
    digest = "sha256:" + "4f" * 32
    fresh, stale = f"quay.io/acme/api@{digest}", f"quay.io/acme/legacy@{digest}"
    api.objects = {
        "deployments": [
            stored("Deployment", "api", "prod-web", fresh),
            stored("Deployment", "legacy", "prod-web", stale),
        ]
    }
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "prod.yaml").write_text(
        "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: production}\n"
        "spec:\n  mode: enforce\n  match: {namespaces: ['prod-*']}\n"
        "  registries: ['quay.io/acme/**']\n"
        "  freshness: {minimumGrade: B, sources: [static]}\n"
    )
    grades = tmp_path / "grades.yaml"
    grades.write_text(
        "grades:\n"
        "  - image: quay.io/acme/legacy\n"
        "    fixes: [{id: RHSA-2024:1234, severity: Critical, released: '2024-05-01'}]\n"
        "  - image: quay.io/acme/**\n    grade: A\n"
    )
    config = tmp_path / "trustgate.yaml"
    config.write_text(f"freshness: {{static: {{file: {grades}}}}}\n")
    kc = kubeconfig(tmp_path / "kc", api, token=api.token)
    argv = [
        "audit", "--cluster", "--kubeconfig", str(kc),
        "--policies", str(policies), "--config", str(config), "--output", "json",
    ]  # fmt: skip
    code, out, _ = run(argv, capsys, monkeypatch, {})
    assert code == 1
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["api"]["decision"] == "allowed"
    assert rows["legacy"]["decision"] == "denied"
    assert "freshness grade F is below the minimum B" in rows["legacy"]["reasons"][0]
    assert "RHSA-2024:1234" in rows["legacy"]["reasons"][0]


def test_audit_cluster_lists_break_glass_workloads_and_exceptions_still_running(
    api: ApiServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    directory = tmp_path / "policies"
    directory.mkdir()
    glass = "  breakGlass: {allowed: true, groups: [oncall]}\n"
    (directory / "prod.yaml").write_text(
        policy_yaml(namespaces='["prod-*", "kube-system"]', extra=glass)
    )
    (directory / "exceptions.yaml").write_text(
        """\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicyException
metadata: {name: control-plane}
spec:
  namespaces: [kube-system]
  images: ["registry.k8s.io/**"]
  policies: [production]
  reason: the control plane's images are mirrored next quarter
  expires: 2999-12-31
"""
    )
    legacy = next(d for d in api.objects["deployments"] if d["metadata"]["name"] == "legacy")
    legacy["metadata"]["annotations"] = {"trustgate.dev/break-glass": "INC-77: rollback"}
    config = kubeconfig(tmp_path / "config", api, token=api.token)
    argv = ["audit", "--cluster", "--policies", str(directory)]
    code, out, _ = run(
        [*argv, "--output", "json"], capsys, monkeypatch, {"KUBECONFIG": str(config)}
    )
    assert code == 1  # the debug Pod is still denied: break-glass is on the Deployment only
    rows = json.loads(out)
    judged = {(r["name"], r["image"]): (r["decision"], r["waivers"]) for r in rows}
    assert judged[("legacy", BAD)] == ("waived", ['break-glass: "INC-77: rollback"'])
    assert judged[("legacy", GOOD)] == ("allowed", [])
    assert judged[("etcd", "registry.k8s.io/etcd:3.5")] == (
        "waived",
        ['exception "control-plane" (expires 2999-12-31)'],
    )
    assert judged[("debug", BAD)] == ("denied", [])
    code, out, _ = run(argv, capsys, monkeypatch, {"KUBECONFIG": str(config)})
    assert "2 run only thanks to an exception or break-glass" in out
    (line,) = [
        line
        for line in out.splitlines()
        if line.startswith("Deployment/legacy") and "WAIVED" in line
    ]
    assert 'break-glass: "INC-77: rollback"' in line


def test_audit_cluster_through_an_exec_plugin_and_a_context(
    api: ApiServer,
    tmp_path: Path,
    policies: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--context`` picks the exec-plug-in user out of a kubeconfig with several."""
    token_file = tmp_path / "token"
    token_file.write_text(api.token)
    script = exec_plugin(tmp_path, token_file)
    config = kubeconfig(
        tmp_path / "config", api, context="eks", exec_user=exec_user(script), others={"dev": "x"}
    )
    document = json.loads(config.read_text())
    document["current-context"] = "dev"
    config.write_text(json.dumps(document))
    argv = ["audit", "--cluster", "--context", "eks", "-n", "prod-web", "--policies", str(policies)]
    code, out, err = run(argv, capsys, monkeypatch, {"KUBECONFIG": str(config)})
    assert code == 1
    assert "Deployment/legacy" in out
    assert "(context eks)" in err
    assert len(plugin_calls(script)) == 1
