"""Signature material nested 3,000 levels deep is a plain denial, through `trustgate serve`.

Python's JSON parser raises RecursionError, not ValueError, past about 1,000
levels; a parser catching only ValueError let it through as an internal error
(HTTP 200 with code 500 and a traceback in the log). Each form below is
pushed to the real registry, signed with the trusted key where the policy
would otherwise verify it, and reviewed: the answer must be a denial saying
why, with no traceback.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import Server, serve_config, serving, small_image
from tests.support.cosign import (
    BUNDLE_V03,
    generate_key,
    key_bundle,
    public_pem,
    sign_b64,
    signature_manifest,
    simple_signing_payload,
)
from tests.support.referrers import push_referrer
from tests.support.registry import Registry, push_artifact
from tests.support.sigstore_instance import SigstoreInstance
from tests.unit.signatures.test_attestations import push_attestation_layers
from webhook.signatures.cosign import IN_TOTO_PAYLOAD_TYPE, pae, signature_tag

pytestmark = pytest.mark.e2e

RELEASE = generate_key("ecdsa-p256")
SLSA = "https://slsa.dev/provenance/v1"
DEPTH = 3000
DEEP = b"[" * DEPTH + b"]" * DEPTH
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"

POLICIES = """\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: signed}}
spec:
  match: {{namespaces: ["prod-*"]}}
  registries: ["{host}/**"]
  signatures:
    authorities:
      - name: release
        key: {{file: keys/release.pub}}
---
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: logged}}
spec:
  match: {{namespaces: ["tlog-*"]}}
  registries: ["{host}/**"]
  signatures:
    authorities:
      - name: release
        key: {{file: keys/release.pub, tlog: required, trustedRoot: keys/trusted_root.json}}
---
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: attested}}
spec:
  match: {{namespaces: ["att-*"]}}
  registries: ["{host}/**"]
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
        "keys/trusted_root.json": SigstoreInstance().trusted_root_json(),
        "deep.yaml": POLICIES.format(host=registry.host, slsa=SLSA),
    }
    with serving(tmp_path_factory.mktemp("deep"), files, serve_config(registry.host)) as running:
        yield running


def _push_sig(
    registry: Registry, repository: str, digest: str, payload: bytes, bundle: str | None = None
) -> None:
    manifest, blobs = signature_manifest([(payload, sign_b64(RELEASE, payload))])
    if bundle is not None:
        manifest["layers"][0]["annotations"][BUNDLE_ANNOTATION] = bundle
    push_artifact(registry, repository, signature_tag(digest), manifest, blobs)


def _envelope(payload: bytes) -> dict[str, Any]:
    """A DSSE envelope of ``payload`` as an in-toto statement, signed with the trusted key."""
    return {
        "payloadType": IN_TOTO_PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": "", "sig": sign_b64(RELEASE, pae(IN_TOTO_PAYLOAD_TYPE, payload))}],
    }


def _deep_payload(registry: Registry, repository: str, digest: str) -> str:
    _push_sig(registry, repository, digest, b'{"critical": ' + DEEP + b', "optional": null}')
    return "prod-web"


def _deep_log_entry(registry: Registry, repository: str, digest: str) -> str:
    payload = simple_signing_payload(f"{registry.host}/{repository}", digest)
    _push_sig(registry, repository, digest, payload, bundle=DEEP.decode())
    return "tlog-web"


def _deep_bundle(registry: Registry, repository: str, digest: str) -> str:
    document = {"mediaType": BUNDLE_V03, "verificationMaterial": json.loads("[" * 900 + "]" * 900)}
    raw = json.dumps(document).encode().replace(b"[" * 900, b"[" * DEPTH, 1)
    raw = raw.replace(b"]" * 900, b"]" * DEPTH, 1)
    push_referrer(registry, repository, digest, raw, artifact_type=BUNDLE_V03)
    return "prod-web"


def _deep_bundle_statement(registry: Registry, repository: str, digest: str) -> str:
    document = key_bundle(RELEASE, envelope=_envelope(DEEP))
    push_referrer(
        registry, repository, digest, json.dumps(document).encode(), artifact_type=BUNDLE_V03
    )
    return "prod-web"


def _deep_envelope(registry: Registry, repository: str, digest: str) -> str:
    notes = {"dev.cosignproject.cosign/signature": "", "predicateType": SLSA}
    push_attestation_layers(registry, repository, digest, [(DEEP, notes)])
    return "att-web"


def _deep_statement(registry: Registry, repository: str, digest: str) -> str:
    notes = {"dev.cosignproject.cosign/signature": "", "predicateType": SLSA}
    envelope = json.dumps(_envelope(DEEP)).encode()
    push_attestation_layers(registry, repository, digest, [(envelope, notes)])
    return "att-web"


@pytest.mark.parametrize(
    ("push", "says"),
    [
        (_deep_payload, "release: signed payload is nested too deeply to read"),
        (_deep_log_entry, "transparency log entry is nested too deeply to read"),
        (_deep_bundle, "malformed Sigstore bundle"),
        (_deep_bundle_statement, "signed payload is nested too deeply to read"),
        (_deep_envelope, "is nested too deeply to be a DSSE envelope"),
        (_deep_statement, "signed payload is nested too deeply to read"),
    ],
    ids=[
        "simple-signing payload",
        "tlog entry",
        "bundle",
        "bundle statement",
        "attestation envelope",
        "attestation statement",
    ],
)
def test_deeply_nested_signature_material_is_a_plain_denial(
    registry: Registry, server: Server, push: Any, says: str
) -> None:
    repository = f"deep/{push.__name__.strip('_').replace('_', '-')}"
    ref, digest = small_image(registry, repository)
    namespace = push(registry, repository, digest)
    before = len(server.log_text())
    response = server.decide(ref, namespace)
    assert response["allowed"] is False
    assert response["status"].get("code") != 500, response
    assert says in response["status"]["message"], response
    assert server.logged(response["uid"])  # the log is written after the answer
    logged = server.log_text()[before:]
    assert "Traceback" not in logged
    assert "RecursionError" not in logged
