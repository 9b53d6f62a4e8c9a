"""SignatureCheck with notation authorities: loaded by the real policy loader, against a real
registry (Notation signatures pushed as referrers, as ``notation sign`` does).

Thresholds across cosign and Notation, the policy's annotations and matchReference,
what a level only logs (a warning), and caching: warm answers read nothing, and no
answer outlives the moment it stops holding.
"""

from __future__ import annotations

import datetime as dt
import json
import textwrap
import time
from collections.abc import Iterator
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
from tests.support.countingproxy import CountingProxy
from tests.support.notation_images import COSE, of, sign_image
from tests.support.notation_pki import Authority, Signing
from tests.support.registry import (
    OCI_MANIFEST,
    Registry,
    default_layer,
    manifest_descriptor,
    push_blob,
    push_image,
    push_manifest,
)
from webhook.cache.local import Caches
from webhook.checks import Caution, CheckContext
from webhook.core.deadline import Deadline
from webhook.core.errors import CheckFailed
from webhook.core.reference import parse_reference
from webhook.policy.loader import load_directory
from webhook.policy.model import Policy
from webhook.registry.client import RegistryClient, RegistrySettings
from webhook.signatures.check import SignatureCheck
from webhook.signatures.cosign import signature_tag

RELEASE = generate_key("ecdsa-p256")
BUILDER = "x509.subject: C=US, ST=WA, O=acme-rabbits, CN=builder"
SUBJECT = "CN=builder,O=acme-rabbits,L=Seattle,ST=WA,C=US"


@pytest.fixture(scope="module")
def root() -> Authority:
    return Authority.root()


@pytest.fixture(scope="module")
def builder(root: Authority) -> Signing:
    return root.intermediate().leaf("builder")


@pytest.fixture(scope="module")
def proxy(registry: Registry) -> Iterator[CountingProxy]:
    running = CountingProxy(registry.url)
    yield running
    running.stop()


