"""Key-based attestations, end to end: a real registry, cosign's .att layout, `trustgate serve`."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest

from tests.integration.conftest import Server, serve_config, serving, small_image
from tests.support.cosign import (
    PrivateKey,
    dsse_envelope,
    generate_key,
    in_toto_statement,
    public_pem,
    push_signature,
)
from tests.support.registry import OCI_MANIFEST, Registry
from tests.unit.signatures.test_attestations import push_attestations
from webhook.signatures.cosign import attestation_tag

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
    push_attestations(registry, repository, digest, [dsse_envelope(statement, key)])


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
    files = {
        "keys/release.pub": public_pem(RELEASE),
        "attested.yaml": POLICIES.format(host=registry.host, slsa=SLSA),
    }
    config = serve_config(registry.host)
    with serving(tmp_path_factory.mktemp("attested"), files, config) as running:
        yield running


def test_attested_image_is_admitted(registry: Registry, server: Server) -> None:
    ref, digest = small_image(registry, "acme/attested")
    attest(registry, "acme/attested", digest)
    assert server.decide(ref)["allowed"] is True


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
    ref, digest = small_image(registry, repo)
    if case == "wrong-key":
        attest(registry, repo, digest, OTHER)
    elif case == "wrong-type":
        attest(registry, repo, digest, predicate_type=VULN)
    elif case == "wrong-subject":
        attest(registry, repo, digest, subject="sha256:" + "0" * 64)
    response = server.decide(ref)
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert message.startswith(
        f'image {ref} denied by policy "provenance": attestation check failed for predicate '
        f"type {SLSA}: 0 of the 1 required authorities verified ("
    )
    assert reason in message


def test_signatures_are_checked_before_attestations(registry: Registry, server: Server) -> None:
    ref, digest = small_image(registry, "acme/both")
    attest(registry, "acme/both", digest)
    response = server.decide(ref, namespace="both-a")
    assert response["allowed"] is False
    assert "signature check failed" in response["status"]["message"]
    push_signature(registry, "acme/both", digest, RELEASE)
    ref2, digest2 = small_image(registry, "acme/both2")
    push_signature(registry, "acme/both2", digest2, RELEASE)
    attest(registry, "acme/both2", digest2)
    assert server.decide(ref2, namespace="both-a")["allowed"] is True
    # The envelope really is what cosign writes: base64 of the statement.
    blob = registry.request(
        "GET", f"/v2/acme/both2/manifests/{attestation_tag(digest2)}",
        headers={"Accept": OCI_MANIFEST},
    ).json()["layers"][0]  # fmt: skip
    envelope = registry.request("GET", f"/v2/acme/both2/blobs/{blob['digest']}").json()
    assert json.loads(base64.b64decode(envelope["payload"]))["predicateType"] == SLSA
