"""Keyless signatures end to end: a real registry, the test Sigstore, `trustgate serve`.

Images are signed keylessly in both of cosign's storage formats:

- the legacy ``sha256-<hex>.sig`` manifest, its layer annotated with the
  Fulcio certificate, the chain and the Rekor entry with its signed entry
  timestamp;
- a Sigstore bundle pushed as an OCI 1.1 referrer (a manifest with
  ``subject`` and ``artifactType``). Debian's docker-registry (distribution
  2.8) does not serve the referrers API (it answers 404), so the pusher also
  maintains the ``sha256-<hex>`` referrers tag index, as cosign and oras do,
  and trustgate finds the bundle through that fallback.

Attestations come as bundle referrers too, or in cosign's legacy
``sha256-<hex>.att`` manifest: DSSE envelope layers annotated like ``.sig``
layers, their Rekor entry an ``intoto`` 0.0.2 record of the envelope.

The policies name a ``trusted_root.json`` written from the test instance.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.integration.conftest import Server, serve_config, serving, small_image
from tests.support import referrers
from tests.support.cosign import (
    generate_key,
    public_pem,
    sha256,
    sign_b64,
    signature_manifest,
    simple_signing_payload,
)
from tests.support.registry import (
    OCI_MANIFEST,
    Registry,
    push_artifact,
)
from tests.support.sigstore_instance import (
    BUNDLE_V03,
    Identity,
    SigstoreInstance,
    bundle,
    cosign_annotations,
    rekor_bundle,
)
from webhook.signatures.cosign import DSSE_MEDIA_TYPE, attestation_tag, signature_tag
from webhook.signatures.keyless import COSIGN_SIGN_PREDICATE

pytestmark = pytest.mark.e2e

ISSUER = "https://token.actions.githubusercontent.com"
SUBJECT = "https://github.com/acme/api/.github/workflows/release.yml@refs/tags/v1.0"
RIGHT = Identity(SUBJECT, ISSUER, {"githubWorkflowRepository": "acme/api"})
SLSA = "https://slsa.dev/provenance/v1"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
SBOM = "application/spdx+json"

SIGSTORE = SigstoreInstance()
OTHER_CA = SigstoreInstance("another-ca")
RELEASE = generate_key("ecdsa-p256")
#: A key a certificate is issued for, also listed as a key authority.
CERTIFICATE_KEY = ec.generate_private_key(ec.SECP256R1())
DEPLOY = Identity(SUBJECT.replace("release.yml", "deploy.yml"), ISSUER)

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
        keyless:
          issuer: {issuer}
          subject: {subject}
          trustedRoot: roots/trusted_root.json
          extensions: {{githubWorkflowRepository: acme/api}}
---
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: keyless-pattern}}
spec:
  match: {{namespaces: ["pattern-*"]}}
  registries: ["{host}/**"]
  signatures:
    authorities:
      - name: ci
        keyless:
          issuerRegExp: 'https://token\\.actions\\.githubusercontent\\.com'
          subjectRegExp: 'https://github\\.com/acme/api'
          trustedRoot: roots/trusted_root.json
---
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: keyless-provenance}}
spec:
  match: {{namespaces: ["attested-*"]}}
  registries: ["{host}/**"]
  attestations:
    - predicateType: {slsa}
      authorities:
        - name: builder
          keyless:
            issuer: {issuer}
            subject: {subject}
            trustedRoot: roots/trusted_root.json
---
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: key-tlog}}
spec:
  match: {{namespaces: ["tlog-*"]}}
  registries: ["{host}/**"]
  signatures:
    authorities:
      - name: release
        key: {{file: roots/release.pub, tlog: required, trustedRoot: roots/trusted_root.json}}
---
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: keyless-strict}}
spec:
  match: {{namespaces: ["strict-*"]}}
  registries: ["{host}/**"]
  signatures:
    annotations: {{env: prod}}
    matchReference: true
    authorities:
      - name: ci
        keyless: {{issuer: {issuer}, subject: {subject}, trustedRoot: roots/trusted_root.json}}
---
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: keyless-reference}}
spec:
  match: {{namespaces: ["reference-*"]}}
  registries: ["{host}/**"]
  signatures:
    matchReference: true
    authorities:
      - name: ci
        keyless: {{issuer: {issuer}, subject: {subject}, trustedRoot: roots/trusted_root.json}}
---
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: keyless-two}}
spec:
  match: {{namespaces: ["two-*"]}}
  registries: ["{host}/**"]
  signatures:
    threshold: 2
    authorities:
      - name: ci
        keyless: {{issuer: {issuer}, subject: {subject}, trustedRoot: roots/trusted_root.json}}
      - name: ci-any
        keyless:
          issuer: {issuer}
          subjectRegExp: 'https://github\\.com/acme/api/.*'
          trustedRoot: roots/trusted_root.json
---
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: key-and-identity}}
spec:
  match: {{namespaces: ["pair-*"]}}
  registries: ["{host}/**"]
  signatures:
    threshold: 2
    authorities:
      - name: ci
        keyless: {{issuer: {issuer}, subject: {subject}, trustedRoot: roots/trusted_root.json}}
      - name: release
        key: {{file: roots/certificate-key.pub}}
---
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: keyless-attested-two}}
spec:
  match: {{namespaces: ["attested-two-*"]}}
  registries: ["{host}/**"]
  attestations:
    - predicateType: {slsa}
      threshold: 2
      authorities:
        - name: builder
          keyless: {{issuer: {issuer}, subject: {subject}, trustedRoot: roots/trusted_root.json}}
        - name: builder-any
          keyless:
            issuer: {issuer}
            subjectRegExp: 'https://github\\.com/acme/api/.*'
            trustedRoot: roots/trusted_root.json
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
        keyless:
          issuer: {issuer}
          subject: {subject}
          trustedRoot: roots/trusted_root.json
"""


