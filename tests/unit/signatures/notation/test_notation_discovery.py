"""Discovery of Notation signatures in a real docker-registry: through the referrers API
(``ReferrersFront``, paginated) and through the ``sha256-<hex>`` tag fallback (the
registry alone), with malformed signature manifests and a flood of fake ones.

The envelopes pushed are opaque bytes: discovery returns them unparsed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.notation_referrers import (
    push_signature,
    signature_manifest,
)
from tests.support.referrers import ReferrersFront, push_referrer
from tests.support.registry import (
    OCI_MANIFEST,
    Registry,
    default_layer,
    digest_of,
    manifest_descriptor,
    push_image,
)
from webhook.core.deadline import Deadline
from webhook.core.errors import UpstreamError
from webhook.core.reference import ImageRef
from webhook.registry.client import RegistryClient, RegistrySettings
from webhook.signatures.notation.discovery import (
    MAX_ENVELOPE_BYTES,
    MAX_MANIFEST_BYTES,
    MAX_SIGNATURES,
    Signature,
    Unreadable,
    discover,
)
from webhook.signatures.notation.model import ARTIFACT_TYPE, COSE, JWS

DAY = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"


@pytest.fixture(scope="module")
def front(registry: Registry) -> Iterator[ReferrersFront]:
    running = ReferrersFront(registry, page_size=2).start()
    yield running
    running.stop()


def image(host: str, repository: str) -> tuple[RegistryClient, ImageRef]:
    return RegistryClient({host: RegistrySettings(insecure=True)}), ImageRef(host, repository, "v1")


def new_image(registry: Registry, repository: str) -> str:
    content = repository.encode() + str(time.monotonic_ns()).encode()
    return push_image(registry, repository, tag="v1", layers=[default_layer(content=content)])


def envelope(number: int) -> bytes:
    return json.dumps({"payload": "e30", "signature": str(number)}).encode()


def read(found: object) -> list[Signature | Unreadable]:
    return list(found)  # type: ignore[call-overload]


@pytest.mark.parametrize("route", ["referrers API", "tag fallback"])
def test_the_signatures_of_a_digest_newest_first(
    registry: Registry, front: ReferrersFront, route: str
) -> None:
    repository = f"notation/{route.replace(' ', '-').lower()}"
    digest = new_image(registry, repository)
    api = route == "referrers API"
    pushed = [
        push_signature(
            registry, repository, digest, envelope(n), media_type=kind,
            created=DAY + dt.timedelta(n), tag_index=not api,
        )
        for n, kind in ((1, JWS), (3, COSE), (2, JWS))
    ]  # fmt: skip
    push_referrer(registry, repository, digest, b"{}", artifact_type=BUNDLE, tag_index=not api)
    client, ref = image(front.host if api else registry.host, repository)
    found = discover(client, ref, digest, Deadline(10))
    assert (found.listed, found.note) == (3, "")
    signatures = read(found)
    assert [s.manifest for s in signatures] == [pushed[1], pushed[2], pushed[0]]
    assert all(isinstance(s, Signature) for s in signatures)
    first = signatures[0]
    assert isinstance(first, Signature)
    assert (first.media_type, first.envelope, first.created) == (
        COSE, envelope(3), DAY + dt.timedelta(3)
    )  # fmt: skip
    if api:
        assert not any("sha256-" in path for path in front.paths)


def test_without_times_the_registry_order_stands(registry: Registry) -> None:
    repository = "notation/untimed"
    digest = new_image(registry, repository)
    pushed = [push_signature(registry, repository, digest, envelope(n)) for n in range(3)]
    client, ref = image(registry.host, repository)
    assert [s.manifest for s in read(discover(client, ref, digest, Deadline(10)))] == pushed


def test_no_signatures(registry: Registry, front: ReferrersFront) -> None:
    digest = new_image(registry, "notation/unsigned")
    for host in (registry.host, front.host):
        client, ref = image(host, "notation/unsigned")
        found = discover(client, ref, digest, Deadline(10))
        assert (found.listed, read(found)) == (0, [])
        assert found.note == f"no Notation signature refers to {digest}"


def test_envelopes_are_fetched_only_as_they_are_read(registry: Registry) -> None:
    repository = "notation/lazy"
    digest = new_image(registry, repository)
    for n in range(3):
        push_signature(registry, repository, digest, envelope(n))
    counting = Deadline(10)
    client, ref = image(registry.host, repository)
    found = discover(client, ref, digest, counting)
    listed = counting.read_bytes
    first = next(iter(found))
    assert isinstance(first, Signature)
    one = counting.read_bytes - listed
    assert 0 < one < 2048
    assert read(found)[0] is first  # read once, kept
    assert counting.read_bytes - listed < 3 * one + 100


# -- malformed signature manifests -----------------------------------------------------------


class Lying(ReferrersFront):
    """A referrers API that also lists ``extra``: manifests not there, or not as listed."""

    extra: list[dict[str, Any]]

    def referrers(self, name: str, digest: str, artifact_type: str | None) -> list[dict[str, Any]]:
        return super().referrers(name, digest, artifact_type) + self.extra


def _malformed(registry: Registry, repository: str, digest: str, lying: Lying) -> dict[str, str]:
    """Push one signature manifest per defect; return manifest digest -> expected reason."""
    subject = manifest_descriptor(registry, repository, digest)
    other = manifest_descriptor(registry, repository, new_image(registry, repository))
    body = envelope(0)
    layer = signature_manifest(subject, body)["layers"][0]
    cases = [
        (
            {"layers": [layer, layer]},
            "it has 2 layers; a Notation signature has exactly one, its envelope",
        ),
        (
            {"layers": [dict(layer, mediaType="text/plain")]},
            "its envelope type 'text/plain' is neither application/jose+json nor application/cose",
        ),
        (
            {"config": {"mediaType": "application/json", "digest": digest_of(b"{}"), "size": 2}},
            "its config is 'application/json', not the empty descriptor",
        ),
        (
            {"layers": [dict(layer, size=10**9)]},
            f"its envelope is 1000000000 bytes; over {MAX_ENVELOPE_BYTES}",
        ),
    ]
    expected = {}
    for number, (changes, reason) in enumerate(cases):
        document = signature_manifest(subject, body, annotations={"n": str(number)}) | changes
        pushed = push_signature(
            registry, repository, digest, body, manifest=document, tag_index=False
        )
        expected[pushed] = reason
    # Listed for this digest by a lying registry: a signature of another image, a manifest
    # that is not there, and one listed as far larger than any signature manifest.
    elsewhere = push_signature(registry, repository, other["digest"], body, tag_index=False)
    expected[elsewhere] = f"its subject is not {digest}"
    lying.extra = [{"mediaType": OCI_MANIFEST, "digest": elsewhere, "size": 1000}]
    for size, reason in (
        (100, "it is listed but does not exist"),
        (10**7, f"its manifest is 10000000 bytes; over {MAX_MANIFEST_BYTES}"),
    ):
        missing = "sha256:" + hashlib.sha256(str(size).encode()).hexdigest()
        lying.extra.append({"mediaType": OCI_MANIFEST, "digest": missing, "size": size})
        expected[missing] = reason
    for entry in lying.extra:
        entry["artifactType"] = ARTIFACT_TYPE
    return expected


def test_malformed_signature_manifests_are_unreadable_with_a_reason(registry: Registry) -> None:
    repository = "notation/malformed"
    digest = new_image(registry, repository)
    lying = Lying(registry).start()
    try:
        expected = _malformed(registry, repository, digest, lying)
        good = push_signature(registry, repository, digest, envelope(9), tag_index=False)
        client, ref = image(lying.host, repository)
        found = read(discover(client, ref, digest, Deadline(10)))
    finally:
        lying.stop()
    reasons = {item.manifest: item.reason for item in found if isinstance(item, Unreadable)}
    assert reasons == expected
    assert [item.manifest for item in found if isinstance(item, Signature)] == [good]


# -- a flood of fake signatures --------------------------------------------------------------

FAKES = 3 * MAX_SIGNATURES


@pytest.fixture(scope="module")
def flood(registry: Registry) -> tuple[str, str, str]:
    """An image with one genuine signature and a flood of newer fake ones (referrers API only).

    Returns the image digest, the genuine signature's manifest and its trusted thumbprint.
    """
    repository = "notation/flood"
    digest = new_image(registry, repository)
    trusted = hashlib.sha256(b"the trusted root").hexdigest()
    genuine = push_signature(
        registry, repository, digest, envelope(-1), created=DAY, thumbprints=["ab" * 32, trusted],
        tag_index=False,
    )  # fmt: skip
    for n in range(FAKES):  # newer than the genuine one: read first, unless preferred
        push_signature(
            registry, repository, digest, envelope(n) + b" " * 4096,
            created=DAY + dt.timedelta(days=1, minutes=n), tag_index=False,
        )  # fmt: skip
    return digest, genuine, trusted


def test_a_referrer_flood_costs_bounded_reads_and_says_so(
    registry: Registry, flood: tuple[str, str, str]
) -> None:
    digest, genuine, trusted = flood
    front = ReferrersFront(registry, page_size=10).start()
    try:
        client, ref = image(front.host, "notation/flood")
        deadline = Deadline(30)
        found = discover(client, ref, digest, deadline)
        signatures = read(found)
        asked = list(front.paths)
        # A trusted thumbprint in the (unsigned) annotation only orders: it is read first.
        preferred = discover(client, ref, digest, Deadline(30), prefer=frozenset({trusted}))
        first = next(iter(preferred))
    finally:
        front.stop()
    assert found.listed == FAKES + 1 and len(signatures) == MAX_SIGNATURES
    assert genuine not in [s.manifest for s in signatures]  # pushed out: it fails closed
    assert found.note == (
        f"{digest} has {FAKES + 1} Notation signatures; only the first {MAX_SIGNATURES} are "
        f"read (at most {MAX_SIGNATURES} per image: a flood of signatures costs no more, but "
        "may hide a real one)"
    )
    manifests = [p for p in asked if "/manifests/" in p]
    blobs = [p for p in asked if "/blobs/" in p]
    assert len(manifests) == len(blobs) == MAX_SIGNATURES
    assert deadline.read_bytes < MAX_SIGNATURES * 6 * 1024 + 64 * 1024
    assert first.manifest == genuine


def test_a_flood_listed_over_too_many_pages_is_refused(
    front: ReferrersFront, flood: tuple[str, str, str]
) -> None:
    client, ref = image(front.host, "notation/flood")  # pages of two: 25 of them
    with pytest.raises(UpstreamError, match="over more than 16 pages"):
        discover(client, ref, flood[0], Deadline(10))


def test_a_flood_beyond_the_budget_is_an_upstream_error(registry: Registry) -> None:
    repository = "notation/budget"
    digest = new_image(registry, repository)
    for n in range(4):
        push_signature(registry, repository, digest, envelope(n) + b" " * 8192)
    client, ref = image(registry.host, repository)
    found = discover(client, ref, digest, Deadline(10, max_bytes=12 * 1024))
    with pytest.raises(UpstreamError, match="the review read more than 12288 bytes"):
        read(found)
