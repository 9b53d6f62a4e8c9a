"""An OCI distribution client: resolve tags, fetch manifests, blobs and referrers.

Every answer is size-limited while it streams, charged to the review's byte
budget and hash-verified before it is returned; every request shares one
``Deadline`` and goes through the ``Network`` (per-host limits, breakers,
sockets shut down at the deadline). Failures are UpstreamErrors that name the
registry, and a missing manifest or blob is ``NotFound``. Credentials are sent
to the configured registry only: a redirect target never gets them, and a 401
is answered only when the registry itself sent it.

This module says what to fetch and how to check and parse it; how one request
reaches the registry (credentials, retries, redirects, a bounded body) is
``webhook.registry.call``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urljoin, urlsplit

from webhook.core.deadline import Deadline
from webhook.core.reference import ImageRef
from webhook.core.sources import LoginSource
from webhook.core.untrusted import json_value
from webhook.registry.call import Caller, Target
from webhook.registry.call import NotFound as NotFound
from webhook.registry.call import RegistrySettings as RegistrySettings
from webhook.registry.network import Network

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST))

_API_HOSTS = {"docker.io": "registry-1.docker.io"}
_MAX_REFERRER_PAGES = 16
#: More referrers than this for one digest is a flood, not a signed image.
_MAX_REFERRERS = 1000
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True, slots=True)
class Manifest:
    """A verified manifest: its digest, media type, exact bytes and parsed JSON."""

    digest: str
    media_type: str
    body: bytes
    data: dict[str, Any]


class RegistryClient:
    """A thread-safe client for OCI distribution registries.

    ``settings`` maps a registry host (``host[:port]``) to how to reach it;
    hosts without settings get HTTPS and system CAs. ``sources`` are the
    login sources trustgate holds (cloud identities, kubelet plug-ins); a
    review's pull secrets come with its deadline (``deadline.scope``). Each
    call tries the logins in the order of ``registry.logins``.
    ``timeout`` is each call's own timeout (default: the network's
    ``call_seconds``). What the host's breaker counts: a refused or reset
    connection, a TLS failure, a 5xx answer after retries, or a timeout within
    that per-call timeout; a call cut at the review's deadline is a CallCut,
    and a 429 is the host asking for less, not failing.
    """

    def __init__(
        self,
        settings: Mapping[str, RegistrySettings] | None = None,
        *,
        timeout: float | None = None,
        max_manifest_bytes: int = 4 * 1024 * 1024,
        max_blob_bytes: int = 1024 * 1024,
        retries: int = 2,
        network: Network | None = None,
        sources: Sequence[LoginSource] = (),
    ) -> None:
        self._settings = dict(settings or {})
        self._network = network or Network()
        self._timeout = self._network.limits.call_seconds if timeout is None else timeout
        self._max_manifest_bytes = max_manifest_bytes
        self._max_blob_bytes = max_blob_bytes
        self._call = Caller(
            self._network,
            timeout=self._timeout,
            retries=retries,
            max_token_bytes=max_manifest_bytes,
            sources=sources,
        )

    def resolve(self, ref: ImageRef, deadline: Deadline) -> str:
        """The digest ``ref`` points to: its own digest, or its tag's.

        Asks with HEAD and falls back to GET when HEAD gives no digest. Raises
        NotFound when the tag does not exist and UpstreamError on any other
        failure.
        """
        if ref.digest is not None:
            return ref.digest
        tag = ref.tag or "latest"
        target = self._target(ref)
        path = self._path(target, "manifests", _checked_reference(target, tag))
        with self._network.call(target.host, deadline):
            response = self._call.request(target, "HEAD", path, deadline, accept=MANIFEST_ACCEPT)
            response.drain()
        if response.status == 404:
            raise target.error(f"tag {tag} not found in {target.host}/{ref.path}", NotFound)
        digest = response.headers.get("Docker-Content-Digest", "")
        if response.ok and _DIGEST.fullmatch(digest):
            return digest
        return self.manifest(ref, tag, deadline).digest

    def manifest(self, ref: ImageRef, reference: str, deadline: Deadline) -> Manifest:
        """The manifest (or index) at ``reference``, a tag or a digest.

        Verifies the body against a digest reference, or against the
        Docker-Content-Digest header for a tag. Raises NotFound on 404 and
        UpstreamError when the body is too large, does not match, is not a
        JSON object, or the registry fails.
        """
        target = self._target(ref)
        path = self._path(target, "manifests", _checked_reference(target, reference))
        expected = reference if _DIGEST.fullmatch(reference) else None
        with self._network.call(target.host, deadline):
            response = self._call.request(target, "GET", path, deadline, accept=MANIFEST_ACCEPT)
            self._call.expect_ok(target, response, f"manifest {reference}")
            header = response.headers.get("Docker-Content-Digest")
            if expected is None and header is not None:
                if not _DIGEST.fullmatch(header):
                    response.close()
                    raise target.error(
                        f"{target.host} sent a malformed digest header {header[:80]!r}"
                    )
                expected = header
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            body = self._call.read(target, response, self._max_manifest_bytes, deadline, "manifest")
        digest = _verified(target, body, expected, "manifest")
        data = _json_object(target, body, "manifest")
        media_type = data.get("mediaType")
        return Manifest(
            digest, media_type if isinstance(media_type, str) else content_type, body, data
        )

    def blob(
        self, ref: ImageRef, digest: str, deadline: Deadline, *, max_bytes: int | None = None
    ) -> bytes:
        """The blob ``digest`` of ``ref``'s repository, verified against the digest.

        Raises NotFound on 404 and UpstreamError when the digest is not a
        sha256/sha512 digest, the blob is larger than ``max_bytes`` (default:
        the client's limit), does not match, or the registry fails.
        """
        target = self._target(ref)
        path = self._path(target, "blobs", _checked_digest(target, digest))
        limit = self._max_blob_bytes if max_bytes is None else max_bytes
        with self._network.call(target.host, deadline):
            response = self._call.request(target, "GET", path, deadline, accept="*/*")
            self._call.expect_ok(target, response, f"blob {digest}")
            body = self._call.read(target, response, limit, deadline, "blob")
        _verified(target, body, digest, "blob")
        return body

    def referrers(
        self, ref: ImageRef, digest: str, deadline: Deadline, *, artifact_type: str | None = None
    ) -> list[dict[str, Any]]:
        """The descriptors of manifests whose subject is ``digest``.

        Uses the referrers API, following pagination, and falls back to the
        ``<alg>-<hex>`` tag schema only when the registry answers 404 to the
        first request for that very path (the distribution spec's sign of a
        registry without the API; a registry with it never answers 404 there);
        [] when neither exists. Only descriptors of ``artifact_type`` are kept
        when it is given, whether or not the registry filtered. At most
        _MAX_REFERRER_PAGES pages and _MAX_REFERRERS descriptors are read,
        each page bounded by the manifest size limit and all of them by the
        review's deadline and byte budget. Raises UpstreamError on any other
        failure, on a 404 from a redirect target or a later page, and when
        the listing goes on past those bounds.
        """
        target = self._target(ref)
        path = self._path(target, "referrers", _checked_digest(target, digest))
        if artifact_type is not None:
            path += "?" + urlencode({"artifactType": artifact_type})
        found: list[dict[str, Any]] = []
        for page in range(_MAX_REFERRER_PAGES):
            with self._network.call(target.host, deadline):
                response = self._call.request(target, "GET", path, deadline, accept=OCI_INDEX)
                missing = (
                    response.status == 404
                    and page == 0
                    and urlsplit(response.url).path == urlsplit(target.base + path).path
                )
                if not missing:
                    self._call.expect_ok(target, response, f"referrers of {digest}")
                    next_url = response.next_link()
                    limit = self._max_manifest_bytes
                    body = self._call.read(target, response, limit, deadline, "referrers")
            if missing:
                response.close()
                return self._referrers_tag(ref, digest, deadline, artifact_type)
            index = _json_object(target, body, "referrers index")
            del body
            found += _of_type(_descriptors(target, index), artifact_type)
            if len(found) > _MAX_REFERRERS:
                raise target.error(
                    f"{target.host} lists more than {_MAX_REFERRERS} referrers of {digest}"
                )
            if not next_url:
                return found
            parts = urlsplit(urljoin(target.base + path, next_url))
            if f"{parts.scheme}://{parts.netloc}" != target.base:
                raise target.error(f"{target.host} paginated referrers to another host")
            path = parts.path + (f"?{parts.query}" if parts.query else "")
        raise target.error(
            f"{target.host} lists referrers of {digest} over more than {_MAX_REFERRER_PAGES} pages"
        )

    def _referrers_tag(
        self, ref: ImageRef, digest: str, deadline: Deadline, artifact_type: str | None
    ) -> list[dict[str, Any]]:
        algorithm, _, encoded = digest.partition(":")
        try:
            index = self.manifest(ref, f"{algorithm[:32]}-{encoded[:64]}", deadline)
        except NotFound:
            return []
        return _of_type(_descriptors(self._target(ref), index.data), artifact_type)

    def _target(self, ref: ImageRef) -> Target:
        settings = self._settings.get(ref.domain, RegistrySettings())
        scheme = "http" if settings.insecure else "https"
        return Target(ref, settings, f"{scheme}://{_API_HOSTS.get(ref.domain, ref.domain)}")

    @staticmethod
    def _path(target: Target, kind: str, reference: str) -> str:
        return f"/v2/{target.ref.path}/{kind}/{quote(reference, safe=':')}"


def _checked_reference(target: Target, reference: str) -> str:
    if _DIGEST.fullmatch(reference) or _TAG.fullmatch(reference):
        return reference
    raise target.error(f"{reference[:80]!r} is neither a tag nor a sha256/sha512 digest")


def _checked_digest(target: Target, digest: str) -> str:
    if _DIGEST.fullmatch(digest):
        return digest
    raise target.error(f"{digest[:80]!r} is not a sha256/sha512 digest")


def _verified(target: Target, body: bytes, expected: str | None, what: str) -> str:
    """The digest of ``body``, which must equal ``expected`` when given."""
    algorithm = expected.partition(":")[0] if expected else "sha256"
    actual = f"{algorithm}:{hashlib.new(algorithm, body).hexdigest()}"
    if expected is not None and actual != expected:
        raise target.error(
            f"{what} from {target.host} does not match its digest {expected}: "
            f"the content hashes to {actual}"
        )
    return actual


def _json_object(target: Target, body: bytes, what: str) -> dict[str, Any]:
    try:
        data = json_value(body)
    except json.JSONDecodeError as exc:
        raise target.error(f"{what} from {target.host} is not JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise target.error(f"{what} from {target.host} is not a JSON object")
    return data


def _descriptors(target: Target, index: Mapping[str, Any]) -> list[dict[str, Any]]:
    manifests = index.get("manifests", [])
    if not isinstance(manifests, list) or not all(isinstance(m, dict) for m in manifests):
        raise target.error(f"referrers index from {target.host} has malformed manifests")
    return manifests


def _of_type(descriptors: list[dict[str, Any]], artifact_type: str | None) -> list[dict[str, Any]]:
    if artifact_type is None:
        return descriptors
    return [d for d in descriptors if d.get("artifactType") == artifact_type]
