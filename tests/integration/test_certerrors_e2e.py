"""Certificates cryptography cannot read, served by a registry: the check's denial, end to end.

A real registry holds images whose signatures carry a certificate of
tests/support/oddcerts.py (an unknown X.509 version, a SAN given twice, an
x400Address SAN): in a Sigstore bundle referrer, in cosign's legacy ``.sig``
certificate annotation, and in the chain (``x5c``) of a Notation JWS envelope.
``trustgate serve`` (gunicorn over TLS) must answer with the signature check's
own reason, and admit the image with a warning under an audit policy: never
"trustgate could not evaluate the request" and a traceback, which
cryptography's exceptions (no ValueErrors) used to cause.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tests.integration.conftest import Server, serve_config, serving, small_image
from tests.support import referrers
from tests.support.cosign import signature_manifest, simple_signing_payload
from tests.support.notation_images import of, sign_image
from tests.support.notation_pki import Authority
from tests.support.oddcerts import ODD_CASES, odd_certificates, odd_pem
from tests.support.registry import Registry, push_artifact
from tests.support.sigstore_instance import Identity, SigstoreInstance, bundle, cosign_annotations
from webhook.signatures.cosign import signature_tag
from webhook.signatures.keyless import (
    BUNDLE_MEDIA_TYPES,
    CERTIFICATE_ANNOTATION,
    COSIGN_SIGN_PREDICATE,
)

pytestmark = pytest.mark.e2e

ISSUER = "https://token.actions.githubusercontent.com"
SUBJECT = "https://github.com/acme/api/.github/workflows/release.yml@refs/tags/v1.0"
RIGHT = Identity(SUBJECT, ISSUER)
SIGSTORE = SigstoreInstance()
NOTATION_ROOT = Authority.root()
BUILDER = NOTATION_ROOT.intermediate().leaf("builder")
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
INTERNAL = "could not evaluate the request"
PREFIX = "signature check failed: 0 of the 1 required authorities verified (ci: "
#: What cryptography says of each case; the denial carries it.
SAYS = {
    "an unknown X.509 version": "94 is not a valid X509 version",
    "a SAN given twice": "Duplicate 2.5.29.17 extension found",
    "an x400Address SAN": "x400Address/EDIPartyName are not supported types",
}
SLUG = dict(zip(ODD_CASES, ("version", "twice", "x400"), strict=True))

POLICIES = """\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: keyless}}
spec:
  match: {{namespaces: ["prod-*"]}}
  registries: ["{host}/**"]
  signatures:
    authorities:
      - name: ci
        keyless: {{issuer: {issuer}, subject: {subject}, trustedRoot: roots/trusted_root.json}}
---
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: keyless-audit}}
spec:
  mode: audit
  match: {{namespaces: ["audit-*"]}}
  registries: ["{host}/**"]
  signatures:
    authorities:
      - name: ci
        keyless: {{issuer: {issuer}, subject: {subject}, trustedRoot: roots/trusted_root.json}}
---
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: notation}}
spec:
  match: {{namespaces: ["notation-*"]}}
  registries: ["{host}/**"]
  signatures:
    authorities:
      - name: wabbit
        notation:
          trustStore: certs/ca.pem
          trustedIdentities: ["*"]
          override: {{revocation: skip}}
---
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: notation-audit}}
spec:
  mode: audit
  match: {{namespaces: ["notaudit-*"]}}
  registries: ["{host}/**"]
  signatures:
    authorities:
      - name: wabbit
        notation:
          trustStore: certs/ca.pem
          trustedIdentities: ["*"]
          override: {{revocation: skip}}
