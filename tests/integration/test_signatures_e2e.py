"""Key-based cosign signatures, end to end: a real registry, real signatures, `trustgate serve`."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import (
    Server,
    serve_config,
    serving,
    trustgate_command,
)
from tests.support.cosign import (
    generate_key,
    public_pem,
    sign_b64,
    signature_manifest,
    simple_signing_payload,
)
from tests.support.cosign import push_signature as sign
from tests.support.hostile import Hanging
from tests.support.kube import pod_spec, review, workload
from tests.support.registry import (
    OCI_INDEX,
    OCI_MANIFEST,
    Registry,
    default_layer,
    manifest_descriptor,
    push_artifact,
    push_blob,
    push_image,
    push_index,
    push_manifest,
)
from webhook.signatures.cosign import signature_tag

pytestmark = pytest.mark.e2e

RELEASE = generate_key("ecdsa-p256")
OTHER = generate_key("ed25519")
DEADLINE = 3.0


def policy(
    name: str,
    registry_host: str,
    *,
    mode: str = "enforce",
    threshold: int = 1,
    namespaces: str = '["prod-*"]',
    keys: tuple[str, ...] = ("release",),
    extra: str = "",
) -> str:
    authorities = "\n".join(f"      - name: {k}\n        key: {{file: keys/{k}.pub}}" for k in keys)
    return (
        "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\n"
        f"metadata: {{name: {name}}}\nspec:\n  mode: {mode}\n"
        f"  match: {{namespaces: {namespaces}}}\n"
        f'  registries: ["{registry_host}/**"]\n'
        f"  signatures:\n    threshold: {threshold}\n    authorities:\n{authorities}\n"
        + "".join(f"    {line}\n" for line in extra.splitlines())
    )  # fmt: skip


@pytest.fixture(scope="module")
def signed_server(
    registry: Registry, hanging: Hanging, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    two = policy("two-keys", registry.host, threshold=2, namespaces='["two-*"]',
                 keys=("release", "other"))  # fmt: skip
    documents = [
        policy("signed", registry.host),
        two,
        policy("audit-signed", registry.host, mode="audit", namespaces='["staging"]'),
        policy("hanging", hanging.host, namespaces='["hang-*"]'),
        policy(
            "constrained",
            registry.host,
            namespaces='["constrained-*"]',
            extra="annotations: {env: prod}\nmatchReference: true",
        ),
        policy("per-platform", registry.host, namespaces='["multi-*"]', extra="perPlatform: true"),
    ]
    files = {
        "keys/release.pub": public_pem(RELEASE),
        "keys/other.pub": public_pem(OTHER),
        "signed.yaml": "---\n".join(documents),
    }
    config = serve_config(registry.host, hanging.host, deadline=DEADLINE)
    with serving(tmp_path_factory.mktemp("signed"), files, config) as server:
        yield server


def image(registry: Registry, repository: str, content: bytes) -> tuple[str, str]:
    digest = push_image(registry, repository, tag="v1", layers=[default_layer(content=content)])
    return f"{registry.host}/{repository}:v1", digest


def decide(server: Server, *images: str, namespace: str = "prod-web") -> dict:
    body = review(workload("Deployment", pod_spec(*images), namespace=namespace))
    result = server.post(json.dumps(body), timeout=30)
    assert result.status_code == 200, result.text
    return result.json()["response"]


def test_signed_image_is_admitted(registry: Registry, signed_server: Server) -> None:
    ref, digest = image(registry, "acme/signed", b"signed")
    sign(registry, "acme/signed", digest, RELEASE)
    assert decide(signed_server, ref)["allowed"] is True
    assert decide(signed_server, f"{registry.host}/acme/signed@{digest}")["allowed"] is True


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unsigned", "release: no signature found (sha256-"),
        ("wrong-key", "release: "),
        ("other-digest", "release: "),
        ("copied-sig", "release: "),
        ("tag-moved", "release: no signature found"),
        ("tampered", "release: signature does not verify with key release"),
    ],
)
def test_bad_signatures_are_denied(
    registry: Registry, signed_server: Server, case: str, reason: str
) -> None:
    repo = f"acme/{case}"
    ref, digest = image(registry, repo, case.encode())
    if case == "wrong-key":
        sign(registry, repo, digest, OTHER)
    elif case == "other-digest":
        sign(registry, repo, digest, RELEASE, signed_digest="sha256:" + "0" * 64)
    elif case == "copied-sig":
        _, other = image(registry, "acme/donor", b"donor")
        sign(registry, "acme/donor", other, RELEASE)
        donor_sig = registry.request(
            "GET", f"/v2/acme/donor/manifests/{signature_tag(other)}",
            headers={"Accept": OCI_MANIFEST},
        ).content  # fmt: skip
        for layer in json.loads(donor_sig)["layers"] + [json.loads(donor_sig)["config"]]:
            blob = registry.request("GET", f"/v2/acme/donor/blobs/{layer['digest']}").content
            push_blob(registry, repo, blob)
        push_manifest(registry, repo, signature_tag(digest), donor_sig, OCI_MANIFEST)
    elif case == "tampered":
        signed = simple_signing_payload(f"{registry.host}/{repo}", digest)
        stored = signed.replace(b'"optional":null', b'"optional":{"env":"prod"}')
        assert stored != signed
        manifest, blobs = signature_manifest([(stored, sign_b64(RELEASE, signed))])
        push_artifact(registry, repo, signature_tag(digest), manifest, blobs)
    elif case == "tag-moved":
        sign(registry, repo, digest, RELEASE)
        image(registry, repo, b"moved")  # same tag, new content, never signed
    response = decide(signed_server, ref)
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert message.startswith(f'image {ref} denied by policy "signed": signature check failed: ')
    assert "0 of the 1 required authorities verified" in message
    assert reason in message
    if case in ("other-digest", "copied-sig"):
        assert "sha256:" in message.split("release: ", 1)[1]


def test_threshold_needs_distinct_authorities(registry: Registry, signed_server: Server) -> None:
    ref, digest = image(registry, "acme/threshold", b"threshold")
    sign(registry, "acme/threshold", digest, RELEASE)
    response = decide(signed_server, ref, namespace="two-a")
    assert response["allowed"] is False
    assert "1 of the 2 required authorities verified" in response["status"]["message"]
    sign(registry, "acme/threshold", digest, RELEASE, OTHER)
    # The failure is cached briefly; a new digest shows the new signature at once.
    ref2, digest2 = image(registry, "acme/threshold2", b"threshold2")
    sign(registry, "acme/threshold2", digest2, RELEASE, OTHER)
    assert decide(signed_server, ref2, namespace="two-a")["allowed"] is True


def test_audit_mode_admits_unsigned_with_a_warning(
    registry: Registry, signed_server: Server
) -> None:
    ref, _ = image(registry, "acme/audited", b"audited")
    response = decide(signed_server, ref, namespace="staging")
    assert response["allowed"] is True
    assert "(audit mode): signature check failed" in response["warnings"][0]


def test_registry_hanging_is_denied_within_the_deadline(
    hanging: Hanging, signed_server: Server
) -> None:
    started = time.monotonic()
    response = decide(signed_server, f"{hanging.host}/acme/app:1", namespace="hang-a")
    elapsed = time.monotonic() - started
    assert response["allowed"] is False
    assert "timed out" in response["status"]["message"]
    assert elapsed < DEADLINE + 2
    assert signed_server.get("/healthz").status_code == 200


def test_registry_outside_the_allowlist_is_never_contacted(
    signed_server: Server, tmp_path: Path
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on that port; the policy's allowlist does not admit it either.
    response = decide(signed_server, f"127.0.0.1:{port}/acme/app:1")
    assert response["allowed"] is False
    assert "not in the registry allowlist" in response["status"]["message"]


def test_many_images_are_checked_concurrently(registry: Registry, signed_server: Server) -> None:
    refs = []
    for i in range(8):
        ref, digest = image(registry, f"acme/many{i}", f"many{i}".encode())
        sign(registry, f"acme/many{i}", digest, RELEASE)
        refs.append(ref)
    response = decide(signed_server, *refs)
    assert response["allowed"] is True
    metrics = signed_server.get("/metrics").text
    assert 'trustgate_cache_lookups_total{cache="digest",result="miss"}' in metrics


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("ok", None),
        ("no-annotation", "release: missing annotation env=prod"),
        ("wrong-annotation", "release: annotation env=dev, not env=prod"),
        ("wrong-reference", "release: signed for repository {host}/acme/elsewhere:v1, not "),
    ],
)
def test_signature_constraints(
    registry: Registry, signed_server: Server, case: str, reason: str | None
) -> None:
    repo = f"acme/constrained-{case}"
    ref, digest = image(registry, repo, case.encode())
    annotations = {"env": "dev" if case == "wrong-annotation" else "prod", "team": "web"}
    if case == "no-annotation":
        del annotations["env"]
    where = f"{registry.host}/acme/elsewhere:v1" if case == "wrong-reference" else None
    sign(registry, repo, digest, RELEASE, annotations=annotations, reference=where)
    # The plain policy accepts every one of these signatures.
    assert decide(signed_server, ref)["allowed"] is True
    response = decide(signed_server, ref, namespace="constrained-a")
    if reason is None:
        assert response["allowed"] is True
        return
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert message.startswith(
        f'image {ref} denied by policy "constrained": signature check failed: '
        "0 of the 1 required authorities verified ("
    )
    assert reason.format(host=registry.host) in message


PLATFORMS = [
    {"architecture": "amd64", "os": "linux"},
    {"architecture": "arm64", "os": "linux", "variant": "v8"},
]


def multi_arch(registry: Registry, repository: str) -> tuple[str, str, list[str]]:
    children = [
        push_image(registry, repository, tag=None, layers=[default_layer(content=p.encode())])
        for p in (repository + "-amd64", repository + "-arm64")
    ]
    index = push_index(registry, repository, list(zip(children, PLATFORMS, strict=True)))
    return f"{registry.host}/{repository}:latest", index, children


def test_per_platform_signatures(registry: Registry, signed_server: Server) -> None:
    ref, index, (amd64, arm64) = multi_arch(registry, "acme/multi")
    sign(registry, "acme/multi", index, RELEASE)
    sign(registry, "acme/multi", amd64, RELEASE)
    assert decide(signed_server, ref)["allowed"] is True
    response = decide(signed_server, ref, namespace="multi-a")
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert message.startswith(
        f'image {ref} denied by policy "per-platform": signature check failed for platform '
        f"linux/arm64/v8 ({arm64}): 0 of the 1 required authorities verified "
        "(release: no signature found"
    )


def test_per_platform_all_signed_is_admitted(registry: Registry, signed_server: Server) -> None:
    ref, index, children = multi_arch(registry, "acme/multi-signed")
    for digest in (index, *children):
        sign(registry, "acme/multi-signed", digest, RELEASE)
    assert decide(signed_server, ref, namespace="multi-a")["allowed"] is True
    assert decide(signed_server, f"{ref.rsplit(':', 1)[0]}@{index}", namespace="multi-a")["allowed"]


def test_check_command_shows_digest_and_authorities(
    registry: Registry, signed_server: Server
) -> None:
    """`trustgate check` against the real registry: digest, who signed, and why others did not."""
    good, good_digest = image(registry, "acme/check-good", b"check-good")
    sign(registry, "acme/check-good", good_digest, RELEASE)
    half, half_digest = image(registry, "acme/check-half", b"check-half")
    sign(registry, "acme/check-half", half_digest, RELEASE)
    config = signed_server.policies.parent / "trustgate.yaml"

    def check(*argv: str) -> subprocess.CompletedProcess[str]:
        files = ["--policies", str(signed_server.policies), "--config", str(config)]
        command = [*trustgate_command(), "check", *argv, *files]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    done = check(good, half, "--namespace", "two-a", "--output", "json")
    assert done.returncode == 1, done.stderr
    rows = {row["image"]: row for row in json.loads(done.stdout)}
    assert rows[good]["digest"] == good_digest
    assert rows[half]["digest"] == half_digest
    # The two-keys policy wants release and other; only release signed either image.
    for row in rows.values():
        assert row["decision"] == "denied"
        assert "1 of the 2 required authorities verified" in row["reasons"][0]
        assert "other: signature does not verify with key other" in row["reasons"][0]
    sign(registry, "acme/check-good", good_digest, RELEASE, OTHER)
    table = check(good, "--namespace", "two-b")
    assert table.returncode == 0, table.stdout + table.stderr
    header, line = table.stdout.splitlines()[:2]
    assert header.split()[:5] == ["RESOURCE", "NAMESPACE", "IMAGE", "DIGEST", "DECISION"]
    assert good_digest[:19] in line
    assert 'policy "two-keys": signed by release, other' in line


# perPlatform: every entry a runtime could pull is judged ------------------------------

BUILDX_ATTESTATION = {"vnd.docker.reference.type": "attestation-manifest"}


def push_index_of(
    registry: Registry, repository: str, entries: list[tuple[str, dict, dict | None]]
) -> str:
    """Push an index of ``(digest, platform, annotations)`` entries, tagged ``latest``."""
    manifests = []
    for digest, platform, notes in entries:
        entry = {**manifest_descriptor(registry, repository, digest), "platform": platform}
        if notes is not None:
            entry["annotations"] = notes
        manifests.append(entry)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
    return push_manifest(registry, repository, "latest", body.encode(), OCI_INDEX)


def child(registry: Registry, repository: str, content: str) -> str:
    return push_image(
        registry, repository, tag=None, layers=[default_layer(content=content.encode())]
    )


def test_per_platform_judges_a_runnable_entry_whatever_its_annotations(
    registry: Registry, signed_server: Server
) -> None:
    """An unsigned linux/amd64 image annotated as a buildx attestation is still an image."""
    repository = "acme/multi-disguised"
    signed, hidden = child(registry, repository, "signed"), child(registry, repository, "hidden")
    index = push_index_of(
        registry,
        repository,
        [(hidden, PLATFORMS[0], {**BUILDX_ATTESTATION, "vnd.docker.reference.digest": signed}),
         (signed, PLATFORMS[0], None)],
    )  # fmt: skip
    for digest in (index, signed):
        sign(registry, repository, digest, RELEASE)
    ref = f"{registry.host}/{repository}:latest"
    response = decide(signed_server, ref, namespace="multi-a")
    assert response["allowed"] is False
    assert response["status"]["message"].startswith(
        f'image {ref} denied by policy "per-platform": signature check failed for platform '
        f"linux/amd64 ({hidden}): 0 of the 1 required authorities verified "
        "(release: no signature found"
    )


def test_per_platform_skips_buildx_attestation_manifests(
    registry: Registry, signed_server: Server
) -> None:
    """The legitimate buildx shape: attestation manifests on unknown/unknown are never run."""
    repository = "acme/multi-buildx"
    amd64, arm64 = child(registry, repository, "amd64"), child(registry, repository, "arm64")
    provenance = child(registry, repository, "provenance")
    unknown = {"architecture": "unknown", "os": "unknown"}
    annotations = {**BUILDX_ATTESTATION, "vnd.docker.reference.digest": amd64}
    index = push_index_of(
        registry,
        repository,
        [(amd64, PLATFORMS[0], None), (arm64, PLATFORMS[1], None),
         (provenance, unknown, annotations)],
    )  # fmt: skip
    for digest in (index, amd64, arm64):
        sign(registry, repository, digest, RELEASE)
    ref = f"{registry.host}/{repository}:latest"
    assert decide(signed_server, ref, namespace="multi-a")["allowed"] is True


# Thresholds count keys, not names ----------------------------------------------------


def test_policy_lint_refuses_two_authorities_holding_one_key(tmp_path: Path) -> None:
    """Two key files with the same key would meet threshold 2 with one signature."""
    keys = tmp_path / "policies" / "keys"
    keys.mkdir(parents=True)
    (keys / "release.pub").write_text(public_pem(RELEASE))
    # The same key, written out again (CRLF line ends): compared as a key, not as text.
    (keys / "release-copy.pub").write_text(public_pem(RELEASE).replace("\n", "\r\n"))
    document = policy("two-names", "registry.test", threshold=2, keys=("release", "release-copy"))
    (tmp_path / "policies" / "p.yaml").write_text(document)
    command = [*trustgate_command(), "policy", "lint", str(tmp_path / "policies")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert (
        "field spec.signatures.authorities[1].key: authority 'release-copy' holds the same key"
        in (done.stderr)
    )
    assert "as authority 'release' (authorities[0])" in done.stderr