@pytest.fixture(scope="module")
def server(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Not at the top of the directory: every *.json there is read as a policy.
    files = {
        "roots/trusted_root.json": SIGSTORE.trusted_root_json(),
        "roots/release.pub": public_pem(RELEASE),
        "roots/certificate-key.pub": public_pem(CERTIFICATE_KEY),
        "keyless.yaml": POLICIES.format(
            host=registry.host, issuer=ISSUER, subject=SUBJECT, slsa=SLSA
        ),
    }
    config = serve_config(registry.host)
    with serving(tmp_path_factory.mktemp("keyless"), files, config) as running:
        yield running


# Signing in cosign's two storage formats ----------------------------------------------


def sign_legacy(
    registry: Registry,
    repository: str,
    digest: str,
    identity: Identity = RIGHT,
    instance: SigstoreInstance = SIGSTORE,
    *,
    optional: dict[str, str] | None = None,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> None:
    """Push the ``.sig`` manifest ``cosign sign`` writes for a keyless signature.

    ``optional`` holds ``cosign sign -a`` annotations; ``key`` is the certificate's key.
    """
    payload = simple_signing_payload(f"{registry.host}/{repository}", digest, optional)
    issued = instance.ca.issue(identity, key=key)
    cert, signature, entry = SIGSTORE.sign_blob(identity, payload, cert=issued)
    annotations = cosign_annotations(instance, cert, signature, entry)
    manifest, blobs = signature_manifest([(payload, annotations[_SIGNATURE])])
    manifest["layers"][0]["annotations"] = annotations
    push_artifact(registry, repository, signature_tag(digest), manifest, blobs)


_SIGNATURE = "dev.cosignproject.cosign/signature"


def push_referrer(
    registry: Registry,
    repository: str,
    digest: str,
    document: dict[str, Any],
    *,
    artifact_type: str = BUNDLE_V03,
) -> str:
    """Push ``document`` as a referrer of ``digest`` and list it in the referrers tag index.

    The manifest is what ``cosign sign --new-bundle-format`` pushes
    (tests/support/referrers.py): the
    empty config, one bundle layer, ``artifactType``, ``subject`` and the predicate type
    annotation. The registry has no referrers API, so the ``sha256-<hex>`` index is updated as
    the OCI 1.1 distribution spec tells clients to.
    """
    return referrers.push_referrer(
        registry,
        repository,
        digest,
        json.dumps(document).encode(),
        artifact_type=artifact_type,
        annotations={"dev.sigstore.bundle.predicateType": COSIGN_SIGN_PREDICATE},
    )


def message_bundle(
    digest: str, identity: Identity = RIGHT, *, signed: str | None = None
) -> dict[str, Any]:
    """A v0.3 bundle whose message signature is over ``signed`` (default: ``digest``)."""
    hex_digest = (signed or digest).partition(":")[2]
    cert, signature, entry = SIGSTORE.sign_digest(identity, hex_digest)
    return bundle(cert, entry, signature=signature, digest_hex=hex_digest)


def dsse_bundle(
    registry: Registry,
    repository: str,
    digest: str,
    predicate_type: str,
    identity: Identity = RIGHT,
) -> dict[str, Any]:
    """A v0.3 bundle of a DSSE envelope holding an in-toto statement about the image."""
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": f"{registry.host}/{repository}", "digest": {"sha256": digest[7:]}}],
        "predicateType": predicate_type,
        "predicate": {"builder": {"id": "https://github.com/acme/api"}},
    }
    cert, envelope, entry = SIGSTORE.sign_dsse(identity, statement)
    return bundle(cert, entry, envelope=envelope)


def attest_legacy(
    registry: Registry,
    repository: str,
    digest: str,
    *,
    logged_statement: dict[str, Any] | None = None,
) -> None:
    """Push the ``.att`` manifest ``cosign attest`` writes for a keyless SLSA attestation."""
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": f"{registry.host}/{repository}", "digest": {"sha256": digest[7:]}}],
        "predicateType": SLSA,
        "predicate": {"builder": {"id": "https://github.com/acme/api"}},
    }
    envelope, annotations = SIGSTORE.attest_legacy(
        RIGHT, statement, logged_statement=logged_statement
    )
    empty = b"{}"
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": EMPTY_CONFIG, "digest": sha256(empty), "size": 2},
        "layers": [
            {
                "mediaType": DSSE_MEDIA_TYPE,
                "digest": sha256(envelope),
                "size": len(envelope),
                "annotations": annotations,
            }
        ],
    }
    blobs = {sha256(envelope): envelope, sha256(empty): empty}
    push_artifact(registry, repository, attestation_tag(digest), manifest, blobs)


