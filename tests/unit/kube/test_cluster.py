"""webhook.kube.cluster and ``trustgate audit --cluster`` against a stand-in API server."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.kube import policy_yaml
from tests.support.kubeapi import (
    EXEC_V1BETA1,
    ApiServer,
    exec_plugin,
    kubeconfig,
    plugin_calls,
    start_api_server,
    stored,
)
from webhook.cli.main import main
from webhook.core.errors import KubeError
from webhook.kube import cluster as kube
from webhook.kube.cluster import KubeClient, cluster_workloads, from_kubeconfig, load_credentials

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


def token_of(credentials: kube.Credentials) -> str | None:
    assert credentials.config.user is not None
    return credentials.config.user.token


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
        manifests = list(cluster_workloads(client, namespace="prod-data"))
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
            cluster_workloads(
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
    with KubeClient(credentials) as client:
        assert len(list(client.list(kube.WORKLOADS[0]))) == 2
    assert api.requests[-1].client_cert and api.requests[-1].authorization is None


def test_in_cluster_service_account(
    api: ApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("rotated-token\n")
    (account / "ca.crt").write_bytes(api.ca.read_bytes())
    (account / "namespace").write_text("trustgate")
    monkeypatch.setattr(kube, "SERVICE_ACCOUNT", account)
    host, port = api.url.removeprefix("https://").split(":")
    env = {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    credentials = load_credentials(None, None, env)
    assert credentials.source == "in-cluster service account"
    assert credentials.server == api.url
    api.token = "rotated-token"
    try:
        with KubeClient(credentials) as client:
            assert len(list(client.list(kube.WORKLOADS[0]))) == 2
            # The kubelet rotates the token: the server refuses the old one, the
            # file is read again, and the request is retried with the new token.
            (account / "token").write_text("rotated-again")
            api.token = "rotated-again"
            assert len(list(client.list(kube.WORKLOADS[0]))) == 2
        assert api.requests[-1].authorization == "Bearer rotated-again"
        assert [r.authorization for r in api.requests[-2:]] == [
            "Bearer rotated-token",
            "Bearer rotated-again",
        ]
    finally:
        api.token = "sa-token-1"


def test_in_cluster_without_service_account_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kube, "SERVICE_ACCOUNT", tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(KubeError, match=f"{tmp_path / 'token'} is missing"):
        load_credentials(None, None, {"KUBERNETES_SERVICE_HOST": "10.96.0.1"})


def test_credentials_search_order(api: ApiServer, tmp_path: Path) -> None:
    first = kubeconfig(tmp_path / "first", api, token="a", context="first")
    second = kubeconfig(tmp_path / "second", api, token="b", context="second")
    env = {"KUBECONFIG": f"{tmp_path / 'missing'}:{first}:{second}", "HOME": str(tmp_path)}
    assert token_of(load_credentials(None, None, env)) == "a"
    assert token_of(load_credentials(second, None, env)) == "b"
    home = tmp_path / ".kube"
    home.mkdir()
    kubeconfig(home / "config", api, token="c")
    assert token_of(load_credentials(None, None, {"HOME": str(tmp_path)})) == "c"
    with pytest.raises(KubeError, match="no Kubernetes configuration"):
        load_credentials(None, None, {"HOME": str(tmp_path / "nowhere")})


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["users"][0]["user"].update(
                {"auth-provider": {"name": "gcp", "config": {}}}
            ),
            "auth-provider 'gcp'.*gke-gcloud-auth-plugin",
        ),
        (
            lambda d: d["users"][0]["user"].update(
                exec={"apiVersion": "client.authentication.k8s.io/v2", "command": "aws"}
            ),
            "exec plug-in 'aws' speaks 'client.authentication.k8s.io/v2'",
        ),
        (lambda d: d["contexts"][0]["context"].update(cluster="gone"), "names no cluster"),
        (lambda d: d["contexts"][0]["context"].update(user="gone"), "names no user 'gone'"),
        (lambda d: d.pop("clusters"), "not a kubeconfig"),
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
    path = kubeconfig(tmp_path / "config", api, token=api.token, inline_ca=False)
    document = json.loads(path.read_text())
    document["clusters"][0]["cluster"] = {"server": api.url, "insecure-skip-tls-verify": True}
    path.write_text(json.dumps(document))
    with KubeClient(from_kubeconfig(path)) as client:
        assert len(list(client.list(kube.WORKLOADS[0]))) == 2


def test_unknown_certificate_authority_is_refused(api: ApiServer, tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", api, token=api.token)
    document = json.loads(path.read_text())
    document["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(
        api.client_ca_cert.read_bytes()
    ).decode()
    path.write_text(json.dumps(document))
    with (
        KubeClient(from_kubeconfig(path)) as client,
        pytest.raises(KubeError, match="cannot reach"),
    ):
        list(client.list(kube.WORKLOADS[0]))
    assert api.requests == []


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
            list(cluster_workloads(client))
    finally:
        api.token = "sa-token-1"


def test_unreachable_server(api: ApiServer, tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", api, token="t")
    document = json.loads(path.read_text())
    document["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:9"
    path.write_text(json.dumps(document))
    credentials = from_kubeconfig(path)
    with KubeClient(credentials) as client, pytest.raises(KubeError, match="cannot reach"):
        list(client.list(kube.WORKLOADS[0]))


# --- exec credential plug-ins and contexts ---------------------------------------------


def exec_user(script: Path, api_version: str = EXEC_V1BETA1) -> dict:
    return {
        "apiVersion": api_version,
        "command": str(script),
        "args": ["token", "--cluster", "prod"],
        "env": [{"name": "CLOUD_PROFILE", "value": "audit"}],
        "interactiveMode": "Never",
        "provideClusterInfo": False,
    }


@pytest.mark.parametrize("api_version", [EXEC_V1BETA1, "client.authentication.k8s.io/v1"])
def test_exec_plugin_supplies_the_token(api: ApiServer, tmp_path: Path, api_version: str) -> None:
    """An EKS/GKE/AKS-style kubeconfig: the token comes from running a plug-in."""
    token_file = tmp_path / "token"
    token_file.write_text(api.token)
    script = exec_plugin(tmp_path, token_file, api_version=api_version)
    config = kubeconfig(tmp_path / "config", api, exec_user=exec_user(script, api_version))
    with KubeClient(from_kubeconfig(config), page_size=2) as client:
        assert len(list(client.list(kube.WORKLOADS[-1]))) == 8
    # One run serves every page; the plug-in got its arguments, its environment
    # and the ExecCredential input kubectl gives it.
    (call,) = plugin_calls(script)
    assert call["argv"] == ["token", "--cluster", "prod"]
    assert call["env"]["CLOUD_PROFILE"] == "audit"
    info = json.loads(call["env"]["KUBERNETES_EXEC_INFO"])
    assert info == {
        "apiVersion": api_version,
        "kind": "ExecCredential",
        "spec": {"interactive": False},
    }
    pages = [r for r in api.requests if r.path == "/api/v1/pods"]
    assert len(pages) == 4
    assert {r.authorization for r in pages} == {f"Bearer {api.token}"}


def test_exec_plugin_runs_again_when_its_token_expires(api: ApiServer, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(api.token)
    script = exec_plugin(tmp_path, token_file)
    config = kubeconfig(tmp_path / "config", api, exec_user=exec_user(script))
    try:
        with KubeClient(from_kubeconfig(config)) as client:
            assert len(list(client.list(kube.WORKLOADS[0]))) == 2
            api.token = "after-expiry"
            token_file.write_text("after-expiry")
            assert len(list(client.list(kube.WORKLOADS[0]))) == 2
    finally:
        api.token = "sa-token-1"
    assert len(plugin_calls(script)) == 2
    assert api.requests[-1].authorization == "Bearer after-expiry"


def test_failing_exec_plugin_says_what_it_said(api: ApiServer, tmp_path: Path) -> None:
    script = exec_plugin(tmp_path, tmp_path / "token", fail=True)
    config = kubeconfig(tmp_path / "config", api, exec_user=exec_user(script))
    with (
        KubeClient(from_kubeconfig(config)) as client,
        pytest.raises(KubeError, match="the SSO session has expired; run: cloud login"),
    ):
        list(client.list(kube.WORKLOADS[0]))
    assert api.requests == []


def test_exec_plugin_token_is_refused(api: ApiServer, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("stale")
    script = exec_plugin(tmp_path, token_file)
    config = kubeconfig(tmp_path / "config", api, exec_user=exec_user(script))
    with (
        KubeClient(from_kubeconfig(config)) as client,
        pytest.raises(KubeError, match="listing deployments: not authenticated"),
    ):
        list(client.list(kube.WORKLOADS[0]))


def test_context_chooses_the_user(api: ApiServer, tmp_path: Path) -> None:
    config = kubeconfig(tmp_path / "config", api, token="wrong", others={"prod-admin": api.token})
    with (
        KubeClient(from_kubeconfig(config)) as client,
        pytest.raises(KubeError, match=r"not authenticated .*\(context audit\)"),
    ):
        list(client.list(kube.WORKLOADS[0]))
    credentials = from_kubeconfig(config, "prod-admin")
    assert credentials.source.endswith("(context prod-admin)")
    with KubeClient(credentials) as client:
        # The context's namespace is the default of namespaced calls, not of the audit:
        # it lists every namespace.
        assert len(list(client.list(kube.WORKLOADS[0]))) == 2
    assert api.requests[-1].path == "/apis/apps/v1/deployments"


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
    (account / "namespace").write_text("trustgate")
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


def test_relative_paths_are_relative_to_the_kubeconfig(
    api: ApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As kubectl resolves them: tokenFile and an exec command like ./bin/login."""
    home = tmp_path / "kube"
    (home / "bin").mkdir(parents=True)
    (home / "token").write_text(api.token)
    script = exec_plugin(home / "bin", home / "token")
    monkeypatch.chdir(tmp_path)  # not the kubeconfig's directory
    with_file = kubeconfig(home / "config", api)
    document = json.loads(with_file.read_text())
    document["users"][0]["user"] = {"tokenFile": "token"}
    with_file.write_text(json.dumps(document))
    with KubeClient(from_kubeconfig(Path("kube/config"))) as client:
        assert len(list(client.list(kube.WORKLOADS[0]))) == 2
    user = exec_user(script)
    user["command"] = "./bin/" + script.name
    with_exec = kubeconfig(home / "exec-config", api, exec_user=user)
    with KubeClient(from_kubeconfig(Path("kube") / with_exec.name)) as client:
        assert len(list(client.list(kube.WORKLOADS[0]))) == 2
    assert len(plugin_calls(script)) == 1
