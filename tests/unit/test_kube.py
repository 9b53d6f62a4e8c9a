"""webhook.kube and ``trustgate audit --cluster`` against a stand-in API server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kube import policy_yaml
from tests.kubeapi import ApiServer, kubeconfig, start_api_server, stored
from webhook import kube
from webhook.cli import main
from webhook.errors import KubeError
from webhook.kube import KubeClient, cluster_manifests, from_kubeconfig, load_credentials

GOOD = "quay.io/acme/api:1.0"
BAD = "docker.io/library/nginx:1.27"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    server = start_api_server(tmp_path_factory.mktemp("kubeapi"))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def cluster(api: ApiServer) -> Iterator[ApiServer]:
    """A small production cluster: one Deployment runs an image the policy refuses."""
    api.objects = {
        "deployments": [
            stored("Deployment", "api", "prod-web", GOOD),
            stored("Deployment", "legacy", "prod-web", GOOD, BAD),
        ],
        "replicasets": [
            stored("ReplicaSet", "api-6d9f", "prod-web", GOOD, owner=("Deployment", "api")),
            stored("ReplicaSet", "legacy-77c", "prod-web", BAD, owner=("Deployment", "legacy")),
        ],
        "statefulsets": [stored("StatefulSet", "db", "prod-data", GOOD)],
        "daemonsets": [],
        "replicationcontrollers": [],
        "cronjobs": [stored("CronJob", "report", "prod-web", GOOD)],
        "jobs": [stored("Job", "report-2891", "prod-web", GOOD, owner=("CronJob", "report"))],
        "pods": [
            stored("Pod", f"api-6d9f-{i}", "prod-web", GOOD, owner=("ReplicaSet", "api-6d9f"))
            for i in range(5)
        ]
        + [
            stored("Pod", "debug", "prod-web", BAD),
            stored("Pod", "rollout-1", "prod-web", GOOD, owner=("Rollout", "canary")),
            stored("Pod", "etcd", "kube-system", "registry.k8s.io/etcd:3.5"),
        ],
    }
    api.forbidden = set()
    api.requests.clear()
    api.expire_continue = False
    yield api


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "prod.yaml").write_text(policy_yaml(namespaces='["prod-*", "kube-system"]'))
    return directory


def token_credentials(api: ApiServer, tmp_path: Path) -> kube.Credentials:
    return from_kubeconfig(kubeconfig(tmp_path / "config", api, token=api.token))


# --- the client -----------------------------------------------------------------------


def test_lists_every_page(api: ApiServer, tmp_path: Path) -> None:
    pods = next(r for r in kube.WORKLOADS if r.plural == "pods")
    with KubeClient(token_credentials(api, tmp_path), page_size=3) as client:
        items = list(client.list(pods))
    assert len(items) == 8
    assert {(i["apiVersion"], i["kind"]) for i in items} == {("v1", "Pod")}
    pages = [r for r in api.requests if r.path == "/api/v1/pods"]
    assert [r.query.get("limit") for r in pages] == ["3", "3", "3"]
    assert "continue" not in pages[0].query
    assert all("continue" in r.query for r in pages[1:])
    assert all(r.authorization == f"Bearer {api.token}" for r in pages)


def test_one_namespace(api: ApiServer, tmp_path: Path) -> None:
    with KubeClient(token_credentials(api, tmp_path)) as client:
        manifests = list(cluster_manifests(client, namespace="prod-data"))
    assert [(m.object["kind"], m.object["metadata"]["name"]) for m in manifests] == [
        ("StatefulSet", "db")
    ]
    assert {r.path for r in api.requests} >= {
        "/apis/apps/v1/namespaces/prod-data/deployments",
        "/apis/batch/v1/namespaces/prod-data/cronjobs",
        "/api/v1/namespaces/prod-data/pods",
    }


def test_owned_objects_are_judged_through_their_owner(api: ApiServer, tmp_path: Path) -> None:
    lines: list[str] = []
    with KubeClient(token_credentials(api, tmp_path), page_size=2) as client:
        manifests = list(
            cluster_manifests(
                client, exclude_namespaces=frozenset({"kube-system"}), progress=lines.append
            )
        )
    names = [(m.object["kind"], m.object["metadata"]["name"]) for m in manifests]
    assert names == [
        ("Deployment", "api"),
        ("Deployment", "legacy"),
        ("StatefulSet", "db"),
        ("CronJob", "report"),
        ("Pod", "debug"),
        ("Pod", "rollout-1"),  # its controller is not a kind the audit lists
    ]
    assert "pods: 2 judged, 6 owned by another workload or excluded" in lines
    assert "deployments: 2 judged" in lines


def test_client_certificate_and_ca_file(api: ApiServer, tmp_path: Path) -> None:
    client_files = api.client_certificate(tmp_path)
    config = kubeconfig(tmp_path / "config", api, client=client_files, inline_ca=False)
    credentials = from_kubeconfig(config)
    assert credentials.client_cert == tuple(str(p) for p in client_files)
    with KubeClient(credentials) as client:
        assert len(list(client.list(kube.WORKLOADS[0]))) == 2
    assert api.requests[-1].client_cert and api.requests[-1].authorization is None


def test_inline_pem_files_are_removed_on_close(api: ApiServer, tmp_path: Path) -> None:
    credentials = token_credentials(api, tmp_path)
    (ca,) = credentials.temporary
    assert ca.read_bytes() == api.ca.read_bytes()
    KubeClient(credentials).close()
    assert not ca.exists()


def test_in_cluster_service_account(
    api: ApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("rotated-token\n")
    (account / "ca.crt").write_bytes(api.ca.read_bytes())
    monkeypatch.setattr(kube, "SERVICE_ACCOUNT", account)
    host, port = api.url.removeprefix("https://").split(":")
    env = {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}
    credentials = load_credentials(None, None, env)
    assert credentials.source == "in-cluster service account"
    api.token = "rotated-token"
    try:
        with KubeClient(credentials) as client:
            assert len(list(client.list(kube.WORKLOADS[0]))) == 2
            # The token file is read for every request: a rotated token is used at once.
            (account / "token").write_text("rotated-again")
            api.token = "rotated-again"
            assert len(list(client.list(kube.WORKLOADS[0]))) == 2
    finally:
        api.token = "sa-token-1"


def test_credentials_search_order(api: ApiServer, tmp_path: Path) -> None:
    first = kubeconfig(tmp_path / "first", api, token="a", context="first")
    second = kubeconfig(tmp_path / "second", api, token="b", context="second")
    env = {"KUBECONFIG": f"{tmp_path / 'missing'}:{first}:{second}", "HOME": str(tmp_path)}
    assert load_credentials(None, None, env).token == "a"
    assert load_credentials(second, None, env).token == "b"
    home = tmp_path / ".kube"
    home.mkdir()
    kubeconfig(home / "config", api, token="c")
    assert load_credentials(None, None, {"HOME": str(tmp_path)}).token == "c"
    with pytest.raises(KubeError, match="no Kubernetes configuration"):
        load_credentials(None, None, {"HOME": str(tmp_path / "nowhere")})


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["users"][0]["user"].update(exec={"command": "aws"}), "plug-in"),
        (lambda d: d.update({"current-context": "other"}), "no context named 'other'"),
        (lambda d: d["clusters"][0]["cluster"].pop("server"), "has no server"),
        (lambda d: d["users"][0]["user"].update({"client-key": "k.pem"}), "key alone"),
        (
            lambda d: d["clusters"][0]["cluster"].update({"certificate-authority-data": "!"}),
            "not base64",
        ),
    ],
)
def test_unusable_kubeconfig(api: ApiServer, tmp_path: Path, edit, message: str) -> None:
    path = kubeconfig(tmp_path / "config", api, token="t")
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))
    with pytest.raises(KubeError, match=message):
        from_kubeconfig(path)


def test_insecure_skip_tls_verify(api: ApiServer, tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", api, token="t", inline_ca=False)
    document = json.loads(path.read_text())
    document["clusters"][0]["cluster"] = {"server": api.url, "insecure-skip-tls-verify": True}
    path.write_text(json.dumps(document))
    assert from_kubeconfig(path).verify is False


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda api: api.forbidden.add("cronjobs"), "listing cronjobs: forbidden; the identity"),
        (lambda api: setattr(api, "token", "other"), "listing deployments: not authenticated"),
        (lambda api: setattr(api, "expire_continue", True), "changed too much while it was read"),
    ],
)
def test_refusals_are_clear(api: ApiServer, tmp_path: Path, setup, message: str) -> None:
    setup(api)
    try:
        with (
            KubeClient(
                from_kubeconfig(kubeconfig(tmp_path / "c", api, token="sa-token-1")), page_size=1
            ) as client,
            pytest.raises(KubeError, match=message),
        ):
            list(cluster_manifests(client))
    finally:
        api.token = "sa-token-1"


def test_unreachable_server(tmp_path: Path) -> None:
    credentials = kube.Credentials(server="https://127.0.0.1:9", token="t")
    with KubeClient(credentials) as client, pytest.raises(KubeError, match="cannot reach"):
        list(client.list(kube.WORKLOADS[0]))


# --- trustgate audit --cluster ------------------------------------------------------------


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
    assert "1 images: 1 allowed, 0 warned, 0 denied" in out


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
    monkeypatch.setattr(kube, "SERVICE_ACCOUNT", account)
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
