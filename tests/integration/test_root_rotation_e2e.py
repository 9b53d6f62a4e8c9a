"""A rotated trusted root takes effect at once, for every kind of authority that uses one.

A running ``trustgate serve`` (sharing outcomes through Redis) admits images
verified under the test Sigstore's trusted root: a keyless signature, a key
signature with ``tlog: required``, a keyless attestation, and a freshness grade
from a keyless vulnerability report. Then the root file is replaced by another
instance's root and the policies reload. Nothing changed in the policy text, so
the policy dataclasses compare equal; only the roots' digests differ, and every
cache key (local and shared) includes them: each image is denied on its next
review, not after ``verifiedTTL``.

A root that retires the Fulcio CA (``validFor.end``) before an image was signed
denies it, saying when; the same root retiring the CA later admits it.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.conftest import Server, serve_config, serving, small_image, wait_for
from tests.integration.test_keyless_e2e import (
    ISSUER,
    OTHER_CA,
    RELEASE,
    RIGHT,
    SIGSTORE,
    SLSA,
    SUBJECT,
    dsse_bundle,
    push_referrer,
    sign_legacy,
)
from tests.support.cosign import public_pem, sign_b64, signature_manifest, simple_signing_payload
from tests.support.redisserver import RedisServer
from tests.support.registry import Registry, push_artifact
from tests.support.sigstore_instance import bundle, rekor_bundle
from webhook.signatures.cosign import signature_tag

pytestmark = pytest.mark.e2e

VULN = "https://cosign.sigstore.dev/attestation/vuln/v1"
ROOT = "roots/trusted_root.json"

POLICIES = """\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: keyless-signature}}
spec:
  match: {{namespaces: ["sig-*"]}}
  registries: ["{host}/**"]
  signatures:
    authorities:
      - name: ci
        keyless: {{issuer: {issuer}, subject: {subject}, trustedRoot: {root}}}
---
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: logged-key}}
spec:
  match: {{namespaces: ["tlog-*"]}}
  registries: ["{host}/**"]
  signatures:
    authorities:
      - name: release
        key: {{file: roots/release.pub, tlog: required, trustedRoot: {root}}}
---
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: keyless-attestation}}
spec:
  match: {{namespaces: ["att-*"]}}
  registries: ["{host}/**"]
  attestations:
    - predicateType: {slsa}
      authorities:
        - name: builder
          keyless: {{issuer: {issuer}, subject: {subject}, trustedRoot: {root}}}
---
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: keyless-report}}
spec:
  match: {{namespaces: ["fresh-*"]}}
  registries: ["{host}/**"]
  freshness:
    minimumGrade: C
    sources:
      - attestation:
          authorities:
            - name: scanner
              keyless: {{issuer: {issuer}, subject: {subject}, trustedRoot: {root}}}
"""


@pytest.fixture(scope="module")
def server(
    registry: Registry, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("rotation")
    key_file = tmp / "cache.key"
    key_file.write_text(secrets.token_hex(32))
    files = {
        ROOT: SIGSTORE.trusted_root_json(),
        "roots/release.pub": public_pem(RELEASE),
        "policies.yaml": POLICIES.format(
            host=registry.host, issuer=ISSUER, subject=SUBJECT, slsa=SLSA, root=ROOT
        ),
    }
    config = serve_config(
        registry.host,
        extra=(
            f"cache: {{shared: {{url: '{redis_server.url}', keyFile: '{key_file}',"
            " timeoutMilliseconds: 200}}\n"
        ),
    ).replace("reloadIntervalSeconds: 0", "reloadIntervalSeconds: 0.2")
    with serving(tmp, files, config) as running:
        yield running


def logged_key_signature(registry: Registry, repository: str, digest: str) -> None:
    """``cosign sign --key`` with its Rekor entry in the test Sigstore's log."""
    payload = simple_signing_payload(f"{registry.host}/{repository}", digest)
    signature = sign_b64(RELEASE, payload)
    manifest, blobs = signature_manifest([(payload, signature)])
    entry = SIGSTORE.log_key_signature(
        public_pem(RELEASE).encode(), base64.b64decode(signature), payload
    )
    manifest["layers"][0]["annotations"]["dev.sigstore.cosign/bundle"] = rekor_bundle(entry)
    push_artifact(registry, repository, signature_tag(digest), manifest, blobs)


