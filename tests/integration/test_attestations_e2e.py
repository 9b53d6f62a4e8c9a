"""Key-based attestations, end to end: a real registry, cosign's .att layout, `trustgate serve`."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cosign import (
    OCI_CONFIG,
    PrivateKey,
    dsse_envelope,
    generate_key,
    go_json,
    in_toto_statement,
    public_pem,
    sha256,
    sign_b64,
    signature_manifest,
    simple_signing_payload,
)
from tests.integration.conftest import Server, start_server, stop_server
from tests.kube import pod_spec, review, workload
from tests.registry import (
    OCI_MANIFEST,
    Registry,
    default_layer,
    push_artifact,
    push_image,
)
from webhook.signatures.cosign import DSSE_MEDIA_TYPE, attestation_tag, signature_tag

pytestmark = pytest.mark.e2e

RELEASE = generate_key("ecdsa-p256")
OTHER = generate_key("ecdsa-p256")
SLSA = "https://slsa.dev/provenance/v1"
VULN = "https://cosign.sigstore.dev/attestation/vuln/v1"


def attest(
    registry: Registry,
    repository: str,
    digest: str,
    key: PrivateKey = RELEASE,
    *,
    predicate_type: str = SLSA,
    subject: str | None = None,
) -> None:
    """Push the ``.att`` manifest ``cosign attest`` writes, with one DSSE layer."""
    statement = in_toto_statement(
        subject or digest, f"{registry.host}/{repository}", predicate_type, {"builder": "ci"}
    )
    blob = go_json(dsse_envelope(statement, key))
    config = go_json({"architecture": "", "os": "", "config": {}, "rootfs": {"type": "layers"}})
    layer = {
        "mediaType": DSSE_MEDIA_TYPE,
        "size": len(blob),
        "digest": sha256(blob),
        "annotations": {"dev.cosignproject.cosign/signature": "", "predicateType": predicate_type},
    }
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": len(config), "digest": sha256(config)},
        "layers": [layer],
    }
    blobs = {sha256(blob): blob, sha256(config): config}
    push_artifact(registry, repository, attestation_tag(digest), manifest, blobs)


def sign(registry: Registry, repository: str, digest: str) -> None:
    payload = simple_signing_payload(f"{registry.host}/{repository}", digest)
    manifest, blobs = signature_manifest([(payload, sign_b64(RELEASE, payload))])
    push_artifact(registry, repository, signature_tag(digest), manifest, blobs)


POLICIES = """\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: provenance}}
spec:
  match: {{namespaces: ["prod-*"]}}
  registries: ["{host}/**"]
  attestations:
    - predicateType: {slsa}
      authorities:
        - name: release
          key: {{file: keys/release.pub}}
---
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: signed-and-attested}}
spec:
  match: {{namespaces: ["both-*"]}}
  registries: ["{host}/**"]
  signatures:
    authorities:
      - name: release
        key: {{file: keys/release.pub}}
  attestations:
    - predicateType: {slsa}
      authorities:
        - name: release
          key: {{file: keys/release.pub}}
"""


@pytest.fixture(scope="module")
def server(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("attested")
    policies = tmp / "policies"
    (policies / "keys").mkdir(parents=True)
    (policies / "keys" / "release.pub").write_text(public_pem(RELEASE))
    (policies / "attested.yaml").write_text(POLICIES.format(host=registry.host, slsa=SLSA))
    config = (
        "deadlineSeconds: 5\n"
        "policies: {reloadIntervalSeconds: 0}\n"
        f'registries: {{"{registry.host}": {{insecure: true}}}}\n'
    )
    running = start_server(tmp, policies, config)
    yield running
    assert stop_server(running) == 0


def image(registry: Registry, repository: str) -> tuple[str, str]:
    layer = default_layer(content=repository.encode())
    digest = push_image(registry, repository, tag="v1", layers=[layer])
    return f"{registry.host}/{repository}:v1", digest


def decide(server: Server, ref: str, namespace: str = "prod-web") -> dict[str, Any]:
    body = review(workload("Deployment", pod_spec(ref), namespace=namespace))
    result = server.post(json.dumps(body), timeout=30)
    assert result.status_code == 200, result.text
    response: dict[str, Any] = result.json()["response"]
    return response


def test_attested_image_is_admitted(registry: Registry, server: Server) -> None:
    ref, digest = image(registry, "acme/attested")
    attest(registry, "acme/attested", digest)
    assert decide(server, ref)["allowed"] is True


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("missing", "release: no attestation found (sha256-"),
        ("wrong-key", "release: attestation signature does not verify with key release"),
        ("wrong-type", f"release: signed attestations have predicate type {VULN}, not {SLSA}"),
        ("wrong-subject", "release: signed attestation is about another subject, not sha256:"),
    ],
)
def test_bad_attestations_are_denied(
    registry: Registry, server: Server, case: str, reason: str
) -> None:
    repo = f"acme/att-{case}"
    ref, digest = image(registry, repo)
    if case == "wrong-key":
        attest(registry, repo, digest, OTHER)
    elif case == "wrong-type":
        attest(registry, repo, digest, predicate_type=VULN)
    elif case == "wrong-subject":
        attest(registry, repo, digest, subject="sha256:" + "0" * 64)
    response = decide(server, ref)
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert message.startswith(
        f'image {ref} denied by policy "provenance": attestation check failed for predicate '
        f"type {SLSA}: 0 of the 1 required authorities verified ("
    )
    assert reason in message


def test_signatures_are_checked_before_attestations(registry: Registry, server: Server) -> None:
    ref, digest = image(registry, "acme/both")
    attest(registry, "acme/both", digest)
    response = decide(server, ref, namespace="both-a")
    assert response["allowed"] is False
    assert "signature check failed" in response["status"]["message"]
    sign(registry, "acme/both", digest)
    ref2, digest2 = image(registry, "acme/both2")
    sign(registry, "acme/both2", digest2)
    attest(registry, "acme/both2", digest2)
    assert decide(server, ref2, namespace="both-a")["allowed"] is True
    # The envelope really is what cosign writes: base64 of the statement.
    blob = registry.request(
        "GET", f"/v2/acme/both2/manifests/{attestation_tag(digest2)}",
        headers={"Accept": OCI_MANIFEST},
    ).json()["layers"][0]  # fmt: skip
    envelope = registry.request("GET", f"/v2/acme/both2/blobs/{blob['digest']}").json()
    assert json.loads(base64.b64decode(envelope["payload"]))["predicateType"] == SLSA
