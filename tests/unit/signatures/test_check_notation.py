"""Until Notation signatures are read, a notation authority never counts, and says why.

The policy loads (its trust store read, its identities parsed) and the
image carries a Notation signature the store would trust, made with that very
chain and pushed as a referrer to a real registry; the signature check must
still not count the authority: a gap in verification fails closed.
"""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tests.support.cosign import (
    generate_key,
    public_pem,
    sign_b64,
    signature_manifest,
    simple_signing_payload,
)
from tests.support.notation import JWS, descriptor, sign_jws, signing_chain
from tests.support.referrers import push_referrer
from tests.support.registry import (
    OCI_MANIFEST,
    Registry,
    default_layer,
    push_blob,
    push_image,
    push_manifest,
)
from webhook.cache.local import Caches
from webhook.checks import CheckContext
from webhook.core.deadline import Deadline
from webhook.core.errors import CheckFailed
from webhook.core.reference import parse_reference
from webhook.policy.loader import load_directory
from webhook.policy.model import NotationRef, Policy
from webhook.registry.client import RegistryClient, RegistrySettings
from webhook.signatures.check import NOTATION_NOT_VERIFIED, SignatureCheck
from webhook.signatures.cosign import signature_tag
from webhook.signatures.notation.envelope import check_target, parse_envelope
from webhook.signatures.notation.trust import verify_trust

NOTARY_SIGNATURE = "application/vnd.cncf.notary.signature"
RELEASE = generate_key("ecdsa-p256")


def load(tmp_path: Path, threshold: int, *, with_key: bool) -> Policy:
    chain = signing_chain()
    (tmp_path / "ca.pem").write_bytes(chain.certificates[-1].public_bytes(Encoding.PEM))
    (tmp_path / "release.pub").write_text(public_pem(RELEASE))
    key = "\n      - {name: release, key: {file: release.pub}}" if with_key else ""
    (tmp_path / "policy.yaml").write_text(
        textwrap.dedent(
            f"""\
            apiVersion: trustgate.dev/v1alpha1
            kind: ImagePolicy
            metadata: {{name: wabbit}}
            spec:
              registries: ["**"]
              signatures:
                threshold: {threshold}
                authorities:
                  - name: wabbit
                    notation:
                      trustStore: ca.pem
                      trustedIdentities: ["*"]
                      override: {{revocation: skip}}"""
        )
        + key
        + "\n"
    )
    (policy,) = load_directory(tmp_path).policies
    return policy


def notation_signed(
    registry: Registry, repository: str, policy: Policy | None = None
) -> tuple[str, str]:
    """An image with a Notation JWS signature referring to it; (reference, digest).

    With ``policy``, the envelope is first shown to verify under its notation
    authority: the signature is one the authority would accept.
    """
    layer = default_layer(content=repository.encode())
    digest = push_image(registry, repository, tag="v1", layers=[layer])
    manifest = registry.request(
        "GET", f"/v2/{repository}/manifests/{digest}", headers={"Accept": OCI_MANIFEST}
    )
    target = descriptor(digest, len(manifest.content), manifest.headers["Content-Type"])
    envelope = sign_jws(signing_chain(), target)
    if policy is not None:
        ref = notation_ref(policy)
        parsed = parse_envelope(JWS, envelope)
        check_target(parsed, digest, target["size"], target["mediaType"])
        result = verify_trust(parsed, ref.store, ref.identities, ref.level, dt.datetime.now(dt.UTC))
        assert result.authentic and result.signer is not None
    push_referrer(registry, repository, digest, envelope, artifact_type=NOTARY_SIGNATURE)
    return f"{registry.host}/{repository}:v1", digest


def cosign_signed(registry: Registry, repository: str, digest: str) -> None:
    """A cosign ``.sig`` signature of ``digest`` by RELEASE."""
    payload = simple_signing_payload(f"{registry.host}/{repository}", digest, None)
    manifest, blobs = signature_manifest([(payload, sign_b64(RELEASE, payload))])
    for blob in blobs.values():
        push_blob(registry, repository, blob)
    body = json.dumps(manifest).encode()
    push_manifest(registry, repository, signature_tag(digest), body, OCI_MANIFEST)


def notation_ref(policy: Policy) -> NotationRef:
    assert policy.signatures is not None
    ref = policy.signatures.authorities[0].notation
    assert ref is not None
    return ref


def verify(registry: Registry, reference: str, digest: str, policy: Policy) -> str | None:
    client = RegistryClient({registry.host: RegistrySettings(insecure=True)}, timeout=5.0)
    check = SignatureCheck(client, Caches())
    return check.run(parse_reference(reference), policy, CheckContext(Deadline(10), lambda: digest))


def test_a_notation_authority_alone_fails_closed(registry: Registry, tmp_path: Path) -> None:
    policy = load(tmp_path, 1, with_key=False)
    reference, digest = notation_signed(registry, "unit/notation-alone", policy)
    with pytest.raises(CheckFailed) as raised:
        verify(registry, reference, digest, policy)
    assert (
        "0 of the 1 required authorities verified (wabbit: notation signatures are not "
        "verified yet)" in raised.value.message
    )
    assert raised.value.check == "signatures"


def test_it_never_makes_up_a_threshold(registry: Registry, tmp_path: Path) -> None:
    reference, digest = notation_signed(registry, "unit/notation-threshold")
    cosign_signed(registry, "unit/notation-threshold", digest)
    rules = load(tmp_path, 2, with_key=True)
    with pytest.raises(CheckFailed, match=f"1 of the 2 required .*wabbit: {NOTATION_NOT_VERIFIED}"):
        verify(registry, reference, digest, rules)


def test_another_authority_still_passes_beside_it(registry: Registry, tmp_path: Path) -> None:
    reference, digest = notation_signed(registry, "unit/notation-beside")
    cosign_signed(registry, "unit/notation-beside", digest)
    assert verify(registry, reference, digest, load(tmp_path, 1, with_key=True)) == (
        "signed by release"
    )