# Admitted ------------------------------------------------------------------------------


def test_legacy_sig_layer_keyless_signature_is_admitted(registry: Registry, server: Server) -> None:
    ref, digest = small_image(registry, "keyless/legacy")
    sign_legacy(registry, "keyless/legacy", digest)
    assert server.decide(ref)["allowed"] is True


def test_bundle_referrer_found_through_the_tag_fallback_is_admitted(
    registry: Registry, server: Server
) -> None:
    ref, digest = small_image(registry, "keyless/bundle")
    # distribution 2.8 has no referrers API: the fallback is what finds the bundle.
    api = registry.request("GET", f"/v2/keyless/bundle/referrers/{digest}")
    assert api.status_code == 404
    push_referrer(registry, "keyless/bundle", digest, message_bundle(digest))
    assert server.decide(ref)["allowed"] is True


def test_dsse_signature_bundle_is_admitted(registry: Registry, server: Server) -> None:
    repository = "keyless/dsse"
    ref, digest = small_image(registry, repository)
    document = dsse_bundle(registry, repository, digest, COSIGN_SIGN_PREDICATE)
    push_referrer(registry, repository, digest, document)
    assert server.decide(ref)["allowed"] is True


# Denied, each with its reason -------------------------------------------------------------

PREFIX = "signature check failed: 0 of the 1 required authorities verified (ci: "


