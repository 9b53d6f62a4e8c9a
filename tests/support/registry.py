"""The test registry: webhook.sandbox.registry (shared with ``make demo``), plus token auth.

``start_token_registry`` runs a registry behind a ``TokenServer``, which only the
tests need.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from tests.support.tokenserver import TokenServer
from webhook.sandbox.registry import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Registry,
    default_layer,
    digest_of,
    free_port,
    push_artifact,
    push_blob,
    push_image,
    push_index,
    push_manifest,
    start_registry,
)

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_LAYER_GZIP",
    "DOCKER_MANIFEST",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_LAYER_GZIP",
    "OCI_MANIFEST",
    "Registry",
    "default_layer",
    "digest_of",
    "free_port",
    "manifest_descriptor",
    "push_artifact",
    "push_blob",
    "push_image",
    "push_index",
    "push_manifest",
    "start_registry",
    "start_token_registry",
]


def manifest_descriptor(registry: Registry, repository: str, digest: str) -> dict[str, Any]:
    """The OCI descriptor (media type, digest, size) of a stored manifest, from a HEAD request."""
    head = registry.request(
        "HEAD", f"/v2/{repository}/manifests/{digest}", headers={"Accept": OCI_MANIFEST}
    )
    assert head.status_code == 200, head.text
    return {
        "mediaType": head.headers["Content-Type"],
        "digest": digest,
        "size": int(head.headers["Content-Length"]),
    }


def start_token_registry(tmp: Path, *, anonymous_pull: bool = False) -> Registry:
    """A registry with Bearer token auth and its own running ``TokenServer``.

    The token server knows one user, ``Registry.username`` with ``Registry.password``, who
    may pull and push; ``Registry.stop`` stops both.
    """
    user = ("pusher", secrets.token_urlsafe(12))
    tokens = TokenServer(tmp / "tokens", {user[0]: user[1]}, anonymous_pull=anonymous_pull)
    tokens.start()
    try:
        return start_registry(tmp / "registry", token_server=tokens, token_user=user)
    except BaseException:
        tokens.stop()
        raise
