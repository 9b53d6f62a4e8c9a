"""Push Notation signature manifests to the test registry, as ``notation sign`` does.

``notation sign`` (notation-go's ``PushSignature``, through oras's
``PackManifest`` v1.1) pushes the envelope as a blob, then an OCI image
manifest with ``artifactType: application/vnd.cncf.notary.signature``, the
empty config, the envelope as its single layer, the signed image as its
``subject``, and two annotations: the SHA-256 thumbprints of the chain and
the signing time (``org.opencontainers.image.created``). The envelope bytes
here are whatever a test passes: discovery does not parse them.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from tests.support.registry import (
    OCI_INDEX,
    OCI_MANIFEST,
    Registry,
    digest_of,
    manifest_descriptor,
    push_artifact,
    push_manifest,
)
from webhook.signatures.notation.discovery import CREATED, EMPTY_CONFIG, THUMBPRINTS
from webhook.signatures.notation.model import ARTIFACT_TYPE, JWS

EMPTY = b"{}"


def signature_manifest(
    subject: Mapping[str, Any],
    envelope: bytes,
    *,
    media_type: str = JWS,
    created: dt.datetime | None = None,
    thumbprints: Sequence[str] = (),
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The signature manifest notation writes for ``envelope`` about ``subject``."""
    notes = dict(annotations or {})
    if thumbprints:
        notes[THUMBPRINTS] = json.dumps(list(thumbprints))
    if created is not None:
        notes[CREATED] = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {
            "mediaType": EMPTY_CONFIG,
            "digest": digest_of(EMPTY),
            "size": 2,
            "data": base64.b64encode(EMPTY).decode(),
        },
        "layers": [{"mediaType": media_type, "digest": digest_of(envelope), "size": len(envelope)}],
        "subject": dict(subject),
        "annotations": notes,
    }


def push_signature(
    registry: Registry,
    repository: str,
    digest: str,
    envelope: bytes,
    *,
    tag_index: bool = True,
    manifest: Mapping[str, Any] | None = None,
    **options: Any,
) -> str:
    """Push ``envelope`` as a Notation signature of ``digest``; return the manifest's digest.

    ``manifest`` replaces the one notation would write (to push malformed ones);
    ``options`` go to ``signature_manifest``. With ``tag_index`` the
    ``sha256-<hex>`` index lists it too, for registries without the referrers API.
    """
    subject = manifest_descriptor(registry, repository, digest)
    document = dict(manifest or signature_manifest(subject, envelope, **options))
    body = json.dumps(document).encode()
    pushed = push_artifact(
        registry,
        repository,
        digest_of(body),
        document,
        {digest_of(envelope): envelope, digest_of(EMPTY): EMPTY},
    )
    if tag_index:
        add_to_tag_index(registry, repository, digest, _descriptor(document, pushed, len(body)))
    return pushed


def add_to_tag_index(
    registry: Registry, repository: str, digest: str, descriptor: Mapping[str, Any]
) -> None:
    """Append ``descriptor`` to the ``<alg>-<hex>`` referrers index of ``digest``."""
    tag = digest.replace(":", "-")
    existing = registry.request(
        "GET", f"/v2/{repository}/manifests/{tag}", headers={"Accept": OCI_INDEX}
    )
    entries = existing.json()["manifests"] if existing.status_code == 200 else []
    entries.append(dict(descriptor))
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    push_manifest(registry, repository, tag, json.dumps(index).encode(), OCI_INDEX)


def _descriptor(document: Mapping[str, Any], digest: str, size: int) -> dict[str, Any]:
    found: dict[str, Any] = {"mediaType": OCI_MANIFEST, "digest": digest, "size": size}
    if "artifactType" in document:
        found["artifactType"] = document["artifactType"]
    if document.get("annotations"):
        found["annotations"] = document["annotations"]
    return found
