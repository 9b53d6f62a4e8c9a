"""An OCI distribution client: resolve tags, fetch manifests, blobs and referrers.

Every answer is size-limited while it streams, charged to the review's byte
budget and hash-verified before it is returned; every request shares one
``Deadline`` and goes through the ``Network`` (per-host limits, breakers,
sockets shut down at the deadline). Failures are UpstreamErrors that name the
registry, and a missing manifest or blob is ``NotFound``. Credentials are sent
to the configured registry only: a redirect target never gets them, and a 401
is answered only when the registry itself sent it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urljoin, urlsplit

import urllib3

from webhook.core.deadline import BudgetExceeded, Deadline
from webhook.core.errors import UpstreamError
from webhook.core.failures import describe
from webhook.core.reference import ImageRef
from webhook.core.untrusted import json_value
from webhook.registry.auth import Authenticator, basic_authorization, bearer_challenge
from webhook.registry.network import CallCut, HostFailure, Network
from webhook.registry.transport import Answer, timed_out_waiting

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST))

_API_HOSTS = {"docker.io": "registry-1.docker.io"}
_RETRYABLE = frozenset({429, 502, 503, 504})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 3
_MAX_REFERRER_PAGES = 16
#: More referrers than this for one digest is a flood, not a signed image.
_MAX_REFERRERS = 1000
_BACKOFF = 0.2
_RETRY_AFTER_MAX = 2.0
_CHUNK = 64 * 1024
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


class NotFound(UpstreamError):
    """The registry answered 404: the manifest, blob or repository does not exist."""


class _Transient(HostFailure):
    """A connection failure or timeout that a retry may cure."""


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    """How to reach one registry host (``host[:port]``, as in image references)."""

    insecure: bool = False
    ca: Path | None = None
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True, slots=True)
class Manifest:
    """A verified manifest: its digest, media type, exact bytes and parsed JSON."""

    digest: str
    media_type: str
    body: bytes
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Target:
    ref: ImageRef
    settings: RegistrySettings
    base: str

    @property
    def host(self) -> str:
        return self.ref.domain

    def error(self, message: str, kind: type[UpstreamError] = UpstreamError) -> UpstreamError:
        return kind(message, image=str(self.ref))

    def remaining(self, deadline: Deadline) -> float:
        remaining = deadline.remaining()
        if remaining <= 0:
            raise self.error(_late(deadline, self.host), CallCut)
        return remaining


class RegistryClient:
    """A thread-safe client for OCI distribution registries.

    ``settings`` maps a registry host (``host[:port]``) to how to reach it;
    hosts without settings get HTTPS, system CAs and anonymous access.
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
    ) -> None:
        self._settings = dict(settings or {})
        self._network = network or Network()
        self._timeout = self._network.limits.call_seconds if timeout is None else timeout
        self._max_manifest_bytes = max_manifest_bytes
        self._max_blob_bytes = max_blob_bytes
        self._retries = retries
        self._auth = Authenticator()

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
            response = self._request(target, "HEAD", path, deadline, accept=MANIFEST_ACCEPT)
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
            response = self._request(target, "GET", path, deadline, accept=MANIFEST_ACCEPT)
            self._expect_ok(target, response, f"manifest {reference}")
            header = response.headers.get("Docker-Content-Digest")
            if expected is None and header is not None:
                if not _DIGEST.fullmatch(header):
                    response.close()
                    raise target.error(
                        f"{target.host} sent a malformed digest header {header[:80]!r}"
                    )
                expected = header
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            body = self._read(target, response, self._max_manifest_bytes, deadline, "manifest")
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
            response = self._request(target, "GET", path, deadline, accept="*/*")
            self._expect_ok(target, response, f"blob {digest}")
            body = self._read(target, response, limit, deadline, "blob")
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
                response = self._request(target, "GET", path, deadline, accept=OCI_INDEX)
                missing = (
                    response.status == 404
                    and page == 0
                    and urlsplit(response.url).path == urlsplit(target.base + path).path
                )
                if not missing:
                    self._expect_ok(target, response, f"referrers of {digest}")
                    next_url = response.next_link()
                    limit = self._max_manifest_bytes
                    body = self._read(target, response, limit, deadline, "referrers")
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

    def _target(self, ref: ImageRef) -> _Target:
        settings = self._settings.get(ref.domain, RegistrySettings())
        scheme = "http" if settings.insecure else "https"
        return _Target(ref, settings, f"{scheme}://{_API_HOSTS.get(ref.domain, ref.domain)}")

    @staticmethod
    def _path(target: _Target, kind: str, reference: str) -> str:
        return f"/v2/{target.ref.path}/{kind}/{quote(reference, safe=':')}"

    def _request(
        self, target: _Target, method: str, path: str, deadline: Deadline, *, accept: str
    ) -> Answer:
        """Send with auth, retries and redirects; the body is left unread.

        Returns any answer but 401/403/429/5xx, which raise UpstreamError.
        """
        settings = target.settings
        authorization = self._auth.header(
            target.host, target.ref.path, settings.username, settings.password
        )
        authenticated = False
        attempt = 0
        while True:
            headers = {"Accept": accept}
            if authorization:
                headers["Authorization"] = authorization
            try:
                response = self._send(target, method, target.base + path, headers, deadline)
            except _Transient as exc:
                if attempt < self._retries and _pause(deadline, None, attempt):
                    attempt += 1
                    continue
                raise target.error(exc.message, HostFailure) from None
            except CallCut as exc:
                if attempt == 0:
                    raise
                # The host failed on its own before the deadline cut its retry short:
                # the breaker counts that failure.
                raise target.error(exc.message, HostFailure) from None
            status = response.status
            answered_by = urlsplit(response.url).netloc.lower()
            if status == 401 and answered_by != urlsplit(target.base).netloc:
                # A redirect target asking for credentials: they belong to the
                # registry alone, so neither they nor a token go anywhere else.
                response.close()
                raise target.error(
                    f"{target.host} redirected to {answered_by}, which asked for credentials; "
                    f"credentials and tokens for {target.host} are sent to it alone"
                )
            if status == 401 and not authenticated:
                response.close()
                self._auth.forget(target.host, target.ref.path)
                challenge = response.headers.get("WWW-Authenticate", "")
                authorization = self._token(target, challenge, deadline)
                authenticated = True
                continue
            if status in _RETRYABLE and attempt < self._retries:
                response.close()
                if _pause(deadline, response.headers.get("Retry-After"), attempt):
                    attempt += 1
                    continue
            if status == 429:
                response.close()
                raise target.error(f"rate limited by {target.host}")
            if status >= 500:
                response.close()
                raise target.error(
                    f"{target.host} answered {status} {response.reason}", HostFailure
                )
            if status in (401, 403):
                response.close()
                raise target.error(
                    f"{target.host} denied access to {target.ref.path} ({status} {response.reason})"
                )
            return response

    def _token(self, target: _Target, header: str, deadline: Deadline) -> str:
        """Answer a 401 challenge with a Bearer token; raises UpstreamError."""
        settings = target.settings
        try:
            challenge = bearer_challenge(header)
        except UpstreamError as exc:
            raise target.error(f"{target.host}: {exc.message}") from None
        if challenge is None:
            if settings.username is not None:
                raise target.error(f"{target.host} refused the credentials of {settings.username}")
            raise target.error(f"{target.host} requires credentials, and none are configured")
        realm = urlsplit(challenge.realm)
        if realm.scheme not in ("http", "https") or not realm.netloc:
            raise target.error(f"{target.host} named an unusable token realm {challenge.realm!r}")
        private = realm.scheme == "https" or settings.insecure
        credentials = basic_authorization(settings.username, settings.password) if private else None

        def fetch(url: str, query: Mapping[str, str], headers: Mapping[str, str]) -> bytes:
            full = url + ("&" if "?" in url else "?") + urlencode(query)
            sent = {"Accept": "application/json", **headers}
            try:
                response = self._send(target, "GET", full, sent, deadline)
            except _Transient as exc:
                # The registry's own token service failing: its breaker counts it.
                raise target.error(
                    f"token endpoint {realm.netloc}: {exc.message}", HostFailure
                ) from None
            if not response.ok:
                response.close()
                kind = HostFailure if response.status >= 500 else UpstreamError
                raise target.error(
                    f"token endpoint {realm.netloc} answered {response.status} "
                    f"{response.reason} for {target.host}",
                    kind,
                )
            return self._read(target, response, self._max_manifest_bytes, deadline, "token")

        try:
            return self._auth.fetch_token(
                target.host, target.ref.path, challenge, fetch, credentials=credentials
            )
        except UpstreamError as exc:
            # A cut or a failure stays one, so that the breaker counts it rightly.
            kind = type(exc) if isinstance(exc, HostFailure | CallCut) else UpstreamError
            raise target.error(f"{target.host}: {exc.message}", kind) from None

    def _send(
        self,
        target: _Target,
        method: str,
        url: str,
        headers: dict[str, str],
        deadline: Deadline,
    ) -> Answer:
        """One request, following up to three redirects by hand.

        Authorization is dropped on a redirect to another host, plain HTTP is
        refused unless the registry is insecure, and the registry's CA applies
        only to the first host. Raises _Transient for connection failures and
        timeouts, UpstreamError for TLS failures and bad redirects.
        """
        origin = urlsplit(url).netloc.lower()
        headers = {**headers, "Accept-Encoding": "identity"}
        for _ in range(_MAX_REDIRECTS + 1):
            remaining = target.remaining(deadline)
            limit = min(self._timeout, remaining)
            netloc = urlsplit(url).netloc.lower()
            ca = target.settings.ca
            try:
                response = self._network.transport.request(
                    method,
                    url,
                    headers,
                    timeout=limit,
                    ca=str(ca) if ca is not None and netloc == origin else None,
                )
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                timed_out = timed_out_waiting(exc)
                if deadline.remaining() <= 0 or (timed_out and limit < self._timeout):
                    # The review's deadline, not the host's own timeout, ended it.
                    self._network.event("deadline_exceeded", netloc)
                    raise target.error(_late(deadline, netloc), CallCut) from None
                if isinstance(exc, urllib3.exceptions.SSLError):
                    raise target.error(
                        f"TLS with {netloc} failed: {describe(exc)}", HostFailure
                    ) from None
                if timed_out:
                    raise _Transient(f"{netloc} timed out") from None
                raise _Transient(f"cannot reach {netloc}: {describe(exc)}") from None
            if response.status not in _REDIRECTS:
                return response
            response.close()
            location = response.headers.get("Location")
            if not location:
                raise target.error(f"{netloc} answered {response.status} without a Location")
            url = urljoin(url, location)
            parts = urlsplit(url)
            if parts.scheme != "https" and not (
                parts.scheme == "http" and target.settings.insecure
            ):
                raise target.error(
                    f"{netloc} redirected to a {parts.scheme} URL; HTTPS is required"
                )
            if parts.netloc.lower() != netloc:
                headers.pop("Authorization", None)
            if response.status == 303 and method != "HEAD":
                method = "GET"
        raise target.error(f"{target.host} redirected more than {_MAX_REDIRECTS} times")

    def _expect_ok(self, target: _Target, response: Answer, what: str) -> None:
        if response.ok:
            return
        response.close()
        if response.status == 404:
            raise target.error(f"{what} not found in {target.host}/{target.ref.path}", NotFound)
        raise target.error(f"{target.host} answered {response.status} for {what}")

    def _read(
        self,
        target: _Target,
        response: Answer,
        limit: int,
        deadline: Deadline,
        what: str,
    ) -> bytes:
        """The body, at most ``limit`` bytes, read before the deadline; raises UpstreamError."""
        too_large = f"{what} from {target.host} is larger than {limit} bytes"
        chunks: list[bytes] = []
        total = 0
        raw = response.raw
        limited = self._timeout
        try:
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > limit:
                raise target.error(too_large)
            while True:
                remaining = target.remaining(deadline)
                sock = getattr(raw.connection, "sock", None)
                if sock is not None:
                    limited = min(self._timeout, remaining)
                    sock.settimeout(limited)
                chunk = raw.read1(_CHUNK, decode_content=False)
                if not chunk:
                    break
                total += len(chunk)
                if total > limit:
                    raise target.error(too_large)
                deadline.charge(target.host, len(chunk))
                chunks.append(chunk)
            raw.drain_conn()
        except BudgetExceeded as exc:
            self._network.event("budget_exceeded", target.host)
            raise target.error(exc.message) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            timed_out = timed_out_waiting(exc)
            if deadline.remaining() <= 0 or (timed_out and limited < self._timeout):
                self._network.event("deadline_exceeded", target.host)
                late = _late(deadline, target.host, f"sending the {what}")
                raise target.error(late, CallCut) from None
            if timed_out:
                raise target.error(
                    f"{target.host} timed out sending the {what}", HostFailure
                ) from None
            raise target.error(
                f"reading the {what} from {target.host} failed: {describe(exc)}", HostFailure
            ) from None
        finally:
            if raw.connection is not None:
                response.close()
        return b"".join(chunks)