def keyless_report(registry: Registry, repository: str, digest: str) -> dict[str, Any]:
    """A keyless bundle of a vulnerability report with nothing to fix (grade A)."""
    scanned = datetime.now(UTC).isoformat()
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": f"{registry.host}/{repository}", "digest": {"sha256": digest[7:]}}],
        "predicateType": VULN,
        "predicate": {
            "scanner": {
                "uri": "pkg:github/aquasecurity/trivy@0.50.0",
                "version": "0.50.0",
                "result": {"SchemaVersion": 2, "CreatedAt": scanned, "Results": []},
            },
            "metadata": {"scanStartedOn": scanned, "scanFinishedOn": scanned},
        },
    }
    cert, envelope, entry = SIGSTORE.sign_dsse(RIGHT, statement)
    return bundle(cert, entry, envelope=envelope)


def test_every_kind_of_root_rotation_changes_the_outcome_at_once(
    registry: Registry, server: Server
) -> None:
    images: dict[str, str] = {}
    ref, digest = small_image(registry, "rotation/keyless")
    sign_legacy(registry, "rotation/keyless", digest)
    images["sig-a"] = ref
    ref, digest = small_image(registry, "rotation/logged")
    logged_key_signature(registry, "rotation/logged", digest)
    images["tlog-a"] = ref
    ref, digest = small_image(registry, "rotation/attested")
    push_referrer(
        registry,
        "rotation/attested",
        digest,
        dsse_bundle(registry, "rotation/attested", digest, SLSA),
    )
    images["att-a"] = ref
    ref, digest = small_image(registry, "rotation/reported")
    push_referrer(
        registry, "rotation/reported", digest, keyless_report(registry, "rotation/reported", digest)
    )
    images["fresh-a"] = ref

    for namespace, image in images.items():
        answer = server.decide(image, namespace)
        assert answer["allowed"] is True, (namespace, answer)

    before = server.get("/readyz").json()["fingerprint"]
    (server.policies / ROOT).write_text(OTHER_CA.trusted_root_json())
    assert wait_for(lambda: server.get("/readyz").json()["fingerprint"] != before)

    admitted = [ns for ns, image in images.items() if server.decide(image, ns)["allowed"]]
    assert admitted == [], "still admitted under the replaced root"
    for namespace, image in images.items():
        message = server.denial(image, namespace)
        assert "failed" in message or "unknown" in message, message


def _root_retiring_the_ca(at: datetime) -> str:
    """The test Sigstore's root, its Fulcio CA retired at ``at`` (``validFor.end``)."""
    document = SIGSTORE.trusted_root()
    document["certificateAuthorities"][0]["validFor"]["end"] = f"{at:%Y-%m-%dT%H:%M:%SZ}"
    return json.dumps(document)


def _install_root(server: Server, text: str) -> None:
    before = server.get("/readyz").json()["fingerprint"]
    (server.policies / ROOT).write_text(text)
    assert wait_for(lambda: server.get("/readyz").json()["fingerprint"] != before)


def test_a_signature_made_after_the_root_retired_its_ca_is_denied(
    registry: Registry, server: Server
) -> None:
    """sigstore-python accepts it; the server refuses and says when the root retired the CA."""
    ref, digest = small_image(registry, "rotation/retired-sig")
    sign_legacy(registry, "rotation/retired-sig", digest)
    attested, attested_digest = small_image(registry, "rotation/retired-att")
    push_referrer(
        registry,
        "rotation/retired-att",
        attested_digest,
        dsse_bundle(registry, "rotation/retired-att", attested_digest, SLSA),
    )
    retired = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    try:
        _install_root(server, _root_retiring_the_ca(retired))
        for image, namespace in ((ref, "sig-retired"), (attested, "att-retired")):
            message = server.denial(image, namespace)
            assert "by Fulcio CA 'CN=trustgate-test-intermediate,O=trustgate.test'" in message
            assert f"which the root retired at {retired:%Y-%m-%dT%H:%M:%SZ}" in message, message
            assert "sign the image again under the root's current CA and log keys" in message
        # Retired only later: the same signatures are admitted at once.
        _install_root(server, _root_retiring_the_ca(retired + timedelta(hours=1)))
        assert server.decide(ref, "sig-retired")["allowed"] is True
        assert server.decide(attested, "att-retired")["allowed"] is True
    finally:
        _install_root(server, SIGSTORE.trusted_root_json())
