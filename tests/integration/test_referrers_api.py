"""The registry client against a registry serving the OCI 1.1 referrers API (``ReferrersFront``).

The front computes the referrers index from the manifests the real registry stored; these
tests pin what the distribution spec asks of it and that the client reads it page by page,
filters by artifact type and never falls back to the tag schema while the API answers.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.support.referrers import ReferrersFront, push_referrer
from tests.support.registry import OCI_INDEX, Registry, default_layer, push_image
from webhook.core.deadline import Deadline
from webhook.core.reference import ImageRef
from webhook.registry.client import RegistryClient, RegistrySettings

BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SBOM = "application/spdx+json"


@pytest.fixture(scope="module")
def front(registry: Registry) -> Iterator[ReferrersFront]:
    running = ReferrersFront(registry, page_size=2).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def subject(registry: Registry) -> str:
    """An image with three bundle referrers and two SBOM referrers, none in a tag index."""
    digest = push_image(registry, "referrers/app", tag="v1", layers=[default_layer(content=b"r")])
    for number in range(5):
        kind = BUNDLE if number < 3 else SBOM
        push_referrer(
            registry, "referrers/app", digest, b'{"n": %d}' % number, artifact_type=kind,
            tag_index=False,
        )  # fmt: skip
    return digest


def test_the_front_answers_as_the_spec_says(front: ReferrersFront, subject: str) -> None:
    base = f"{front.url}/v2/referrers/app/referrers"
    first = requests.get(f"{base}/{subject}", timeout=10)
    assert first.status_code == 200
    assert first.headers["Content-Type"] == OCI_INDEX
    assert len(first.json()["manifests"]) == 2 and 'rel="next"' in first.headers["Link"]
    filtered = requests.get(f"{base}/{subject}", params={"artifactType": SBOM}, timeout=10)
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["artifactType"] for m in filtered.json()["manifests"]] == [SBOM, SBOM]
    unknown = requests.get(f"{base}/sha256:{'0' * 64}", timeout=10)
    assert unknown.status_code == 200 and unknown.json()["manifests"] == []
    assert requests.get(f"{base}/sha256:nothex", timeout=10).status_code == 400


def test_the_client_reads_every_page_and_filters(front: ReferrersFront, subject: str) -> None:
    client = RegistryClient({front.host: RegistrySettings(insecure=True)})
    ref = ImageRef(front.host, "referrers/app", "v1", None)
    before = len(front.paths)
    found = client.referrers(ref, subject, Deadline(10))
    assert sorted(d["artifactType"] for d in found) == sorted([BUNDLE] * 3 + [SBOM] * 2)
    bundles = client.referrers(ref, subject, Deadline(10), artifact_type=BUNDLE)
    assert [d["artifactType"] for d in bundles] == [BUNDLE] * 3
    asked = front.paths[before:]
    assert all("/referrers/" in path for path in asked), asked
    assert len(asked) == 3 + 2  # five referrers in pages of two; three bundles in two pages