@pytest.mark.parametrize("storage", ["legacy", "bundle"])
def test_wrong_subject_is_denied(registry: Registry, server: Server, storage: str) -> None:
    repository = f"keyless/wrong-subject-{storage}"
    ref, digest = small_image(registry, repository)
    other = "https://github.com/acme/evil/.github/workflows/release.yml@refs/tags/v1.0"
    identity = Identity(other, ISSUER, {"githubWorkflowRepository": "acme/api"})
    if storage == "legacy":
        sign_legacy(registry, repository, digest, identity)
    else:
        push_referrer(registry, repository, digest, message_bundle(digest, identity))
    message = server.denial(ref)
    assert message.startswith(f'image {ref} denied by policy "keyless": {PREFIX}')
    assert f"subject {other!r} does not match {SUBJECT!r}" in message


@pytest.mark.parametrize("storage", ["legacy", "bundle"])
def test_wrong_issuer_is_denied(registry: Registry, server: Server, storage: str) -> None:
    repository = f"keyless/wrong-issuer-{storage}"
    ref, digest = small_image(registry, repository)
    identity = Identity(SUBJECT, "https://gitlab.com", {"githubWorkflowRepository": "acme/api"})
    if storage == "legacy":
        sign_legacy(registry, repository, digest, identity)
    else:
        push_referrer(registry, repository, digest, message_bundle(digest, identity))
    message = server.denial(ref)
    assert f"{PREFIX}issuer 'https://gitlab.com' is not {ISSUER!r}" in message


def test_pattern_matching_only_part_of_the_subject_is_denied(
    registry: Registry, server: Server
) -> None:
    ref, digest = small_image(registry, "keyless/partial")
    sign_legacy(registry, "keyless/partial", digest)
    message = server.denial(ref, namespace="pattern-a")
    assert message.startswith(f'image {ref} denied by policy "keyless-pattern": {PREFIX}')
    expected = f"subject {SUBJECT!r} does not match the whole of /https://github\\.com/acme/api/"
    assert expected in message


def test_certificate_from_another_ca_is_denied(registry: Registry, server: Server) -> None:
    ref, digest = small_image(registry, "keyless/other-ca")
    sign_legacy(registry, "keyless/other-ca", digest, instance=OTHER_CA)
    message = server.denial(ref)
    assert f"{PREFIX}the certificate does not chain to a Fulcio CA of the trusted root" in message


def test_bundle_for_another_images_digest_is_denied(registry: Registry, server: Server) -> None:
    _, other_digest = small_image(registry, "keyless/other-image")
    ref, digest = small_image(registry, "keyless/stolen-bundle")
    # A valid bundle, by the right identity, copied from another image onto this one.
    document = message_bundle(digest, signed=other_digest)
    push_referrer(registry, "keyless/stolen-bundle", digest, document)
    message = server.denial(ref)
    assert f"{PREFIX}the bundle signs another artifact, not {digest}" in message


def test_referrer_of_the_wrong_artifact_type_is_not_a_signature(
    registry: Registry, server: Server
) -> None:
    ref, digest = small_image(registry, "keyless/sbom-only")
    # Even a valid bundle is ignored when the referrer does not declare itself one.
    push_referrer(registry, "keyless/sbom-only", digest, message_bundle(digest), artifact_type=SBOM)
    message = server.denial(ref)
    tag = signature_tag(digest)
    assert (
        f"{PREFIX}no keyless signature found ({tag} does not exist); no Sigstore bundle "
        f"refers to {digest}; referrers of other types: {SBOM})"
    ) in message


