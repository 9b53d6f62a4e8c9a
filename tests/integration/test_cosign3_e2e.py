"""Key-signed Sigstore bundles, as cosign 3 writes them, end to end through `trustgate serve`.

``cosign sign --key`` (cosign 3) pushes a v0.3 bundle as an OCI 1.1 referrer of the image:
a DSSE envelope of an in-toto statement (predicate type ``https://sigstore.dev/cosign/sign/v1``,
subject the image digest, ``-a`` annotations on the subject), or a message signature over the
digest. Images are read two ways:

- straight from Debian's docker-registry (distribution 2.8), which has no referrers API: it
  answers 404 and trustgate falls back to the ``sha256-<hex>`` tag index;
- through ``ReferrersFront`` (tests/support/referrers.py), which serves the referrers API
  over the same
  registry, computed from the stored manifests' ``subject`` fields as the distribution spec says.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.integration.conftest import Server, serve_config, serving, small_image
from tests.support.cosign import (
    BUNDLE_V03,
    PrivateKey,
    dsse_envelope,
    generate_key,
    in_toto_statement,
    key_bundle,
    public_pem,
    sign_digest,
    sign_statement,
)
from tests.support.referrers import ReferrersFront, push_referrer
from tests.support.registry import Registry
from tests.support.sigstore_instance import (
    Identity,
    SigstoreInstance,
    bundle,
    dsse_key_body,
    hashedrekord_v2_body,
    pae,
    tlog_entry,
)
from tests.support.tsa import TimestampAuthority

pytestmark = pytest.mark.e2e

RELEASE = generate_key("ecdsa-p256")
OPS = generate_key("ecdsa-p256")
OTHER = generate_key("ecdsa-p256")
ISSUER = "https://token.actions.githubusercontent.com"
SIGSTORE = SigstoreInstance()
TSA = SIGSTORE.tsa = TimestampAuthority()
CI = Identity("https://github.com/acme/api/.github/workflows/release.yml@refs/tags/v1", ISSUER)
SLSA = "https://slsa.dev/provenance/v1"
DATA = Path(__file__).parents[1] / "data" / "conformance"
PREFIX = "signature check failed: 0 of the 1 required authorities verified (release: "

RELEASE_KEY = "      - name: release\n        key: {file: keys/release.pub}\n"


def policy(
    name: str, namespace: str, hosts: str, rules: str = "", authorities: str = RELEASE_KEY
) -> str:
    """An ImagePolicy of key authorities for images of ``hosts`` in ``namespace``-*."""
    return (
        f"apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: {name}}}\n"
        f'spec:\n  match: {{namespaces: ["{namespace}-*"]}}\n  registries: {hosts}\n'
        f"  signatures:\n{rules}    authorities:\n{authorities}"
    )


def policy_file(registry: Registry, front: ReferrersFront) -> str:
    hosts = f'["{registry.host}/**", "{front.host}/**"]'
    tlog = "{file: keys/release.pub, tlog: required, trustedRoot: keys/trusted_root.json}"
    ops = "      - name: ops\n        key: {file: keys/ops.pub}\n"
    keyless = (
        f"      - name: ci\n        keyless: {{issuer: {ISSUER}, subject: {CI.subject},"
        " trustedRoot: keys/trusted_root.json}\n"
    )
    return "---\n".join(
        [
            policy("cosign3", "prod", hosts),
            policy(
                "cosign3-strict",
                "strict",
                hosts,
                "    annotations: {env: prod}\n    matchReference: true\n",
            ),
            policy(
                "cosign3-tlog",
                "tlog",
                hosts,
                authorities=f"      - name: release\n        key: {tlog}\n",
            ),
            policy("cosign3-two", "two", hosts, "    threshold: 2\n", RELEASE_KEY + ops),
            policy("cosign3-keyless", "keyless", hosts, authorities=keyless),
        ]
    )


@pytest.fixture(scope="module")
def server(
    registry: Registry, front: ReferrersFront, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    files = {
        "keys/release.pub": public_pem(RELEASE),
        "keys/ops.pub": public_pem(OPS),
        "keys/trusted_root.json": SIGSTORE.trusted_root_json(),
        "cosign3.yaml": policy_file(registry, front),
    }
    config = serve_config(registry.host, front.host)
    with serving(tmp_path_factory.mktemp("cosign3"), files, config) as running:
        yield running


def attach(
    registry: Registry,
    repository: str,
    digest: str,
    document: dict[str, Any],
    *,
    tag_index: bool = True,
) -> str:
    raw = json.dumps(document).encode()
    return push_referrer(
        registry, repository, digest, raw, artifact_type=BUNDLE_V03, tag_index=tag_index
    )


def signed(
    name: str, digest: str, key: PrivateKey = RELEASE, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    """The DSSE bundle ``cosign sign --key`` 3 writes, without a log entry."""
    return key_bundle(key, envelope=dsse_envelope(sign_statement(digest, name, annotations), key))


# Found as referrers: the API, and the tag-schema fallback ------------------------------


def test_dsse_key_bundle_found_through_the_referrers_api_is_admitted(
    registry: Registry, front: ReferrersFront, server: Server
) -> None:
    repository = "cosign3/api"
    _, digest = small_image(registry, repository)
    # No tag index: only a registry serving the referrers API can list this bundle.
    attach(
        registry, repository, digest, signed(f"{front.host}/{repository}", digest), tag_index=False
    )
    before = len(front.paths)
    assert server.decide(f"{front.host}/{repository}:v1")["allowed"] is True
    asked = front.paths[before:]
    assert any(p.startswith(f"/v2/{repository}/referrers/{digest}") for p in asked), asked
    assert not any(p.endswith(digest.replace(":", "-")) for p in asked), asked
    # The same image read from the registry itself, which has no API: nothing is found.
    message = server.denial(f"{registry.host}/{repository}:v1")
    tag = f"sha256-{digest[7:]}.sig"
    missing = f"no signature found ({tag} does not exist); no Sigstore bundle refers to {digest})"
    assert f"{PREFIX}{missing}" in message


def test_dsse_key_bundle_found_through_the_tag_fallback_is_admitted(
    registry: Registry, server: Server
) -> None:
    repository = "cosign3/fallback"
    _, digest = small_image(registry, repository)
    assert registry.request("GET", f"/v2/{repository}/referrers/{digest}").status_code == 404
    attach(registry, repository, digest, signed(f"{registry.host}/{repository}", digest))
    assert server.decide(f"{registry.host}/{repository}:v1")["allowed"] is True


def test_message_signature_key_bundle_is_admitted(
    registry: Registry, front: ReferrersFront, server: Server
) -> None:
    repository = "cosign3/message"
    _, digest = small_image(registry, repository)
    attach(registry, repository, digest, key_bundle(RELEASE, digest=digest))
    assert server.decide(f"{front.host}/{repository}:v1")["allowed"] is True
    # A message signature carries no annotations and names no repository.
    message = server.denial(f"{front.host}/{repository}:v1", "strict-web")
    assert (
        "a message-signature bundle carries no annotations, and the policy requires env=prod"
        in message
    )


# Denied, each saying why ------------------------------------------------------------------


def _denied_with(
    registry: Registry,
    front: ReferrersFront,
    server: Server,
    repository: str,
    build: Any,
    namespace: str = "prod-web",
) -> str:
    _, digest = small_image(registry, repository)
    attach(registry, repository, digest, build(f"{front.host}/{repository}", digest))
    return server.denial(f"{front.host}/{repository}:v1", namespace)


def test_bundle_for_another_digest_is_denied(
    registry: Registry, front: ReferrersFront, server: Server
) -> None:
    other = "sha256:" + "cd" * 32
    message = _denied_with(
        registry, front, server, "cosign3/elsewhere", lambda name, _: signed(name, other)
    )
    assert f"{PREFIX}signed statement is about another subject, not sha256:" in message
    message = _denied_with(
        registry,
        front,
        server,
        "cosign3/elsewhere-message",
        lambda _, __: key_bundle(RELEASE, digest=other),
    )
    assert f"{PREFIX}the bundle signs another artifact ({'cd' * 32})" in message


def test_bundle_signed_with_another_key_is_denied(
    registry: Registry, front: ReferrersFront, server: Server
) -> None:
    message = _denied_with(
        registry, front, server, "cosign3/other-key", lambda n, d: signed(n, d, OTHER)
    )
    assert f"{PREFIX}bundle envelope does not verify with key release)" in message


def test_tampered_envelope_is_denied(
    registry: Registry, front: ReferrersFront, server: Server
) -> None:
    def tampered(name: str, digest: str) -> dict[str, Any]:
        document = signed(name, digest)
        envelope = document["dsseEnvelope"]
        statement = json.loads(base64.b64decode(envelope["payload"]))
        statement["subject"][0]["annotations"] = {"env": "prod"}
        envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
        return document

    message = _denied_with(registry, front, server, "cosign3/tampered", tampered, "strict-web")
    assert "bundle envelope does not verify with key release" in message


def test_missing_annotation_and_other_repository_are_denied(
    registry: Registry, front: ReferrersFront, server: Server
) -> None:
    message = _denied_with(registry, front, server, "cosign3/unannotated", signed, "strict-web")
    assert "signed statement missing annotation env=prod" in message
    message = _denied_with(
        registry,
        front,
        server,
        "cosign3/renamed",
        lambda _, d: signed(f"{front.host}/cosign3/elsewhere", d, annotations={"env": "prod"}),
        "strict-web",
    )
    assert f"signed statement names repository {front.host}/cosign3/elsewhere" in message
    repository = "cosign3/annotated"
    _, digest = small_image(registry, repository)
    attach(
        registry,
        repository,
        digest,
        signed(f"{front.host}/{repository}", digest, annotations={"env": "prod"}),
    )
    assert server.decide(f"{front.host}/{repository}:v1", "strict-web")["allowed"] is True


@pytest.mark.parametrize(
    ("predicate_type", "payload_type", "reason"),
    [
        (
            SLSA,
            "application/vnd.in-toto+json",
            f"signed statement has predicate type '{SLSA}', not https://sigstore.dev/cosign/sign/v1",
        ),
        (
            "https://sigstore.dev/cosign/sign/v1",
            "application/json",
            "signed payload type 'application/json' is not application/vnd.in-toto+json",
        ),
    ],
)
def test_wrong_predicate_or_payload_type_is_denied(
    registry: Registry,
    front: ReferrersFront,
    server: Server,
    predicate_type: str,
    payload_type: str,
    reason: str,
) -> None:
    def build(name: str, digest: str) -> dict[str, Any]:
        statement = in_toto_statement(digest, name, predicate_type, {})
        return key_bundle(
            RELEASE, envelope=dsse_envelope(statement, RELEASE, payload_type=payload_type)
        )

    repository = f"cosign3/type-{hashlib.sha256(reason.encode()).hexdigest()[:8]}"
    assert f"{PREFIX}{reason})" in _denied_with(registry, front, server, repository, build)


def test_two_bundles_of_one_key_count_once_toward_a_threshold(
    registry: Registry, front: ReferrersFront, server: Server
) -> None:
    repository = "cosign3/two"
    _, digest = small_image(registry, repository)
    attach(registry, repository, digest, signed(f"{front.host}/{repository}", digest))
    attach(registry, repository, digest, key_bundle(RELEASE, digest=digest))
    message = server.denial(f"{front.host}/{repository}:v1", "two-web")
    assert "1 of the 2 required authorities verified (ops: " in message
    both = "cosign3/two-keys"
    _, digest = small_image(registry, both)
    attach(registry, both, digest, signed(f"{front.host}/{both}", digest))
    attach(registry, both, digest, key_bundle(OPS, digest=digest))
    assert server.decide(f"{front.host}/{both}:v1", "two-web")["allowed"] is True


# tlog: required -- Rekor v1 and Rekor v2 entries, timestamps -----------------------------


def _logged(name: str, digest: str, *, v2: bool) -> dict[str, Any]:
    envelope = dsse_envelope(sign_statement(digest, name), RELEASE)
    if v2:
        payload = base64.b64decode(envelope["payload"])
        der = RELEASE.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        signed_digest = hashlib.sha256(pae(envelope["payloadType"], payload)).digest()
        signature = base64.b64decode(envelope["signatures"][0]["sig"])
        entry = SIGSTORE.tlog.append(hashedrekord_v2_body(der, signature, signed_digest))
        return key_bundle(
            RELEASE,
            envelope=envelope,
            tlog_entries=[tlog_entry(entry, promise=False, version="0.0.2")],
        )
    entry = SIGSTORE.tlog.append(dsse_key_body(public_pem(RELEASE).encode(), envelope))
    return key_bundle(RELEASE, envelope=envelope, tlog_entries=[tlog_entry(entry)])


@pytest.mark.parametrize("v2", [False, True], ids=["rekor-v1-dsse", "rekor-v2-hashedrekord"])
def test_logged_key_bundle_is_admitted_with_tlog_required(
    registry: Registry, front: ReferrersFront, server: Server, v2: bool
) -> None:
    repository = f"cosign3/logged-{'v2' if v2 else 'v1'}"
    _, digest = small_image(registry, repository)
    attach(registry, repository, digest, _logged(f"{front.host}/{repository}", digest, v2=v2))
    assert server.decide(f"{front.host}/{repository}:v1", "tlog-web")["allowed"] is True


def test_unlogged_or_falsely_logged_key_bundle_is_denied_with_tlog_required(
    registry: Registry, front: ReferrersFront, server: Server
) -> None:
    message = _denied_with(registry, front, server, "cosign3/unlogged", signed, "tlog-web")
    assert "but the bundle has no transparency-log entry (tlog: required)" in message

    def other_log(name: str, digest: str) -> dict[str, Any]:
        envelope = dsse_envelope(sign_statement(digest, name), RELEASE)
        entry = SigstoreInstance("elsewhere").tlog.append(
            dsse_key_body(public_pem(RELEASE).encode(), envelope)
        )
        return key_bundle(RELEASE, envelope=envelope, tlog_entries=[tlog_entry(entry)])

    message = _denied_with(registry, front, server, "cosign3/other-log", other_log, "tlog-web")
    assert "log entry signed by an unknown log" in message

    def forged_proof(name: str, digest: str) -> dict[str, Any]:
        document = _logged(name, digest, v2=True)
        proof = document["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
        proof["rootHash"] = base64.b64encode(b"\1" * 32).decode()
        return document

    message = _denied_with(
        registry, front, server, "cosign3/forged-proof", forged_proof, "tlog-web"
    )
    assert "log entry does not verify with trusted root" in message


def _stamped(document: dict[str, Any], stamp: bytes) -> dict[str, Any]:
    document["verificationMaterial"]["timestampVerificationData"] = {
        "rfc3161Timestamps": [{"signedTimestamp": base64.b64encode(stamp).decode()}]
    }
    return document


def _signature(document: dict[str, Any]) -> bytes:
    return base64.b64decode(document["dsseEnvelope"]["signatures"][0]["sig"])


def test_rekor_v2_key_bundle_with_a_timestamp_is_admitted(
    registry: Registry, front: ReferrersFront, server: Server
) -> None:
    """What cosign 3 writes with a Rekor v2 signing config: a hashedrekord 0.0.2 entry and an
    RFC 3161 timestamp, here of the test root's timestamp authority."""
    repository = "cosign3/stamped"
    _, digest = small_image(registry, repository)
    document = _logged(f"{front.host}/{repository}", digest, v2=True)
    attach(registry, repository, digest, _stamped(document, TSA.stamp(_signature(document))))
    assert server.decide(f"{front.host}/{repository}:v1", "tlog-web")["allowed"] is True


