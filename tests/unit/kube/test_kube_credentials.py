"""webhook.kube.credentials: kubeconfigs, contexts, exec plug-ins and the in-cluster account.

Each is proven by listing from a stand-in API server with what was found.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import webhook.kube.credentials as kube_credentials
from tests.support.kubeapi import (
    EXEC_V1BETA1,
    ApiServer,
    exec_plugin,
    kubeconfig,
    plugin_calls,
)
from tests.support.kubecluster import exec_user
from webhook.core.errors import KubeError
from webhook.kube.client import KubeClient
from webhook.kube.credentials import Credentials, from_kubeconfig, load_credentials
from webhook.kube.workloads import WORKLOADS


def token_of(credentials: Credentials) -> str | None:
    assert credentials.config.user is not None
    return credentials.config.user.token


def test_in_cluster_service_account(
    api: ApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("rotated-token\n")
    (account / "ca.crt").write_bytes(api.ca.read_bytes())
    (account / "namespace").write_text("trustgate")
    monkeypatch.setattr(kube_credentials, "SERVICE_ACCOUNT", account)
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
            assert len(list(client.list(WORKLOADS[0]))) == 2
            # The kubelet rotates the token: the server refuses the old one, the
            # file is read again, and the request is retried with the new token.
            (account / "token").write_text("rotated-again")
            api.token = "rotated-again"
            assert len(list(client.list(WORKLOADS[0]))) == 2
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
    monkeypatch.setattr(kube_credentials, "SERVICE_ACCOUNT", tmp_path)
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


# --- exec credential plug-ins and contexts ---------------------------------------------


@pytest.mark.parametrize("api_version", [EXEC_V1BETA1, "client.authentication.k8s.io/v1"])
def test_exec_plugin_supplies_the_token(api: ApiServer, tmp_path: Path, api_version: str) -> None:
    """An EKS/GKE/AKS-style kubeconfig: the token comes from running a plug-in."""
    token_file = tmp_path / "token"
    token_file.write_text(api.token)
    script = exec_plugin(tmp_path, token_file, api_version=api_version)
    config = kubeconfig(tmp_path / "config", api, exec_user=exec_user(script, api_version))
    with KubeClient(from_kubeconfig(config), page_size=2) as client:
        assert len(list(client.list(WORKLOADS[-1]))) == 8
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
            assert len(list(client.list(WORKLOADS[0]))) == 2
            api.token = "after-expiry"
            token_file.write_text("after-expiry")
            assert len(list(client.list(WORKLOADS[0]))) == 2
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
        list(client.list(WORKLOADS[0]))
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
        list(client.list(WORKLOADS[0]))


def test_context_chooses_the_user(api: ApiServer, tmp_path: Path) -> None:
    config = kubeconfig(tmp_path / "config", api, token="wrong", others={"prod-admin": api.token})
    with (
        KubeClient(from_kubeconfig(config)) as client,
        pytest.raises(KubeError, match=r"not authenticated .*\(context audit\)"),
    ):
        list(client.list(WORKLOADS[0]))
    credentials = from_kubeconfig(config, "prod-admin")
    assert credentials.source.endswith("(context prod-admin)")
    with KubeClient(credentials) as client:
        # The context's namespace is the default of namespaced calls, not of the audit:
        # it lists every namespace.
        assert len(list(client.list(WORKLOADS[0]))) == 2
    assert api.requests[-1].path == "/apis/apps/v1/deployments"


def test_a_context_typo_lists_the_contexts_there_are(api: ApiServer, tmp_path: Path) -> None:
    config = kubeconfig(tmp_path / "config", api, token="t", others={"prod-admin": api.token})
    message = (
        r"no context named 'prod-admn'; did you mean --context prod-admin\? "
        r"its contexts: audit, prod-admin \(current-context: audit\)"
    )
    with pytest.raises(KubeError, match=message):
        from_kubeconfig(config, "prod-admn")
    with pytest.raises(KubeError, match=r"no context named 'x'; pass one of its contexts: audit, "):
        from_kubeconfig(config, "x")


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
        assert len(list(client.list(WORKLOADS[0]))) == 2
    user = exec_user(script)
    user["command"] = "./bin/" + script.name
    with_exec = kubeconfig(home / "exec-config", api, exec_user=user)
    with KubeClient(from_kubeconfig(Path("kube") / with_exec.name)) as client:
        assert len(list(client.list(WORKLOADS[0]))) == 2
    assert len(plugin_calls(script)) == 1