# Attestations and audit mode ---------------------------------------------------------------


def test_keyless_attestation_from_a_bundle_is_admitted(registry: Registry, server: Server) -> None:
    repository = "keyless/attested"
    ref, digest = small_image(registry, repository)
    push_referrer(registry, repository, digest, dsse_bundle(registry, repository, digest, SLSA))
    assert server.decide(ref, namespace="attested-a")["allowed"] is True


def test_keyless_attestation_of_another_type_is_denied(registry: Registry, server: Server) -> None:
    repository = "keyless/attested-wrong-type"
    ref, digest = small_image(registry, repository)
    document = dsse_bundle(registry, repository, digest, COSIGN_SIGN_PREDICATE)
    push_referrer(registry, repository, digest, document)
    message = server.denial(ref, namespace="attested-a")
    assert message.startswith(
        f'image {ref} denied by policy "keyless-provenance": attestation check failed for '
        f"predicate type {SLSA}: 0 of the 1 required authorities verified (builder: "
    )
    assert f"signed statement has predicate type {COSIGN_SIGN_PREDICATE!r}, not {SLSA}" in message


def test_keyless_attestation_in_the_legacy_att_layout_is_admitted(
    registry: Registry, server: Server
) -> None:
    repository = "keyless/attested-legacy"
    ref, digest = small_image(registry, repository)
    attest_legacy(registry, repository, digest)
    assert server.decide(ref, namespace="attested-a")["allowed"] is True


def test_legacy_att_layer_whose_log_entry_records_another_envelope_is_denied(
    registry: Registry, server: Server
) -> None:
    repository = "keyless/attested-legacy-swapped"
    ref, digest = small_image(registry, repository)
    attest_legacy(registry, repository, digest, logged_statement={"predicateType": SLSA})
    message = server.denial(ref, namespace="attested-a")
    assert message.startswith(
        f'image {ref} denied by policy "keyless-provenance": attestation check failed for '
        f"predicate type {SLSA}: 0 of the 1 required authorities verified (builder: "
        "log entry is for another envelope (sha256:"
    )


def test_audit_mode_admits_a_wrong_identity_with_a_warning(
    registry: Registry, server: Server
) -> None:
    repository = "keyless/audited"
    ref, digest = small_image(registry, repository)
    identity = Identity("someone@example.test", "https://accounts.google.com")
    push_referrer(registry, repository, digest, message_bundle(digest, identity))
    response = server.decide(ref, namespace="audit-a")
    assert response["allowed"] is True
    warning = response["warnings"][0]
    assert "(audit mode): signature check failed" in warning
    assert "issuer 'https://accounts.google.com' is not" in warning


# Key signatures with tlog: required ------------------------------------------------------


def sign_with_key(registry: Registry, repository: str, digest: str, *, logged: bool) -> None:
    """Push the ``.sig`` manifest of ``cosign sign --key``, with its Rekor entry when ``logged``."""
    payload = simple_signing_payload(f"{registry.host}/{repository}", digest)
    signature = sign_b64(RELEASE, payload)
    manifest, blobs = signature_manifest([(payload, signature)])
    if logged:
        entry = SIGSTORE.log_key_signature(
            public_pem(RELEASE).encode(), base64.b64decode(signature), payload
        )
        manifest["layers"][0]["annotations"]["dev.sigstore.cosign/bundle"] = rekor_bundle(entry)
    push_artifact(registry, repository, signature_tag(digest), manifest, blobs)


def test_logged_key_signature_is_admitted(registry: Registry, server: Server) -> None:
    ref, digest = small_image(registry, "keyed/logged")
    sign_with_key(registry, "keyed/logged", digest, logged=True)
    assert server.decide(ref, "tlog-web")["allowed"] is True


