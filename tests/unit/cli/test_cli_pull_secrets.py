"""``check``, ``review`` and ``audit --cluster`` log in with the workload's pull secrets.

One-shot commands read the secrets from the API server as they are when they run: a
secret changed a moment ago is what the next command uses. Against a real registry
behind a token service and the stand-in API server.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.apistore import ADMIN, Store
from tests.support.cli import run
from tests.support.cosign import generate_key, public_pem, push_signature
from tests.support.kube import pod_spec, review, workload
from tests.support.pullcluster import cluster_api, kubeconfig, login, pull_secret
from tests.support.pullcluster import service_account as account
from tests.support.registry import Registry, default_layer, push_image

RELEASE = generate_key("ecdsa-p256")
#: The stand-in API server of this module (a fixture).
api = cluster_api


@pytest.fixture(scope="module")
def image(token_registry: Registry) -> str:
    digest = push_image(
        token_registry, "cli/app", tag="v1", layers=[default_layer(content=b"cli pull")]
    )
    reference = f"{token_registry.host}/cli/app:v1"
    push_signature(token_registry, "cli/app", digest, RELEASE, reference=reference)
    return reference


@pytest.fixture(scope="module")
def setup(
    api: Store, token_registry: Registry, image: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    tmp = tmp_path_factory.mktemp("cli-pull")
    api.put(pull_secret("ops", "robot", login(token_registry)))
    api.put(account("ops", "builder", "robot"))
    api.put(account("ops", "default"))
    policies = tmp / "policies"
    (policies / "keys").mkdir(parents=True)
    (policies / "keys" / "release.pub").write_text(public_pem(RELEASE))
    (policies / "signed.yaml").write_text(
        "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\n"
        "metadata: {name: signed}\nspec:\n  mode: enforce\n"
        f'  registries: ["{token_registry.host}/cli/**"]\n'
        "  signatures:\n    authorities:\n"
        "      - name: release\n        key: {file: keys/release.pub}\n"
    )  # fmt: skip
    (tmp / "trustgate.yaml").write_text(
        f'registries: {{"{token_registry.host}": {{insecure: true}}}}\n'
        "credentials: {pullSecrets: true}\n"
        f"kubernetes: {{kubeconfig: {kubeconfig(api, tmp)}}}\n"
    )
    return tmp


def flags(setup: Path) -> list[str]:
    return ["--policies", str(setup / "policies"), "--config", str(setup / "trustgate.yaml")]


def test_check_uses_the_service_accounts_secrets(
    setup: Path, image: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "check", *flags(setup), "-n", "ops", "--service-account", "builder", image
    )
    assert code == 0, out
    assert "login: pull secret ops/robot" in out
    code, out, _ = run(capsys, "check", *flags(setup), "-n", "ops", image)
    assert code == 1, out
    assert "tried: anonymous (401 Unauthorized)" in out


def test_review_reads_the_secrets_as_they_are_now(
    setup: Path,
    api: Store,
    image: str,
    token_registry: Registry,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = {**pod_spec(image), "imagePullSecrets": [{"name": "fresh"}]}
    body = setup / "review.json"
    body.write_text(json.dumps(review(workload("Deployment", spec, namespace="ops"))))
    api.put(pull_secret("ops", "fresh", login(token_registry, wrong=True)))
    code, out, _ = run(capsys, "review", *flags(setup), str(body))
    assert code == 1, out
    assert "pull secret ops/fresh (token endpoint" in out
    # Rotated a moment ago: the next command logs in with it, no cache in between.
    api.put(pull_secret("ops", "fresh", login(token_registry)))
    code, out, _ = run(capsys, "review", *flags(setup), str(body))
    assert code == 0, out
    assert json.loads(out)["response"]["allowed"] is True


def test_check_says_when_the_flags_have_no_effect(
    setup: Path, tmp_path: Path, image: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "trustgate.yaml"
    config.write_text("defaults: {noMatch: allow}\n")
    argv = ["--policies", str(setup / "policies"), "--config", str(config)]
    code, _, err = run(capsys, "check", *argv, "--service-account", "builder", image)
    assert code == 1, "without pull secrets the private image cannot be verified"
    assert "--service-account and --pull-secret are unused: credentials.pullSecrets" in err


def test_pull_secrets_without_a_way_to_the_api_server_is_a_clear_error(
    setup: Path,
    tmp_path: Path,
    image: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    config = tmp_path / "trustgate.yaml"
    config.write_text("credentials: {pullSecrets: true}\n")
    argv = ["--policies", str(setup / "policies"), "--config", str(config)]
    code, _, err = run(capsys, "check", *argv, image)
    assert code == 2
    assert "credentials.pullSecrets reads Secrets through the Kubernetes API" in err


def test_audit_cluster_logs_in_with_each_workloads_secrets(
    setup: Path, api: Store, image: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = {**pod_spec(image), "serviceAccountName": "builder"}
    api.put(workload("Deployment", spec, name="built", namespace="ops"))
    api.put(workload("Deployment", pod_spec(image), name="plain", namespace="ops"))
    # The audit lists workloads as the cluster's administrator, and reads pull secrets
    # with what the same kubeconfig holds.
    admin = api.kubeconfig(setup / "kubeconfig-admin", ADMIN)
    code, out, err = run(
        capsys,
        "audit",
        *flags(setup),
        "--cluster",
        "--kubeconfig",
        str(admin),
        "--namespace",
        "ops",
        "--output",
        "json",
    )
    assert out, err
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["built"]["decision"] == "allowed", rows["built"]
    assert "login: pull secret ops/robot" in rows["built"]["notes"]
    assert rows["plain"]["decision"] == "denied", rows["plain"]
    assert code == 1, err


def test_serve_refuses_at_once_pull_secrets_without_a_way_to_the_api_server(
    setup: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    config = tmp_path / "trustgate.yaml"
    config.write_text("credentials: {pullSecrets: true}\n")
    argv = ["--policies", str(setup / "policies"), "--config", str(config)]
    code, _, err = run(capsys, "serve", "--insecure-http", "--port", "0", *argv)
    assert code == 2
    assert "credentials.pullSecrets reads Secrets through the Kubernetes API" in err