def test_timestamp_of_another_authority_or_signature_is_denied(
    registry: Registry, front: ReferrersFront, server: Server
) -> None:
    real = DATA / "managed-key-happy-path" / "bundle.sigstore.json"
    stamps = json.loads(real.read_bytes())["verificationMaterial"]["timestampVerificationData"]
    production = base64.b64decode(stamps["rfc3161Timestamps"][0]["signedTimestamp"])
    reason = (
        "signature verifies with key release, but signed timestamp 0 does not verify with a "
        "timestamp authority of trusted root"
    )
    for number, stamp in enumerate([production, TSA.stamp(b"another signature")]):
        message = _denied_with(
            registry,
            front,
            server,
            f"cosign3/misstamped-{number}",
            lambda name, digest: _stamped(_logged(name, digest, v2=False), stamp),  # noqa: B023
            "tlog-web",
        )
        assert reason in message


def test_keyless_rekor_v2_bundle_with_a_timestamp_is_admitted(
    registry: Registry, front: ReferrersFront, server: Server
) -> None:
    """The keyless counterpart, verified by sigstore-python: a Fulcio-style certificate, a
    Rekor v2 hashedrekord 0.0.2 entry and the timestamp that gives it a time."""
    repository = "cosign3/keyless-v2"
    _, digest = small_image(registry, repository)
    hex_digest = digest.partition(":")[2]
    cert, signature, entry = SIGSTORE.sign_digest(CI, hex_digest)
    document = bundle(cert, entry, signature=signature, digest_hex=hex_digest)
    der = cert.public_bytes(Encoding.DER)
    body = hashedrekord_v2_body(der, signature, bytes.fromhex(hex_digest), certificate=True)
    logged = SIGSTORE.tlog.append(body)
    document["verificationMaterial"]["tlogEntries"] = [
        tlog_entry(logged, promise=False, version="0.0.2")
    ]
    attach(registry, repository, digest, _stamped(document, TSA.stamp(signature)))
    assert server.decide(f"{front.host}/{repository}:v1", "keyless-web")["allowed"] is True
    unstamped = "cosign3/keyless-v2-unstamped"
    _, digest = small_image(registry, unstamped)
    document["verificationMaterial"].pop("timestampVerificationData")
    attach(registry, unstamped, digest, document)
    message = server.denial(f"{front.host}/{unstamped}:v1", "keyless-web")
    assert "the bundle has neither a signed entry timestamp (Rekor v1) nor an RFC 3161" in message


def test_sign_digest_helper_matches_the_key(registry: Registry) -> None:
    """The message-signature helper signs what the verifier checks: guard for the tests above."""
    from webhook.trust.keys import load_public_key, verify_digest

    digest = "sha256:" + "ef" * 32
    key = load_public_key(public_pem(RELEASE), source="release")
    assert verify_digest(key, sign_digest(RELEASE, digest), bytes.fromhex("ef" * 32))
    assert not verify_digest(key, sign_digest(OTHER, digest), bytes.fromhex("ef" * 32))
