"""Key-signed attestation bundles, as ``cosign attest --key`` (cosign 3) writes them, end to end
through `trustgate serve`.

The bundle (v0.3) holds a DSSE envelope of an in-toto statement of the attestation's predicate
type and is pushed as an OCI 1.1 referrer of the image. It is read two ways, as in
test_cosign3_e2e.py: through ``ReferrersFront`` (the referrers API over the registry), and
straight from Debian's docker-registry, which answers 404 on that path so trustgate falls back
to the ``sha256-<hex>`` tag index.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integration.conftest import Server, serve_config, serving, small_image
from tests.integration.test_cosign3_e2e import attach
from tests.support.cosign import (
    PrivateKey,
    dsse_envelope,
    generate_key,
    in_toto_statement,
    key_bundle,
    public_pem,
    sign_statement,
)
from tests.support.referrers import ReferrersFront
from tests.support.registry import Registry
from tests.unit.signatures.test_attestations import push_attestations

pytestmark = pytest.mark.e2e

RELEASE = generate_key("ecdsa-p256")
OPS = generate_key("ecdsa-p256")
OTHER = generate_key("ecdsa-p256")
SLSA = "https://slsa.dev/provenance/v1"
VULN = "https://cosign.sigstore.dev/attestation/vuln/v1"
CI = "https://ci.acme.test/runner"
PREFIX = (
    f"attestation check failed for predicate type {SLSA}: 0 of the 1 required authorities "
    "verified (release: "
)

POLICIES = """\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: provenance}}
spec:
  match: {{namespaces: ["prod-*"]}}
  registries: {hosts}
  attestations:
    - predicateType: {slsa}
      authorities: [{{name: release, key: {{file: keys/release.pub}}}}]
---
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: built-by-ci}}
spec:
  match: {{namespaces: ["cel-*"]}}
  registries: {hosts}
  attestations:
    - predicateType: {slsa}
      authorities: [{{name: release, key: {{file: keys/release.pub}}}}]
      conditions:
        - "predicate.builder.id == '{ci}'"
        - "subject.exists(s, 'sha256:' + s.digest.sha256 == image.digest)"
---
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: two-keys}}
spec:
  match: {{namespaces: ["two-*"]}}
  registries: {hosts}
  attestations:
    - predicateType: {slsa}
      threshold: 2
      authorities:
        - {{name: release, key: {{file: keys/release.pub}}}}
        - {{name: ops, key: {{file: keys/ops.pub}}}}
