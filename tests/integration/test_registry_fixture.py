"""tests.support.registry: the fixtures run a real distribution server that stores what we push."""

from __future__ import annotations

import json

import pytest
import requests

from tests.support.registry import (
    OCI_INDEX,
    OCI_MANIFEST,
    Registry,
    default_layer,
    digest_of,
    push_image,
    push_index,
)

pytestmark = pytest.mark.e2e


def manifest(registry: Registry, repository: str, reference: str, accept: str) -> requests.Response:
    return registry.request(
        "GET", f"/v2/{repository}/manifests/{reference}", headers={"Accept": accept}
    )


def test_pushed_manifest_round_trips_byte_for_byte(registry: Registry) -> None:
    layer = default_layer(content=b"round trip\n")
    digest = push_image(registry, "acme/app", layers=[layer])

    got = manifest(registry, "acme/app", "latest", OCI_MANIFEST)
    assert got.status_code == 200
    assert got.headers["Content-Type"] == OCI_MANIFEST
    assert got.headers["Docker-Content-Digest"] == digest
    assert digest_of(got.content) == digest
    by_digest = manifest(registry, "acme/app", digest, OCI_MANIFEST)
    assert by_digest.content == got.content

    body = json.loads(got.content)
    assert body["mediaType"] == OCI_MANIFEST
    assert [entry["digest"] for entry in body["layers"]] == [digest_of(layer)]
    blob = registry.request("GET", f"/v2/acme/app/blobs/{digest_of(layer)}")
    assert blob.status_code == 200
    assert blob.content == layer
    config = registry.request("GET", f"/v2/acme/app/blobs/{body['config']['digest']}")
    assert json.loads(config.content)["os"] == "linux"


def test_head_reports_digest_and_size(registry: Registry) -> None:
    digest = push_image(registry, "acme/head", tag="v1")
    head = registry.request("HEAD", "/v2/acme/head/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert head.status_code == 200
    assert head.headers["Docker-Content-Digest"] == digest
    body = manifest(registry, "acme/head", "v1", OCI_MANIFEST).content
    assert int(head.headers["Content-Length"]) == len(body)
    missing = registry.request(
        "HEAD", "/v2/acme/head/manifests/nope", headers={"Accept": OCI_MANIFEST}
    )
    assert missing.status_code == 404


def test_untagged_push_is_reachable_by_digest_only(registry: Registry) -> None:
    digest = push_image(registry, "acme/untagged", tag=None, layers=[b"plain tar bytes"])
    assert manifest(registry, "acme/untagged", digest, OCI_MANIFEST).status_code == 200
    assert manifest(registry, "acme/untagged", "latest", OCI_MANIFEST).status_code == 404


def test_index_round_trips(registry: Registry) -> None:
    amd64 = push_image(registry, "acme/multi", tag=None, layers=[default_layer(content=b"x86\n")])
    arm64 = push_image(
        registry,
        "acme/multi",
        tag=None,
        layers=[default_layer(content=b"arm\n")],
        config={"architecture": "arm64", "os": "linux", "rootfs": {"type": "layers"}},
    )
    platforms = [
        (amd64, {"architecture": "amd64", "os": "linux"}),
        (arm64, {"architecture": "arm64", "os": "linux", "variant": "v8"}),
    ]
    digest = push_index(registry, "acme/multi", platforms, tag="1.0")

    got = manifest(registry, "acme/multi", "1.0", OCI_INDEX)
    assert got.status_code == 200
    assert got.headers["Docker-Content-Digest"] == digest
    assert digest_of(got.content) == digest
    entries = json.loads(got.content)["manifests"]
    assert [(e["digest"], e["platform"]) for e in entries] == platforms
    assert all(e["mediaType"] == OCI_MANIFEST for e in entries)


def test_auth_registry_requires_credentials(auth_registry: Registry) -> None:
    anonymous = requests.get(f"{auth_registry.url}/v2/", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
    wrong = requests.get(f"{auth_registry.url}/v2/", auth=("trustgate", "wrong"), timeout=10)
    assert wrong.status_code == 401
    assert auth_registry.request("GET", "/v2/").status_code == 200

    digest = push_image(auth_registry, "private/app")
    assert manifest(auth_registry, "private/app", "latest", OCI_MANIFEST).status_code == 200
    anonymous_pull = requests.get(
        f"{auth_registry.url}/v2/private/app/manifests/{digest}", timeout=10
    )
    assert anonymous_pull.status_code == 401


def test_tls_registry_is_trusted_only_with_its_ca(tls_registry: Registry) -> None:
    assert tls_registry.url.startswith("https://")
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{tls_registry.url}/v2/", verify=True, timeout=10)
    assert requests.get(f"{tls_registry.url}/v2/", verify=str(tls_registry.ca), timeout=10).ok

    digest = push_image(tls_registry, "secure/app")
    got = manifest(tls_registry, "secure/app", "latest", OCI_MANIFEST)
    assert got.headers["Docker-Content-Digest"] == digest