"""


@pytest.fixture(scope="module")
def server(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    files = {
        "roots/trusted_root.json": SIGSTORE.trusted_root_json(),
        "certs/ca.pem": NOTATION_ROOT.cert.public_bytes(Encoding.PEM).decode(),
        "certerrors.yaml": POLICIES.format(host=registry.host, issuer=ISSUER, subject=SUBJECT),
    }
    config = serve_config(registry.host)
    with serving(tmp_path_factory.mktemp("certerrors"), files, config) as running:
        yield running


def push_odd_bundle(registry: Registry, repository: str, digest: str, case: str) -> None:
    """A genuine bundle referrer of the image, its certificate swapped for the odd one."""
    hex_digest = digest.partition(":")[2]
    cert, signature, entry = SIGSTORE.sign_digest(RIGHT, hex_digest)
    document = bundle(cert, entry, signature=signature, digest_hex=hex_digest)
    raw = base64.b64encode(odd_certificates()[case]).decode()
    document["verificationMaterial"]["certificate"]["rawBytes"] = raw
    assert document["mediaType"] in BUNDLE_MEDIA_TYPES
    referrers.push_referrer(
        registry,
        repository,
        digest,
        json.dumps(document).encode(),
        artifact_type=BUNDLE_V03,
        annotations={"dev.sigstore.bundle.predicateType": COSIGN_SIGN_PREDICATE},
    )


def push_odd_legacy(registry: Registry, repository: str, digest: str, case: str) -> None:
    """cosign's ``.sig`` manifest of a genuine signature, its certificate annotation odd."""
    payload = simple_signing_payload(f"{registry.host}/{repository}", digest)
    cert, signature, entry = SIGSTORE.sign_blob(RIGHT, payload)
    annotations = cosign_annotations(SIGSTORE, cert, signature, entry)
    annotations[CERTIFICATE_ANNOTATION] = odd_pem(case).decode()
    manifest, blobs = signature_manifest(
        [(payload, annotations["dev.cosignproject.cosign/signature"])]
    )
    manifest["layers"][0]["annotations"] = annotations
    push_artifact(registry, repository, signature_tag(digest), manifest, blobs)


PUSH = {"bundle": push_odd_bundle, "legacy": push_odd_legacy}
REASON = {
    "bundle": "malformed Sigstore bundle: ",
    "legacy": "the signing certificate of the keyless signature cannot be read: ",
}


@pytest.mark.parametrize("case", ODD_CASES)
@pytest.mark.parametrize("storage", ["bundle", "legacy"])
def test_an_unreadable_certificate_is_the_checks_denial_not_an_internal_error(
    registry: Registry, server: Server, storage: str, case: str
) -> None:
    repository = f"certerrors/{storage}-{SLUG[case]}"
    ref, digest = small_image(registry, repository)
    PUSH[storage](registry, repository, digest, case)
    message = server.denial(ref)
    assert INTERNAL not in message
    assert message.startswith(f'image {ref} denied by policy "keyless": {PREFIX}'), message
    assert REASON[storage] in message and SAYS[case] in message, message
    # Under an audit policy the same image is admitted, the reason a warning.
    response = server.decide(ref, namespace="audit-a")
    assert response["allowed"] is True, response
    warning = " ".join(response.get("warnings", []))
    assert "(audit mode): signature check failed" in warning, warning
    assert REASON[storage] in warning and INTERNAL not in warning, warning
    assert "Traceback" not in server.log_text()


@pytest.mark.parametrize("case", ODD_CASES)
def test_a_notation_chain_with_an_unreadable_certificate_is_the_checks_denial(
    registry: Registry, server: Server, case: str
) -> None:
    repository = f"certerrors/notation-{SLUG[case]}"
    ref, digest = small_image(registry, repository)
    # A genuine envelope by a trusted signer, an unreadable certificate in the middle of its x5c.
    leaf, *rest = (cert.public_bytes(Encoding.DER) for cert in BUILDER.chain)
    x5c = [base64.b64encode(der).decode() for der in (leaf, odd_certificates()[case], *rest)]
    sign_image(registry, repository, digest, of(BUILDER), unprotected={"x5c": x5c})
    message = server.denial(ref, namespace="notation-a")
    assert INTERNAL not in message
    assert message.startswith(f'image {ref} denied by policy "notation": '), message
    reason = "certificate 2 of the chain is not a DER X.509 certificate cryptography can read"
    assert reason in message and SAYS[case] in message, message
    response = server.decide(ref, namespace="notaudit-a")
    assert response["allowed"] is True, response
    warning = " ".join(response.get("warnings", []))
    assert "(audit mode): signature check failed" in warning and INTERNAL not in warning, warning
    assert "Traceback" not in server.log_text()