def test_key_signature_without_a_log_entry_is_denied(registry: Registry, server: Server) -> None:
    ref, digest = small_image(registry, "keyed/unlogged")
    sign_with_key(registry, "keyed/unlogged", digest, logged=False)
    message = server.denial(ref, "tlog-web")
    assert "release: signature verifies with key release, but no transparency-log entry" in message


# Every signature form meets every rule of the policy ---------------------------------


def signed_statement(
    subjects: list[dict[str, Any]], identity: Identity = RIGHT, predicate_type: str = ""
) -> dict[str, Any]:
    """A DSSE bundle of an in-toto statement about ``subjects``, as cosign 3 signs images."""
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": subjects,
        "predicateType": predicate_type or COSIGN_SIGN_PREDICATE,
        "predicate": {},
    }
    cert, envelope, entry = SIGSTORE.sign_dsse(identity, statement)
    return bundle(cert, entry, envelope=envelope)


def about(name: str | None, digest: str, annotations: dict[str, str] | None) -> dict[str, Any]:
    """One statement subject: ``cosign sign -a`` puts annotations on it."""
    subject: dict[str, Any] = {"digest": {"sha256": digest[7:]}}
    if name is not None:
        subject["name"] = name
    if annotations is not None:
        subject["annotations"] = annotations
    return subject


PROD = {"env": "prod"}


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("message", "a message-signature bundle carries no annotations, and the policy requires "
                    "env=prod"),
        ("dsse-elsewhere", "signed statement names repository {host}/keyless/elsewhere, not "
                           "{host}/keyless/strict-dsse-elsewhere"),
        ("dsse-no-name", "signed statement names repository none, not "
                         "{host}/keyless/strict-dsse-no-name"),
        ("dsse-unannotated", "signed statement missing annotation env=prod"),
        ("dsse-wrong-annotation", "signed statement annotation env=dev, not env=prod"),
        # The name of one subject and the digest of another are no signature of the image.
        ("dsse-borrowed", "signed statement names repository {host}/keyless/elsewhere, not "),
        ("legacy-unannotated", "missing annotation env=prod"),
    ],
)  # fmt: skip
def test_bundles_meet_annotations_and_match_reference(
    registry: Registry, server: Server, case: str, reason: str
) -> None:
    repository = f"keyless/strict-{case}"
    ref, digest = small_image(registry, repository)
    name = f"{registry.host}/{repository}"
    elsewhere = f"{registry.host}/keyless/elsewhere"
    subjects = {
        "dsse-elsewhere": [about(elsewhere, digest, PROD)],
        "dsse-no-name": [about(None, digest, PROD)],
        "dsse-unannotated": [about(name, digest, None)],
        "dsse-wrong-annotation": [about(name, digest, {"env": "dev"})],
        "dsse-borrowed": [about(elsewhere, digest, PROD), about(name, "sha256:" + "0" * 64, PROD)],
    }
    if case == "message":
        push_referrer(registry, repository, digest, message_bundle(digest))
    elif case == "legacy-unannotated":
        sign_legacy(registry, repository, digest, optional={"team": "web"})
    else:
        push_referrer(registry, repository, digest, signed_statement(subjects[case]))
    # A policy without the rules admits every one of these signatures.
    assert server.decide(ref)["allowed"] is True
    message = server.denial(ref, namespace="strict-a")
    expected = reason.format(host=registry.host)
    assert message.startswith(f'image {ref} denied by policy "keyless-strict": {PREFIX}{expected}')


@pytest.mark.parametrize("storage", ["legacy", "dsse"])
def test_signatures_meeting_every_rule_are_admitted(
    registry: Registry, server: Server, storage: str
) -> None:
    repository = f"keyless/strict-ok-{storage}"
    ref, digest = small_image(registry, repository)
    if storage == "legacy":
        sign_legacy(registry, repository, digest, optional={"env": "prod", "team": "web"})
    else:
        subject = about(f"{registry.host}/{repository}:v1", digest, {"env": "prod", "team": "web"})
        push_referrer(registry, repository, digest, signed_statement([subject]))
    assert server.decide(ref, namespace="strict-a")["allowed"] is True


