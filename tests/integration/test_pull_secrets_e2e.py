"""Pull secrets end to end: `trustgate serve` reads them from the API server and logs in with them.

A real docker-registry behind a token service holds a signed image that only its one user
may pull. The stand-in API server (tests/support/apistore.py) holds that user's login as
pull secrets in some namespaces, a wrong one before it in one, and none in another. The
server watches them with trustgate's own service account token and a cluster-wide grant.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import Server, small_image, start_server, stop_server
from tests.support.apistore import Store
from tests.support.cosign import generate_key, public_pem, push_signature
from tests.support.kube import pod_spec, review, workload
from tests.support.pullcluster import cluster_api, kubeconfig, login, pull_secret
from tests.support.pullcluster import service_account as account
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e

RELEASE = generate_key("ecdsa-p256")
#: The stand-in API server of this module (a fixture).
api = cluster_api


@pytest.fixture(scope="module")
def images(token_registry: Registry) -> dict[str, str]:
    """Signed images that only the token registry's user may pull: tag references."""
    found = {}
    for name in ("app", "other", "rotated", "unseen-b", "unseen-d"):
        reference, digest = small_image(token_registry, f"private/{name}")
        push_signature(token_registry, f"private/{name}", digest, RELEASE, reference=reference)
        found[name] = reference
        found[f"{name}@"] = f"{token_registry.host}/private/{name}@{digest}"
    return found


@pytest.fixture(scope="module")
def server(
    api: Store,
    token_registry: Registry,
    images: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    for obj in (
        pull_secret("team-a", "stale", login(token_registry, wrong=True)),
        pull_secret("team-a", "regcred", login(token_registry)),
        pull_secret(
            "team-c", "robot", login(token_registry), secret_type="kubernetes.io/dockercfg"
        ),
        account("team-c", "builder", "robot"),
        account("team-a", "default"),
        account("team-b", "default"),
    ):
        api.put(obj)
    tmp = tmp_path_factory.mktemp("pull-e2e")
    policies = tmp / "policies"
    (policies / "keys").mkdir(parents=True)
    (policies / "keys" / "release.pub").write_text(public_pem(RELEASE))
    (policies / "signed.yaml").write_text(
        "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\n"
        "metadata: {name: signed}\nspec:\n  mode: enforce\n"
        '  match: {namespaces: ["team-*"]}\n'
        f'  registries: ["{token_registry.host}/private/**"]\n'
        "  signatures:\n    authorities:\n"
        "      - name: release\n        key: {file: keys/release.pub}\n"
    )  # fmt: skip
    config = (
        "deadlineSeconds: 10\n"
        "policies: {reloadIntervalSeconds: 0}\n"
        f'registries: {{"{token_registry.host}": {{insecure: true}}}}\n'
        "credentials: {pullSecrets: true}\n"
        f"kubernetes: {{kubeconfig: {kubeconfig(api, tmp)}}}\n"
    )
    running = start_server(tmp, policies, config)
    deadline = time.monotonic() + 20
    while running.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, running.get("/readyz").text
        time.sleep(0.1)
    yield running
    assert stop_server(running) == 0


def answer(server: Server, obj: dict[str, Any]) -> tuple[dict[str, Any], str]:
    uid = str(uuid.uuid4())
    result = server.post(json.dumps(review(obj, uid=uid)), timeout=30)
    assert result.status_code == 200, result.text
    response: dict[str, Any] = result.json()["response"]
    return response, uid


def deployment(image: str, namespace: str, *secrets: str, sa: str | None = None) -> dict[str, Any]:
    spec = pod_spec(image)
    if secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in secrets]
    if sa is not None:
        spec["serviceAccountName"] = sa
    return workload("Deployment", spec, namespace=namespace)


def logged_login(server: Server, uid: str) -> str | None:
    line = server.log_lines(uid)[-1]
    entries = line.get("images") or []
    return entries[0].get("login") if entries else None


def test_a_wrong_secret_listed_before_the_right_one_still_admits(
    server: Server, images: dict[str, str]
) -> None:
    response, uid = answer(server, deployment(images["app"], "team-a", "stale", "regcred"))
    assert response["allowed"] is True, response
    assert logged_login(server, uid) == "pull secret team-a/regcred"


