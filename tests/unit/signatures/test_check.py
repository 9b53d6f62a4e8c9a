"""SignatureCheck against a real registry: annotations, matchReference and perPlatform."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from tests.support.cosign import (
    PrivateKey,
    generate_key,
    public_pem,
    sign_b64,
    signature_manifest,
    simple_signing_payload,
)
from tests.support.registry import (
    OCI_INDEX,
    OCI_MANIFEST,
    Registry,
    default_layer,
    push_blob,
    push_image,
    push_index,
    push_manifest,
)
from webhook.cache.local import Caches
from webhook.checks import CheckContext
from webhook.core.deadline import Deadline
from webhook.core.errors import CheckFailed
from webhook.core.reference import ImageRef, parse_reference
from webhook.policy.globs import Glob
from webhook.policy.model import Attestation, Authority, Keyless, KeyRef, Match, Policy, Signatures
from webhook.registry.client import DOCKER_MANIFEST_LIST, Manifest, RegistryClient, RegistrySettings
from webhook.signatures.check import (
    MAX_PLATFORMS,
    SignatureCheck,
    index_platforms,
    trust_fingerprint,
)
from webhook.signatures.cosign import signature_tag

RELEASE = generate_key("ecdsa-p256")
AUTHORITY = Authority("release", key=KeyRef(pem=public_pem(RELEASE)))
PLATFORMS = [
    {"architecture": "amd64", "os": "linux"},
    {"architecture": "arm64", "os": "linux", "variant": "v8"},
]


def sign(
    registry: Registry,
    repository: str,
    digest: str,
    key: PrivateKey = RELEASE,
    *,
    optional: Mapping[str, Any] | None = None,
    reference: str | None = None,
) -> None:
    """Push a one-layer cosign ``.sig`` manifest for ``digest``."""
    name = reference or f"{registry.host}/{repository}"
    payload = simple_signing_payload(name, digest, optional)
    manifest, blobs = signature_manifest([(payload, sign_b64(key, payload))])
    for blob in blobs.values():
        push_blob(registry, repository, blob)
    body = json.dumps(manifest).encode()
    push_manifest(registry, repository, signature_tag(digest), body, OCI_MANIFEST)


def policy(**signatures: Any) -> Policy:
    section = Signatures(threshold=1, authorities=(AUTHORITY,), **signatures)
    return Policy("p", "enforce", Match(), (Glob("**"),), signatures=section)


def fresh(registry: Registry) -> SignatureCheck:
    """A check with empty caches: failures are remembered for a while."""
    client = RegistryClient({registry.host: RegistrySettings(insecure=True)}, timeout=5.0)
    return SignatureCheck(client, Caches())


@pytest.fixture
def check(registry: Registry) -> SignatureCheck:
    return fresh(registry)


def run(check: SignatureCheck, image: ImageRef, digest: str, rules: Policy) -> None:
    check.run(image, rules, CheckContext(Deadline(10), lambda: digest))


def image(registry: Registry, repository: str, content: bytes) -> tuple[ImageRef, str]:
    layer = default_layer(content=content)
    digest = push_image(registry, repository, tag="v1", layers=[layer])
    return parse_reference(f"{registry.host}/{repository}:v1"), digest


# -- annotations and matchReference ----------------------------------------------


@pytest.mark.parametrize(
    ("optional", "error"),
    [
        ({"env": "prod", "team": "web"}, None),
        ({"env": "prod", "team": "web", "extra": "x"}, None),
        ({"team": "web"}, "release: missing annotation env=prod"),
        ({"env": "dev", "team": "web"}, "release: annotation env=dev, not env=prod"),
        (None, "release: missing annotation env=prod"),
    ],
)
def test_required_annotations(
    registry: Registry, check: SignatureCheck, optional: dict[str, str] | None, error: str | None
) -> None:
    repo = f"unit/annotations-{hashlib.sha256(repr(optional).encode()).hexdigest()[:12]}"
    ref, digest = image(registry, repo, repo.encode())
    sign(registry, repo, digest, optional=optional)
    rules = policy(annotations=(("env", "prod"), ("team", "web")))
    run(check, ref, digest, policy())  # without the constraint any signature counts
    if error is None:
        run(check, ref, digest, rules)
        return
    with pytest.raises(CheckFailed, match=f"0 of the 1 required authorities verified .*{error}"):
        run(check, ref, digest, rules)


def test_match_reference(registry: Registry, check: SignatureCheck) -> None:
    ref, digest = image(registry, "unit/reference", b"reference")
    sign(registry, "unit/reference", digest, reference=f"{registry.host}/unit/elsewhere:v1")
    run(check, ref, digest, policy())
    with pytest.raises(
        CheckFailed,
        match=f"release: signed for repository {registry.host}/unit/elsewhere:v1, "
        f"not {registry.host}/unit/reference",
    ):
        run(check, ref, digest, policy(match_reference=True))


def test_match_reference_accepts_tags_and_digests(
    registry: Registry, check: SignatureCheck
) -> None:
    ref, digest = image(registry, "unit/reference-ok", b"reference-ok")
    sign(registry, "unit/reference-ok", digest, reference=f"{registry.host}/unit/reference-ok:v9")
    run(check, ref, digest, policy(match_reference=True))


# -- perPlatform -----------------------------------------------------------------


def multi_arch(registry: Registry, repository: str) -> tuple[ImageRef, str, list[str]]:
    children = [
        push_image(registry, repository, tag=None, layers=[default_layer(content=p.encode())])
        for p in ("amd64", "arm64")
    ]
    index = push_index(registry, repository, list(zip(children, PLATFORMS, strict=True)))
    return parse_reference(f"{registry.host}/{repository}:latest"), index, children


def test_per_platform_needs_every_platform_signed(
    registry: Registry, check: SignatureCheck
) -> None:
    ref, index, (amd64, arm64) = multi_arch(registry, "unit/multi")
    sign(registry, "unit/multi", index)
    run(check, ref, index, policy())
    with pytest.raises(CheckFailed) as raised:
        run(check, ref, index, policy(per_platform=True))
    assert raised.value.check == "signatures"
    assert raised.value.message.startswith(
        f"signature check failed for platform linux/amd64 ({amd64}): "
        "0 of the 1 required authorities verified (release: no signature found"
    )
    sign(registry, "unit/multi", amd64)
    with pytest.raises(CheckFailed, match=rf"for platform linux/arm64/v8 \({arm64}\)"):
        run(fresh(registry), ref, index, policy(per_platform=True))
    sign(registry, "unit/multi", arm64)
    run(fresh(registry), ref, index, policy(per_platform=True))


def test_per_platform_still_needs_the_index_signed(
    registry: Registry, check: SignatureCheck
) -> None:
    ref, index, children = multi_arch(registry, "unit/children-only")
    for child in children:
        sign(registry, "unit/children-only", child)
    with pytest.raises(
        CheckFailed, match=r"check signatures: signature check failed: 0 of the 1 required"
    ):
        run(check, ref, index, policy(per_platform=True))


def test_per_platform_judges_an_annotated_runnable_child(
    registry: Registry, check: SignatureCheck
) -> None:
    """An unsigned linux/amd64 child does not hide behind an attestation annotation."""
    ref, index, (amd64, arm64) = multi_arch(registry, "unit/annotated-child")
    data = json.loads(
        registry.request(
            "GET", f"/v2/unit/annotated-child/manifests/{index}", headers={"Accept": OCI_INDEX}
        ).content
    )
    data["manifests"][1]["platform"] = PLATFORMS[0]  # a second linux/amd64 image
    data["manifests"][1]["annotations"] = ATTESTATION
    body = json.dumps(data).encode()
    index = push_manifest(registry, "unit/annotated-child", "latest", body, OCI_INDEX)
    for digest in (index, amd64):
        sign(registry, "unit/annotated-child", digest)
    with pytest.raises(CheckFailed, match=rf"for platform linux/amd64 \({arm64}\): 0 of the 1"):
        run(check, ref, index, policy(per_platform=True))


def test_threshold_counts_a_key_once_however_many_authorities_hold_it(
    registry: Registry, check: SignatureCheck
) -> None:
    """Two names for one key (the loader refuses them; the check does not rely on it)."""
    ref, digest = image(registry, "unit/one-key-two-names", b"one-key-two-names")
    sign(registry, "unit/one-key-two-names", digest)
    twin = Authority("release-copy", key=KeyRef(pem=public_pem(RELEASE)))
    rules = Policy(
        "p",
        "enforce",
        Match(),
        (Glob("**"),),
        signatures=Signatures(threshold=2, authorities=(AUTHORITY, twin)),
    )
    with pytest.raises(CheckFailed) as raised:
        run(check, ref, digest, rules)
    assert "1 of the 2 required authorities verified (release-copy: verified, but by key " in (
        raised.value.message
    )
    assert raised.value.message.endswith(", already counted for release)")


def test_per_platform_on_a_single_image_is_the_plain_check(
    registry: Registry, check: SignatureCheck
) -> None:
    ref, digest = image(registry, "unit/single", b"single")
    sign(registry, "unit/single", digest)
    run(check, ref, digest, policy(per_platform=True))


def _index(entries: list[dict[str, Any]], media_type: str = OCI_INDEX) -> Manifest:
    data = {"schemaVersion": 2, "mediaType": media_type, "manifests": entries}
    return Manifest("sha256:" + "0" * 64, media_type, json.dumps(data).encode(), data)


def _entry(n: int, platform: object = None, **extra: Any) -> dict[str, Any]:
    entry = {"mediaType": OCI_MANIFEST, "digest": f"sha256:{n:064x}", "size": 1, **extra}
    if platform is not None:
        entry["platform"] = platform
    return entry


ATTESTATION = {"vnd.docker.reference.type": "attestation-manifest"}
UNKNOWN = {"os": "unknown", "architecture": "unknown"}


def test_index_platforms_reads_oci_and_docker_lists() -> None:
    entries = [
        _entry(1, PLATFORMS[0]),
        _entry(2, PLATFORMS[1]),
        _entry(3),
        _entry(4, {"os": "linux", "architecture": "arm\n64"}),
        _entry(5, UNKNOWN, annotations=ATTESTATION),
    ]
    expected = (
        ("linux/amd64", f"sha256:{1:064x}"),
        ("linux/arm64/v8", f"sha256:{2:064x}"),
        ("(index entry 2, no platform)", f"sha256:{3:064x}"),
        ("(index entry 3, platform 'linux/arm\\n64')", f"sha256:{4:064x}"),
    )
    assert index_platforms(_index(entries)) == expected
    assert index_platforms(_index(entries, DOCKER_MANIFEST_LIST)) == expected


@pytest.mark.parametrize(
    ("platform", "annotations"),
    [
        # A runnable platform is judged, whatever the entry's annotations claim.
        (PLATFORMS[0], ATTESTATION),
        (PLATFORMS[0], {"vnd.docker.reference.type": "anything"}),
        ({"os": "linux", "architecture": "unknown"}, ATTESTATION),
        ({"os": "unknown", "architecture": "amd64"}, ATTESTATION),
        (None, ATTESTATION),
        # unknown/unknown is skipped only as a buildx attestation manifest.
        (UNKNOWN, {"vnd.docker.reference.type": "sbom"}),
        (UNKNOWN, None),
    ],
)
def test_index_platforms_judges_every_entry_a_runtime_could_pull(
    platform: dict[str, str] | None, annotations: dict[str, str] | None
) -> None:
    extra = {} if annotations is None else {"annotations": annotations}
    entries = [_entry(1, PLATFORMS[0]), _entry(2, platform, **extra)]
    found = index_platforms(_index(entries))
    assert [digest for _, digest in found] == [f"sha256:{1:064x}", f"sha256:{2:064x}"]


def test_index_platforms_refuses_a_nested_index() -> None:
    entries = [_entry(1, PLATFORMS[0]), {**_entry(2, PLATFORMS[1]), "mediaType": OCI_INDEX}]
    with pytest.raises(CheckFailed, match=r"entry 1 \(linux/arm64/v8\) is itself an image index"):
        index_platforms(_index(entries))


def test_index_platforms_of_an_image_is_empty() -> None:
    data = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}
    assert index_platforms(Manifest("sha256:" + "0" * 64, OCI_MANIFEST, b"{}", data)) == ()


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([_entry(n, PLATFORMS[0]) for n in range(MAX_PLATFORMS + 1)], "lists 17 platform images"),
        ([{"digest": "sha256:abc", "platform": PLATFORMS[0]}], "entry 0 has no valid digest"),
    ],
)
def test_index_platforms_refuses(entries: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(CheckFailed, match=message):
        index_platforms(_index(entries))


def test_index_platforms_up_to_the_cap() -> None:
    entries = [_entry(n, PLATFORMS[0]) for n in range(MAX_PLATFORMS)]
    assert len(index_platforms(_index(entries))) == MAX_PLATFORMS


def test_index_without_manifests_list_is_refused() -> None:
    data: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX}
    with pytest.raises(CheckFailed, match="has no manifests list"):
        index_platforms(Manifest("sha256:" + "0" * 64, OCI_INDEX, b"{}", data))


def test_cache_keys_name_the_trusted_roots_though_the_sections_compare_equal() -> None:
    """The policy dataclasses leave ``root_digest`` out of equality, so a memo keyed by the
    section alone would hand a rotated root the old root's key (and its outcomes)."""
    old = Keyless(
        issuer="https://issuer", subject="ci", trusted_root="r.json", root_digest="a" * 64
    )
    new = replace(old, root_digest="b" * 64)
    keyed = KeyRef(pem="PEM", tlog_required=True, trusted_root="r.json", root_digest="a" * 64)
    for before, after in (
        (Authority("ci", keyless=old), Authority("ci", keyless=new)),
        (
            Authority("release", key=keyed),
            Authority("release", key=replace(keyed, root_digest="b")),
        ),
    ):
        first, second = (
            Attestation("https://slsa.dev/provenance/v1", (before,)),
            Attestation("https://slsa.dev/provenance/v1", (after,)),
        )
        assert first == second  # what made the memoised fingerprint stale
        assert trust_fingerprint(first, first.authorities) == trust_fingerprint(
            first, first.authorities
        )
        assert trust_fingerprint(first, first.authorities) != trust_fingerprint(
            second, second.authorities
        )