def test_message_bundle_does_not_count_under_match_reference(
    registry: Registry, server: Server
) -> None:
    repository = "keyless/reference-message"
    ref, digest = small_image(registry, repository)
    push_referrer(registry, repository, digest, message_bundle(digest))
    message = server.denial(ref, namespace="reference-a")
    assert message == (
        f'image {ref} denied by policy "keyless-reference": {PREFIX}a message-signature bundle '
        "names no repository, and the policy sets matchReference)"
    )


def test_message_bundle_is_no_attestation(registry: Registry, server: Server) -> None:
    repository = "keyless/attested-message"
    ref, digest = small_image(registry, repository)
    push_referrer(registry, repository, digest, message_bundle(digest))
    message = server.denial(ref, namespace="attested-a")
    assert message.startswith(
        f'image {ref} denied by policy "keyless-provenance": attestation check failed for '
        f"predicate type {SLSA}: 0 of the 1 required authorities verified (builder: "
        "a message-signature bundle signs the bare digest; it is no attestation of predicate "
        f"type {SLSA}"
    )


# Thresholds count distinct signers ---------------------------------------------------


def test_one_keyless_signature_meets_no_threshold_of_two(
    registry: Registry, server: Server
) -> None:
    """Both identities of the policy match one certificate: it counts once."""
    repository = "keyless/two-one-signature"
    ref, digest = small_image(registry, repository)
    sign_legacy(registry, repository, digest)
    message = server.denial(ref, namespace="two-a")
    assert message == (
        f'image {ref} denied by policy "keyless-two": signature check failed: 1 of the 2 '
        f"required authorities verified (ci-any: verified, but by identity {SUBJECT!r}, "
        "already counted for ci)"
    )


def test_two_identities_meet_a_threshold_of_two(registry: Registry, server: Server) -> None:
    """The pattern authority counts the second identity, the exact one the first."""
    repository = "keyless/two-identities"
    ref, digest = small_image(registry, repository)
    sign_legacy(registry, repository, digest)
    push_referrer(registry, repository, digest, message_bundle(digest, DEPLOY))
    assert server.decide(ref, namespace="two-a")["allowed"] is True


def test_certificate_key_held_as_a_key_authority_counts_once(
    registry: Registry, server: Server
) -> None:
    """One signature verifies for the identity and for its key: one signer."""
    repository = "keyless/pair-one-signature"
    ref, digest = small_image(registry, repository)
    sign_legacy(registry, repository, digest, key=CERTIFICATE_KEY)
    message = server.denial(ref, namespace="pair-a")
    assert message == (
        f'image {ref} denied by policy "key-and-identity": signature check failed: 1 of the 2 '
        f"required authorities verified (release: verified, but by identity {SUBJECT!r}, "
        "already counted for ci)"
    )


def test_one_keyless_attestation_meets_no_threshold_of_two(
    registry: Registry, server: Server
) -> None:
    repository = "keyless/attested-two"
    ref, digest = small_image(registry, repository)
    push_referrer(registry, repository, digest, dsse_bundle(registry, repository, digest, SLSA))
    message = server.denial(ref, namespace="attested-two-a")
    assert message == (
        f'image {ref} denied by policy "keyless-attested-two": attestation check failed for '
        f"predicate type {SLSA}: 1 of the 2 required authorities verified (builder-any: "
        f"verified, but by identity {SUBJECT!r}, already counted for builder)"
    )
    other_ref, other_digest = small_image(registry, "keyless/attested-two-signers")
    for identity in (RIGHT, DEPLOY):
        statement = signed_statement([about(None, other_digest, None)], identity, SLSA)
        push_referrer(registry, "keyless/attested-two-signers", other_digest, statement)
    assert server.decide(other_ref, namespace="attested-two-a")["allowed"] is True
