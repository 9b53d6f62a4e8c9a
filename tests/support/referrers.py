"""The OCI 1.1 referrers API in front of the test registry, and a referrer pusher.

Debian's docker-registry (distribution 2.8) has no referrers API: it answers
``GET /v2/<name>/referrers/<digest>`` with 404, the signal for clients to use
the ``<alg>-<hex>`` tag schema instead. No packaged registry that serves the
API installs here, so ``ReferrersFront`` adds it, following the distribution
spec (v1.1, "Listing Referrers"):

- the answer is an image index (200, ``application/vnd.oci.image.index.v1+json``)
  listing a descriptor of every manifest in the repository whose ``subject``
  is the digest: its media type, digest, size, ``artifactType`` (the
  manifest's, or else its config's media type) and annotations;
- an unknown digest or repository gets an empty index, never a 404; a
  malformed digest gets 400;
- ``?artifactType=`` keeps only matching descriptors and the answer then
  carries ``OCI-Filters-Applied: artifactType``;
- with ``page_size`` set, answers are paginated with a ``Link: <...>; rel="next"``
  header, as the spec allows.

The index is computed on every request from the manifests the registry
stored (its filesystem storage: the repository's manifest revisions and
their blobs), so whatever a test pushes, by tag or by digest, is listed.
Every other request is passed to the registry as is (reads only: tests push
to the registry itself).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from tests.support.localhttp import LocalServer, QuietHandler
from tests.support.registry import (
    OCI_INDEX,
    OCI_MANIFEST,
    Registry,
    digest_of,
    manifest_descriptor,
    push_artifact,
    push_manifest,
)

_REFERRERS = re.compile(r"/v2/(?P<name>.+)/referrers/(?P<digest>[^/]+)")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_HOP_BY_HOP = {"connection", "transfer-encoding", "keep-alive", "content-length"}
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"


class ReferrersFront:
    """A plain-HTTP front on 127.0.0.1 adding the referrers API to ``registry``."""

    def __init__(self, registry: Registry, *, page_size: int | None = None) -> None:
        self.registry = registry
        self.page_size = page_size
        #: Every path (with query) asked for, in order: what reached the registry.
        self.paths: list[str] = []
        self._server = LocalServer(_handler(self))
        self.host = self._server.host
        self.url = self._server.url

    def start(self) -> ReferrersFront:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def referrers(self, name: str, digest: str, artifact_type: str | None) -> list[dict[str, Any]]:
        """The descriptors of the stored manifests of ``name`` whose subject is ``digest``."""
        storage = self.registry.root / "docker" / "registry" / "v2"
        revisions = storage / "repositories" / name / "_manifests" / "revisions" / "sha256"
        found = []
        for link in sorted(revisions.glob("*/link")):
            stored = link.read_text().strip()
            hex_digest = stored.partition(":")[2]
            data = storage / "blobs" / "sha256" / hex_digest[:2] / hex_digest / "data"
            if not data.exists():
                continue
            body = data.read_bytes()
            manifest = _json(body)
            subject = manifest.get("subject")
            if not isinstance(subject, dict) or subject.get("digest") != digest:
                continue
            config = manifest.get("config")
            kind = manifest.get("artifactType") or (
                config.get("mediaType") if isinstance(config, dict) else None
            )
            if artifact_type is not None and kind != artifact_type:
                continue
            descriptor: dict[str, Any] = {
                "mediaType": manifest.get("mediaType", OCI_MANIFEST),
                "digest": stored,
                "size": len(body),
            }
            if kind:
                descriptor["artifactType"] = kind
            if isinstance(manifest.get("annotations"), dict):
                descriptor["annotations"] = manifest["annotations"]
            found.append(descriptor)
        return found


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _handler(front: ReferrersFront) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        protocol_version = "HTTP/1.1"

        def do_HEAD(self) -> None:
            self._pass("HEAD")

        def do_GET(self) -> None:
            front.paths.append(self.path)
            parts = urlsplit(self.path)
            match = _REFERRERS.fullmatch(parts.path)
            if match is None:
                self._pass("GET")
                return
            digest = match.group("digest")
            if not _DIGEST.fullmatch(digest):
                self._send(400, {"errors": [{"code": "DIGEST_INVALID"}]}, {})
                return
            query = parse_qs(parts.query)
            artifact_type = query.get("artifactType", [None])[0]
            found = front.referrers(match.group("name"), digest, artifact_type)
            headers = {"Content-Type": OCI_INDEX}
            if artifact_type is not None:
                headers["OCI-Filters-Applied"] = "artifactType"
            start = int(query.get("last", ["0"])[0])
            if front.page_size is not None:
                end = start + front.page_size
                if end < len(found):
                    more = {"last": str(end)} | (
                        {"artifactType": artifact_type} if artifact_type else {}
                    )
                    headers["Link"] = f'<{parts.path}?{urlencode(more)}>; rel="next"'
                found = found[start:end]
            index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": found}
            self._send(200, index, headers)

        def _send(self, status: int, document: Any, headers: Mapping[str, str]) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _pass(self, method: str) -> None:
            forwarded = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            answer = requests.request(
                method,
                front.registry.url + self.path,
                headers=forwarded,
                timeout=10,
                allow_redirects=False,
            )
            self.send_response(answer.status_code)
            for name, value in answer.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            body = b"" if method == "HEAD" else answer.content
            length = answer.headers.get("Content-Length", str(len(body)))
            self.send_header("Content-Length", length if method == "HEAD" else str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def push_referrer(
    registry: Registry,
    repository: str,
    digest: str,
    document: bytes,
    *,
    artifact_type: str,
    annotations: Mapping[str, str] | None = None,
    tag_index: bool = True,
) -> str:
    """Push ``document`` as a referrer of ``digest`` (a manifest with ``subject``), as
    ``cosign sign`` 3 does, and return the referrer's digest.

    The manifest holds the empty config and one layer of ``artifact_type``.
    With ``tag_index`` the ``sha256-<hex>`` index is updated too, as clients
    do for registries without the referrers API; without it only a registry
    serving the API (``ReferrersFront``) lists the referrer.
    """
    subject = manifest_descriptor(registry, repository, digest)
    empty = b"{}"
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_CONFIG, "digest": digest_of(empty), "size": 2},
        "layers": [
            {"mediaType": artifact_type, "digest": digest_of(document), "size": len(document)}
        ],
        "subject": subject,
        "annotations": dict(annotations or {}),
    }
    blobs = {digest_of(document): document, digest_of(empty): empty}
    body = json.dumps(manifest).encode()
    referrer = push_artifact(registry, repository, digest_of(body), manifest, blobs)
    if tag_index:
        tag = digest.replace(":", "-")
        existing = registry.request(
            "GET", f"/v2/{repository}/manifests/{tag}", headers={"Accept": OCI_INDEX}
        )
        entries = existing.json()["manifests"] if existing.status_code == 200 else []
        entries.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": referrer,
                "size": len(body),
                "artifactType": artifact_type,
                "annotations": manifest["annotations"],
            }
        )
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        push_manifest(registry, repository, tag, json.dumps(index).encode(), OCI_INDEX)
    return referrer
