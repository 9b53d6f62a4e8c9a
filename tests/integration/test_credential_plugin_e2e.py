"""A kubelet credential provider plug-in end to end: `trustgate serve` logs in with its answer.

The plug-in (tests/support/credential_plugin.py) speaks credentialprovider.kubelet.k8s.io/v1
and answers the token registry's login; the server, configured with the same
CredentialProviderConfig a kubelet reads, admits the private image with it, and a pod's
pull secret still comes first.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Server, small_image, start_server, stop_server
from tests.support.cosign import generate_key, public_pem, push_signature
from tests.support.kube import pod_spec, review, workload
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e

RELEASE = generate_key("ecdsa-p256")
PLUGIN = Path(__file__).resolve().parents[1] / "support" / "credential_plugin.py"


@pytest.fixture(scope="module")
def image(token_registry: Registry) -> str:
    reference, digest = small_image(token_registry, "plugged/app")
    push_signature(token_registry, "plugged/app", digest, RELEASE, reference=reference)
    return reference


@pytest.fixture(scope="module")
def server(
    token_registry: Registry, image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    assert token_registry.username is not None and token_registry.password is not None
    tmp = tmp_path_factory.mktemp("plugin-e2e")
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    (bin_dir / "registry-credential-provider").symlink_to(PLUGIN)
    (tmp / "providers.yaml").write_text(
        "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n"
        "  - name: registry-credential-provider\n"
        f'    matchImages: ["{token_registry.host}"]\n'
        "    defaultCacheDuration: 10m\n"
        "    apiVersion: credentialprovider.kubelet.k8s.io/v1\n"
        f"    args: [--log, {tmp / 'runs.log'}]\n"
        "    env:\n"
        f"      - {{name: PLUGIN_USERNAME, value: {token_registry.username}}}\n"
        f"      - {{name: PLUGIN_PASSWORD, value: {token_registry.password}}}\n"
    )
    policies = tmp / "policies"
    (policies / "keys").mkdir(parents=True)
    (policies / "keys" / "release.pub").write_text(public_pem(RELEASE))
    (policies / "signed.yaml").write_text(
        "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\n"
        "metadata: {name: signed}\nspec:\n  mode: enforce\n"
        f'  registries: ["{token_registry.host}/plugged/**"]\n'
        "  signatures:\n    authorities:\n"
        "      - name: release\n        key: {file: keys/release.pub}\n"
    )  # fmt: skip
    config = (
        "policies: {reloadIntervalSeconds: 0}\n"
        f'registries: {{"{token_registry.host}": {{insecure: true}}}}\n'
        "credentials:\n"
        f"  kubeletPlugins: {{config: {tmp / 'providers.yaml'}, binDir: {bin_dir}}}\n"
    )
    running = start_server(tmp, policies, config)
    yield running
    assert stop_server(running) == 0


def judged(server: Server, image: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    uid = str(uuid.uuid4())
    body = review(workload("Deployment", pod_spec(image), namespace="apps"), uid=uid)
    result = server.post(json.dumps(body), timeout=30)
    assert result.status_code == 200, result.text
    return result.json()["response"], server.log_lines(uid)


def test_the_plugins_login_admits_the_private_image(server: Server, image: str) -> None:
    response, lines = judged(server, image)
    assert response["allowed"] is True, response
    assert lines[-1]["images"][0]["login"] == "plugin registry-credential-provider"


def test_the_plugins_answer_serves_the_registry_for_its_cache_duration(
    server: Server, image: str, token_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> None:
    judged(server, image)
    runs = next(Path(tmp_path_factory.getbasetemp()).glob("plugin-e2e*/runs.log"))
    before = len(runs.read_text().splitlines())
    assert before >= 1
    # Another image of the same registry: a registry call, and the answer (cacheKeyType
    # Registry) is used again rather than the plug-in run again.
    second, digest = small_image(token_registry, "plugged/second")
    push_signature(token_registry, "plugged/second", digest, RELEASE, reference=second)
    response, lines = judged(server, second)
    assert response["allowed"] is True, response
    assert lines[-1]["images"][0]["login"] == "plugin registry-credential-provider"
    assert len(runs.read_text().splitlines()) == before