def test_a_pod_that_names_its_secret_is_admitted(server: Server, images: dict[str, str]) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "team-a"},
        "spec": {**pod_spec(images["other"]), "imagePullSecrets": [{"name": "regcred"}]},
    }
    response, _ = answer(server, pod)
    assert response["allowed"] is True, response


def test_the_service_accounts_secret_admits(server: Server, images: dict[str, str]) -> None:
    response, uid = answer(server, deployment(images["app"], "team-c", sa="builder"))
    assert response["allowed"] is True, response
    assert logged_login(server, uid) == "pull secret team-c/robot"
    denied, _ = answer(server, deployment(images["app"], "team-c"))
    assert denied["allowed"] is False, "the default account has no pull secret in team-c"


def test_another_namespace_without_the_secret_is_denied_after_one_was_admitted(
    server: Server, images: dict[str, str], token_registry: Registry
) -> None:
    admitted, _ = answer(server, deployment(images["app"], "team-a", "regcred"))
    assert admitted["allowed"] is True
    served = token_registry.token_server.served  # type: ignore[union-attr]
    for image in (images["app"], images["unseen-b@"]):
        response, _ = answer(server, deployment(image, "team-b", "regcred"))
        assert response["allowed"] is False, response
        message = response["status"]["message"]
        repository = image.split("/", 1)[1].split(":")[0].split("@")[0]
        assert (
            f"authentication to {token_registry.host} failed for {repository}; "
            "tried: anonymous (401 Unauthorized); "
            "not tried: pull secret team-b/regcred" in message
        ), message
    # Team B was answered after asking anonymously: no token was fetched with team A's login.
    log = token_registry.token_server.log[-(token_registry.token_server.served - served) :]  # type: ignore[union-attr]
    assert all(entry["user"] is None for entry in log), log


def test_a_digest_verified_for_one_namespace_is_a_fact_for_all(
    server: Server, images: dict[str, str]
) -> None:
    """A verified signature is about the digest, not about who fetched it (docs/configuration.md).

    The kubelet still needs team B's own secret to pull the image.
    """
    first, _ = answer(server, deployment(images["app@"], "team-a", "regcred"))
    assert first["allowed"] is True
    shared, uid = answer(server, deployment(images["app@"], "team-b"))
    assert shared["allowed"] is True, shared
    assert logged_login(server, uid) is None, "no registry was called for team B"


def test_a_rotated_secret_takes_effect_with_its_watch_event(
    server: Server, api: Store, images: dict[str, str], token_registry: Registry
) -> None:
    api.put(pull_secret("team-d", "regcred", login(token_registry)))
    deadline = time.monotonic() + 10
    while True:
        response, _ = answer(server, deployment(images["rotated"], "team-d", "regcred"))
        if response["allowed"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert response["allowed"] is True, response
    api.remove("", "secrets", "regcred", "team-d")
    deadline = time.monotonic() + 10
    while True:
        # A digest no review has verified yet: it needs the registry, and the secret is gone.
        response, _ = answer(server, deployment(images["unseen-d@"], "team-d", "regcred"))
        message = response.get("status", {}).get("message", "")
        if "pull secret team-d/regcred: no Secret" in message or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert response["allowed"] is False, response
    assert "tried: anonymous (401 Unauthorized); not tried: " in message, message
    assert "pull secret team-d/regcred: no Secret of type" in message, message


def test_readyz_names_the_pull_secret_watches(server: Server) -> None:
    body = server.get("/readyz").json()
    assert body["ready"] is True
    assert body["pullSecrets"], body


def test_an_object_claiming_a_namespace_does_not_borrow_its_secrets(
    server: Server, images: dict[str, str]
) -> None:
    """Only the request's namespace (the API server's) counts, not the object's metadata."""
    claimed = deployment(images["unseen-b"], "team-a", "regcred")
    body = review(claimed)
    body["request"]["namespace"] = ""  # as for a cluster-scoped object
    result = server.post(json.dumps(body), timeout=30)
    response = result.json()["response"]
    assert response["allowed"] is False, response
    assert "tried: anonymous (401 Unauthorized)" in response["status"]["message"]