def load(
    tmp_path: Path,
    root: Authority,
    *,
    threshold: int = 1,
    authorities: str = "",
    extra: str = "",
) -> Policy:
    authorities = authorities or (
        f'[{{name: wabbit, notation: {{trustStore: ca.pem, trustedIdentities: ["{BUILDER}"], '
        "override: {revocation: skip}}}]"
    )
    (tmp_path / "ca.pem").write_bytes(root.cert.public_bytes(Encoding.PEM))
    (tmp_path / "release.pub").write_text(public_pem(RELEASE))
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
                authorities: {authorities}
            """
        )
        + "".join(f"    {line}\n" for line in extra.splitlines())
    )
    (policy,) = load_directory(tmp_path).policies
    return policy


def new_image(registry: Registry, repository: str) -> str:
    content = repository.encode() + str(time.monotonic_ns()).encode()
    return push_image(registry, repository, tag="v1", layers=[default_layer(content=content)])


def cosign_signed(registry: Registry, repository: str, digest: str) -> None:
    """A cosign ``.sig`` signature of ``digest`` by RELEASE."""
    payload = simple_signing_payload(f"{registry.host}/{repository}", digest, None)
    manifest, blobs = signature_manifest([(payload, sign_b64(RELEASE, payload))])
    for blob in blobs.values():
        push_blob(registry, repository, blob)
    body = json.dumps(manifest).encode()
    push_manifest(registry, repository, signature_tag(digest), body, OCI_MANIFEST)


def checker(host: str, caches: Caches | None = None) -> SignatureCheck:
    client = RegistryClient({host: RegistrySettings(insecure=True)}, timeout=5.0)
    return SignatureCheck(client, caches or Caches())


def run(
    check: SignatureCheck, host: str, repository: str, digest: str, policy: Policy
) -> str | Caution | None:
    ref = parse_reference(f"{host}/{repository}:v1")
    return check.run(ref, policy, CheckContext(Deadline(10), lambda: digest))


def test_a_notation_authority_names_its_signer(
    registry: Registry, tmp_path: Path, root: Authority, builder: Signing
) -> None:
    digest = new_image(registry, "unit/notation-alone")
    sign_image(registry, "unit/notation-alone", digest, of(builder), media_type=COSE)
    note = run(checker(registry.host), registry.host, "unit/notation-alone", digest,
               load(tmp_path, root))  # fmt: skip
    assert note == f"signed by wabbit (x509.subject '{SUBJECT}')"


def test_without_a_signature_the_reason_says_so(
    registry: Registry, tmp_path: Path, root: Authority
) -> None:
    digest = new_image(registry, "unit/notation-none")
    with pytest.raises(CheckFailed) as raised:
        run(checker(registry.host), registry.host, "unit/notation-none", digest,
            load(tmp_path, root))  # fmt: skip
    assert raised.value.message == (
        "signature check failed: 0 of the 1 required authorities verified (wabbit: no Notation "
        f"signature refers to {digest})"
    )
    assert raised.value.check == "signatures"


def test_a_threshold_counts_a_cosign_key_and_a_notation_signer(
    registry: Registry, tmp_path: Path, root: Authority, builder: Signing
) -> None:
    repository = "unit/notation-threshold"
    authorities = (
        f'[{{name: wabbit, notation: {{trustStore: ca.pem, trustedIdentities: ["{BUILDER}"], '
        "override: {revocation: skip}}}, {name: release, key: {file: release.pub}}]"
    )
    policy = load(tmp_path, root, threshold=2, authorities=authorities)
    digest = new_image(registry, repository)
    sign_image(registry, repository, digest, of(builder))
    with pytest.raises(CheckFailed, match=r"1 of the 2 required .*release: no signature found"):
        run(checker(registry.host), registry.host, repository, digest, policy)
    cosign_signed(registry, repository, digest)
    note = run(checker(registry.host), registry.host, repository, digest, policy)
    assert note == f"signed by wabbit (x509.subject '{SUBJECT}'), release"


def test_one_notation_certificate_under_two_authorities_counts_once(
    registry: Registry, tmp_path: Path, root: Authority, builder: Signing
) -> None:
    repository = "unit/notation-twice"
    authorities = (
        "[{name: any, notation: {trustStore: ca.pem, trustedIdentities: ['*'], "
        "override: {revocation: skip}}}, "
        f'{{name: wabbit, notation: {{trustStore: ca.pem, trustedIdentities: ["{BUILDER}"], '
        "override: {revocation: skip}}}]"
    )
    policy = load(tmp_path, root, threshold=2, authorities=authorities)
    digest = new_image(registry, repository)
    for media_type in ("application/jose+json", COSE):  # one certificate, either envelope
        sign_image(registry, repository, digest, of(builder), media_type=media_type)
    with pytest.raises(CheckFailed) as raised:
        run(checker(registry.host), registry.host, repository, digest, policy)
    assert raised.value.message == (
        "signature check failed: 1 of the 2 required authorities verified (wabbit: verified, "
        f"but by x509.subject '{SUBJECT}', already counted for any)"
    )
    # A second certificate of the same subject and issuer is the same identity: one signer.
    again = root.intermediate().leaf("builder")
    sign_image(registry, repository, digest, of(again))
    with pytest.raises(CheckFailed, match="1 of the 2 required"):
        run(checker(registry.host), registry.host, repository, digest, policy)
    # A distinct identity under the same root is a second signer.
    other = root.intermediate().leaf("releaser")
    sign_image(registry, repository, digest, of(other))
    assert run(checker(registry.host), registry.host, repository, digest, policy) == (
        "signed by any (x509.subject 'CN=releaser,O=acme-rabbits,L=Seattle,ST=WA,C=US'), "
        f"wabbit (x509.subject '{SUBJECT}')"
    )


@pytest.mark.parametrize(
    ("annotations", "error"),
    [
        ({"env": "prod"}, None),
        ({"env": "dev"}, "wabbit: .*the signed descriptor has annotation env=dev, not env=prod"),
        ({}, "wabbit: .*the signed descriptor has missing annotation env=prod"),
    ],
)
def test_the_policy_annotations_are_read_from_the_signed_descriptor(
    registry: Registry,
    tmp_path: Path,
    root: Authority,
    builder: Signing,
    annotations: dict[str, str],
    error: str | None,
) -> None:
    repository = f"unit/notation-annotations-{len(annotations)}{annotations.get('env', '')}"
    digest = new_image(registry, repository)
    target = manifest_descriptor(registry, repository, digest)
    if annotations:
        target["annotations"] = annotations
    sign_image(registry, repository, digest, of(builder), target=target)
    policy = load(tmp_path, root, extra="annotations: {env: prod}")
    check = checker(registry.host)
    if error is None:
        assert run(check, registry.host, repository, digest, policy)
        return
    with pytest.raises(CheckFailed, match=error):
        run(check, registry.host, repository, digest, policy)


def test_match_reference_refuses_notation_signatures(
    registry: Registry, tmp_path: Path, root: Authority, builder: Signing
) -> None:
    repository = "unit/notation-reference"
    digest = new_image(registry, repository)
    sign_image(registry, repository, digest, of(builder))
    with pytest.raises(CheckFailed, match="a Notation signature names no repository, and the "
                       "policy sets matchReference"):  # fmt: skip
        run(checker(registry.host), registry.host, repository, digest,
            load(tmp_path, root, extra="matchReference: true"))  # fmt: skip


def test_what_a_level_only_logs_is_a_warning(
    registry: Registry, tmp_path: Path, root: Authority
) -> None:
    repository = "unit/notation-logged"
    digest = new_image(registry, repository)
    now = dt.datetime.now(dt.UTC)
    expired = root.intermediate().leaf("builder", start=now - dt.timedelta(days=2),
                                      end=now - dt.timedelta(hours=1))  # fmt: skip
    sign_image(registry, repository, digest, of(expired))
    authorities = (
        "[{name: wabbit, notation: {trustStore: ca.pem, trustedIdentities: ['*'], "
        "level: audit, override: {revocation: skip}}}]"
    )
    found = run(checker(registry.host), registry.host, repository, digest,
                load(tmp_path, root, authorities=authorities))  # fmt: skip
    assert isinstance(found, Caution)
    assert found.message.startswith(
        f"signed by wabbit (x509.subject '{SUBJECT}'); Notation logged "
    )
    assert "(signature sha256:" in found.message


def test_an_untrusted_signer_never_counts_even_where_authenticity_is_only_logged(
    registry: Registry, tmp_path: Path, builder: Signing
) -> None:
    repository = "unit/notation-untrusted-audit"
    digest = new_image(registry, repository)
    sign_image(registry, repository, digest, of(builder))
    stranger = Authority.root("stranger root")
    authorities = (
        "[{name: wabbit, notation: {trustStore: ca.pem, trustedIdentities: ['*'], "
        "level: audit, override: {revocation: skip}}}]"
    )
    with pytest.raises(CheckFailed, match="an untrusted signer never counts"):
        run(checker(registry.host), registry.host, repository, digest,
            load(tmp_path, stranger, authorities=authorities))  # fmt: skip


def test_a_warm_answer_reads_nothing_and_a_notation_policy_skips_the_sig_manifest(
    registry: Registry, proxy: CountingProxy, tmp_path: Path, root: Authority, builder: Signing
) -> None:
    repository = "unit/notation-warm"
    digest = new_image(registry, repository)
    sign_image(registry, repository, digest, of(builder))
    policy = load(tmp_path, root)
    check = checker(proxy.host)
    before = len(proxy.paths)
    assert run(check, proxy.host, repository, digest, policy)
    cold = proxy.paths[before:]
    assert not any(path.endswith(".sig") for path in cold)
    # The tag index of the referrers, the signature manifest, its envelope, the image's manifest.
    assert len(cold) == 5, cold  # the referrers API answers 404 first (docker-registry 2)
    assert run(check, proxy.host, repository, digest, policy)
    assert len(proxy.paths) == before + len(cold)


def test_no_answer_outlives_the_signature_expiry(
    registry: Registry, tmp_path: Path, root: Authority, builder: Signing
) -> None:
    repository = "unit/notation-expiring"
    digest = new_image(registry, repository)
    ends = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=2)
    sign_image(registry, repository, digest, of(builder), expiry=ends)
    policy = load(tmp_path, root)
    check = checker(registry.host)
    assert run(check, registry.host, repository, digest, policy)
    time.sleep(max(0.0, (ends - dt.datetime.now(dt.UTC)).total_seconds()) + 0.2)
    with pytest.raises(CheckFailed, match=r"wabbit: .*expiry: the signature expired at"):
        run(check, registry.host, repository, digest, policy)