"""


@pytest.fixture(scope="module")
def server(
    registry: Registry, front: ReferrersFront, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    hosts = f'["{registry.host}/**", "{front.host}/**"]'
    files = {
        "keys/release.pub": public_pem(RELEASE),
        "keys/ops.pub": public_pem(OPS),
        "attested.yaml": POLICIES.format(hosts=hosts, slsa=SLSA, ci=CI),
    }
    config = serve_config(registry.host, front.host)
    with serving(tmp_path_factory.mktemp("attestation-bundles"), files, config) as running:
        yield running


def envelope(
    name: str,
    digest: str,
    key: PrivateKey = RELEASE,
    *,
    predicate_type: str = SLSA,
    builder: str = CI,
) -> dict[str, Any]:
    """The DSSE envelope ``cosign attest --key`` signs: a statement about ``name@digest``."""
    statement = in_toto_statement(digest, name, predicate_type, {"builder": {"id": builder}})
    return dsse_envelope(statement, key)


def attested(name: str, digest: str, key: PrivateKey = RELEASE, **options: Any) -> dict[str, Any]:
    """The bundle ``cosign attest --key`` 3 writes, without a log entry."""
    return key_bundle(key, envelope=envelope(name, digest, key, **options))


# Found as referrers: the API, and the tag-schema fallback ----------------------------------


def test_attestation_bundle_found_through_the_referrers_api_is_admitted(
    registry: Registry, front: ReferrersFront, server: Server
) -> None:
    repository = "attb/api"
    _, digest = small_image(registry, repository)
    name = f"{front.host}/{repository}"
    attach(registry, repository, digest, attested(name, digest), tag_index=False)
    before = len(front.paths)
    assert server.decide(f"{name}:v1")["allowed"] is True
    asked = front.paths[before:]
    assert any(p.startswith(f"/v2/{repository}/referrers/{digest}") for p in asked), asked
    # Read from the registry itself, which has no referrers API and no tag index: nothing.
    message = server.denial(f"{registry.host}/{repository}:v1")
    assert (
        f"{PREFIX}no attestation found (sha256-{digest[7:]}.att does not exist); "
        f"no Sigstore bundle refers to {digest})"
    ) in message


def test_attestation_bundle_found_through_the_tag_fallback_is_admitted(
    registry: Registry, server: Server
) -> None:
    repository = "attb/fallback"
    _, digest = small_image(registry, repository)
    assert registry.request("GET", f"/v2/{repository}/referrers/{digest}").status_code == 404
    attach(registry, repository, digest, attested(f"{registry.host}/{repository}", digest))
    assert server.decide(f"{registry.host}/{repository}:v1")["allowed"] is True


# Conditions read the bundle's statement --------------------------------------------------


def test_conditions_hold_and_fail_on_a_bundle_statement(
    registry: Registry, front: ReferrersFront, server: Server
) -> None:
    repository = "attb/cel"
    _, digest = small_image(registry, repository)
    attach(registry, repository, digest, attested(f"{front.host}/{repository}", digest))
    assert server.decide(f"{front.host}/{repository}:v1", "cel-web")["allowed"] is True
    laptop = "attb/cel-laptop"
    _, digest = small_image(registry, laptop)
    bundle = attested(f"{front.host}/{laptop}", digest, builder="laptop\x1b[2J")
    attach(registry, laptop, digest, bundle)
    message = server.denial(f"{front.host}/{laptop}:v1", "cel-web")
    assert message == (
        f'image {front.host}/{laptop}:v1 denied by policy "built-by-ci": {PREFIX}1 of 2 '
        f"conditions held: condition \"predicate.builder.id == '{CI}'\" does not hold "
        '(saw predicate.builder.id = "laptop\\u001b[2J"))'
    )


def test_a_bundle_counts_when_the_att_layer_fails_the_conditions(
    registry: Registry, front: ReferrersFront, server: Server
) -> None:
    repository = "attb/cel-both"
    _, digest = small_image(registry, repository)
    name = f"{front.host}/{repository}"
    push_attestations(registry, repository, digest, [envelope(name, digest, builder="laptop")])
    assert "does not hold" in server.denial(f"{name}:v1", "cel-web")
    other = "attb/cel-both-bundle"
    _, digest = small_image(registry, other)
    name = f"{front.host}/{other}"
    push_attestations(registry, other, digest, [envelope(name, digest, builder="laptop")])
    attach(registry, other, digest, attested(name, digest))
    assert server.decide(f"{name}:v1", "cel-web")["allowed"] is True


# Denied, each saying why -------------------------------------------------------------------


def _tampered(name: str, digest: str) -> dict[str, Any]:
    document = attested(name, digest, builder="laptop")
    dsse = document["dsseEnvelope"]
    statement = json.loads(base64.b64decode(dsse["payload"]))
    statement["predicate"]["builder"]["id"] = CI
    dsse["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    return document


CASES: dict[str, tuple[Callable[[str, str], dict[str, Any]], str]] = {
    "another-digest": (
        lambda name, _: attested(name, "sha256:" + "cd" * 32),
        "signed statement is about another subject, not sha256:",
    ),
    "another-key": (
        lambda name, digest: attested(name, digest, OTHER),
        "bundle envelope does not verify with key release)",
    ),
    "wrong-predicate-type": (
        lambda name, digest: attested(name, digest, predicate_type=VULN),
        f"signed statement has predicate type '{VULN}', not {SLSA})",
    ),
    "signature-bundle": (
        lambda name, digest: key_bundle(
            RELEASE, envelope=dsse_envelope(sign_statement(digest, name), RELEASE)
        ),
        f"signed statement has predicate type 'https://sigstore.dev/cosign/sign/v1', not {SLSA})",
    ),
    "tampered": (_tampered, "bundle envelope does not verify with key release)"),
    "message-signature": (
        lambda _, digest: key_bundle(RELEASE, digest=digest),
        "a message-signature bundle signs the bare digest; it is no attestation of predicate "
        f"type {SLSA})",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bundles_that_are_not_an_attestation_of_this_image_are_denied(
    registry: Registry, front: ReferrersFront, server: Server, case: str
) -> None:
    build, reason = CASES[case]
    repository = f"attb/denied-{case}"
    _, digest = small_image(registry, repository)
    name = f"{front.host}/{repository}"
    attach(registry, repository, digest, build(name, digest))
    message = server.denial(f"{name}:v1")
    assert message.startswith(f'image {name}:v1 denied by policy "provenance": {PREFIX}')
    assert reason in message


# Thresholds count keys, not forms or authority names -------------------------------------


def test_one_keys_att_layer_and_bundle_count_once_toward_threshold_two(
    registry: Registry, front: ReferrersFront, server: Server
) -> None:
    repository = "attb/two"
    _, digest = small_image(registry, repository)
    name = f"{front.host}/{repository}"
    push_attestations(registry, repository, digest, [envelope(name, digest)])
    attach(registry, repository, digest, attested(name, digest))
    message = server.denial(f"{name}:v1", "two-web")
    # Two forms of one key are one signer: release counts, ops is missing.
    assert (
        f"predicate type {SLSA}: 1 of the 2 required authorities verified (ops: attestation "
        "signature does not verify with key ops)"
    ) in message
    both = "attb/two-keys"
    _, digest = small_image(registry, both)
    name = f"{front.host}/{both}"
    push_attestations(registry, both, digest, [envelope(name, digest)])
    attach(registry, both, digest, attested(name, digest, OPS))
    assert server.decide(f"{name}:v1", "two-web")["allowed"] is True