def _late(deadline: Deadline, host: str, doing: str = "answering") -> str:
    return (
        f"{host} timed out: it was still {doing} when the review's deadline "
        f"of {deadline.seconds:g} s passed"
    )


def _pause(deadline: Deadline, retry_after: str | None, attempt: int) -> bool:
    """Sleep before a retry; False when the wait would not fit the deadline or is asked too long."""
    delay = _BACKOFF * 2**attempt
    if retry_after is not None and retry_after.strip().isdigit():
        delay = float(retry_after.strip())
        if delay > _RETRY_AFTER_MAX:
            return False
    if delay >= deadline.remaining():
        return False
    time.sleep(delay)
    return True


def _checked_reference(target: _Target, reference: str) -> str:
    if _DIGEST.fullmatch(reference) or _TAG.fullmatch(reference):
        return reference
    raise target.error(f"{reference[:80]!r} is neither a tag nor a sha256/sha512 digest")


def _checked_digest(target: _Target, digest: str) -> str:
    if _DIGEST.fullmatch(digest):
        return digest
    raise target.error(f"{digest[:80]!r} is not a sha256/sha512 digest")


def _verified(target: _Target, body: bytes, expected: str | None, what: str) -> str:
    """The digest of ``body``, which must equal ``expected`` when given."""
    algorithm = expected.partition(":")[0] if expected else "sha256"
    actual = f"{algorithm}:{hashlib.new(algorithm, body).hexdigest()}"
    if expected is not None and actual != expected:
        raise target.error(
            f"{what} from {target.host} does not match its digest {expected}: "
            f"the content hashes to {actual}"
        )
    return actual


def _json_object(target: _Target, body: bytes, what: str) -> dict[str, Any]:
    try:
        data = json_value(body)
    except json.JSONDecodeError as exc:
        raise target.error(f"{what} from {target.host} is not JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise target.error(f"{what} from {target.host} is not a JSON object")
    return data


def _descriptors(target: _Target, index: Mapping[str, Any]) -> list[dict[str, Any]]:
    manifests = index.get("manifests", [])
    if not isinstance(manifests, list) or not all(isinstance(m, dict) for m in manifests):
        raise target.error(f"referrers index from {target.host} has malformed manifests")
    return manifests


def _of_type(descriptors: list[dict[str, Any]], artifact_type: str | None) -> list[dict[str, Any]]:
    if artifact_type is None:
        return descriptors
    return [d for d in descriptors if d.get("artifactType") == artifact_type]
