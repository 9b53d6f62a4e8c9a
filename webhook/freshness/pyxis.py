"""A client for Red Hat's container catalog API (Pyxis): grades of an image by digest.

An image is looked up by its manifest digest: ``repositories.manifest_list_digest``
for a multi-architecture index (Pyxis then lists one image per architecture),
``repositories.manifest_schema2_digest`` or ``image_id`` for a single manifest.
Each image carries ``freshness_grades``: windows of ``grade``, ``start_date``
and ``end_date`` (the last has none). Every request runs within the review's
deadline and byte budget, through the per-host limits and breaker of the
``Network``; failures are UpstreamErrors naming Pyxis, never crashes. The API
key is sent with each request to the configured host and nowhere else: a
redirect to another host is not followed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import urllib3

from webhook.core.deadline import BudgetExceeded, Deadline
from webhook.core.errors import UpstreamError
from webhook.core.failures import describe
from webhook.core.untrusted import json_value
from webhook.freshness.grades import GRADES, Grade, Window, parse_date
from webhook.registry.network import CallCut, HostFailure, Network
from webhook.registry.transport import Answer, cut_by_deadline, timed_out_waiting

DEFAULT_URL = "https://catalog.redhat.com/api/containers/v1"
DEFAULT_TIMEOUT = 3.0
#: Pyxis answers for one digest are small; anything larger is not what was asked.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
_MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_PAGE_SIZE = 100
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_INCLUDE = ",".join(
    (
        "total",
        "data.architecture",
        "data.image_id",
        "data.freshness_grades",
        "data.repositories.manifest_list_digest",
        "data.repositories.manifest_schema2_digest",
    )
)


@dataclass(frozen=True, slots=True)
class ArchitectureGrades:
    """The grade windows Pyxis publishes for one architecture of an image."""

    architecture: str
    image_id: str
    windows: tuple[Window, ...]


@dataclass(frozen=True, slots=True)
class PyxisSettings:
    """``freshness.pyxis`` of trustgate.yaml."""

    url: str = DEFAULT_URL
    api_key: str | None = field(default=None, repr=False)  # a secret: never in a log line
    timeout: float = DEFAULT_TIMEOUT


class PyxisClient:
    """Looks images up in Pyxis through the Network's transport; thread-safe."""

    def __init__(self, settings: PyxisSettings, network: Network | None = None) -> None:
        self._settings = settings
        self._base = settings.url.rstrip("/")
        self._origin = urlsplit(self._base)
        self._host = self._origin.netloc.lower()
        self._network = network or Network()

    @property
    def url(self) -> str:
        """The API base URL, for messages."""
        return self._base

    def _headers(self) -> dict[str, str]:
        # Per request: the key is for this host alone, and redirects are followed
        # only within it (``_redirect``).
        headers = {"Accept": "application/json"}
        if self._settings.api_key:
            headers["X-API-KEY"] = self._settings.api_key
        return headers

    def grades(self, digest: str, deadline: Deadline) -> tuple[ArchitectureGrades, ...]:
        """Every architecture Pyxis knows under ``digest``; empty when it knows none.

        Raises:
            UpstreamError: Pyxis failed, timed out or answered something that is
                not the catalog's JSON; the message says which.
        """
        if not _DIGEST.fullmatch(digest):
            raise UpstreamError(f"Pyxis is asked only about sha256 digests, not {digest[:80]!r}")
        query = (
            f"repositories.manifest_list_digest=={digest} or "
            f"repositories.manifest_schema2_digest=={digest} or image_id=={digest}"
        )
        params = {"filter": query, "page_size": str(_PAGE_SIZE), "page": "0", "include": _INCLUDE}
        data = self._get("/images", params, deadline)
        if data is None:
            return ()
        images = data.get("data")
        if not isinstance(images, list):
            raise UpstreamError(f"Pyxis at {self._base} answered without a data list")
        return tuple(_architecture(image, self._base) for image in images)

    def _get(
        self, path: str, params: Mapping[str, str], deadline: Deadline
    ) -> dict[str, Any] | None:
        """The JSON object at ``path``; None for 404."""
        remaining = deadline.check(f"Pyxis at {self._base}")
        timeout = min(self._settings.timeout, remaining)
        try:
            with self._network.call(self._host, deadline):
                try:
                    body = self._fetch(self._base + path, params, timeout, deadline)
                except (urllib3.exceptions.HTTPError, OSError) as exc:
                    raise self._failure(exc, timeout, deadline) from None
        except BudgetExceeded as exc:
            self._network.event("budget_exceeded", self._host)
            raise UpstreamError(exc.message) from None
        if body is None:
            return None
        try:
            data = json_value(body)
        except json.JSONDecodeError as exc:
            raise UpstreamError(
                f"Pyxis at {self._base} answered something that is not JSON: {exc.msg}"
            ) from None
        if not isinstance(data, dict):
            raise UpstreamError(f"Pyxis at {self._base} answered JSON that is not an object")
        return data

    def _fetch(
        self, url: str, params: Mapping[str, str] | None, timeout: float, deadline: Deadline
    ) -> bytes | None:
        """The body at ``url`` (None for 404), following redirects within the Pyxis host only.

        Raises urllib3's exceptions (and OSError) for transport failures and
        UpstreamError for answers that are not the catalog's.
        """
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params)
        headers = {**self._headers(), "Accept-Encoding": "identity"}
        for _ in range(_MAX_REDIRECTS + 1):
            response = self._network.transport.request("GET", url, headers, timeout=timeout)
            try:
                if response.status in _REDIRECTS:
                    url = self._redirect(url, response.headers.get("Location", ""))
                    continue
                if response.status == 404:
                    return None
                if response.status != 200:
                    kind = HostFailure if response.status >= 500 else UpstreamError
                    raise kind(f"Pyxis at {self._base} answered HTTP {response.status}")
                return _read(response, self._base, self._host, deadline)
            finally:
                response.close()
        raise UpstreamError(f"Pyxis at {self._base} redirected more than {_MAX_REDIRECTS} times")

    def _failure(self, exc: BaseException, timeout: float, deadline: Deadline) -> UpstreamError:
        """What the breaker is told: Pyxis failed (HostFailure), or the review ran out of time."""
        if cut_by_deadline(exc, deadline.remaining(), timeout, self._settings.timeout):
            self._network.event("deadline_exceeded", self._host)
            return CallCut(
                f"Pyxis at {self._base} timed out: it was still answering when the "
                f"review's deadline of {deadline.seconds:g} s passed"
            )
        if timed_out_waiting(exc):
            return HostFailure(f"Pyxis at {self._base} did not answer within {timeout:.1f} s")
        return HostFailure(f"Pyxis at {self._base} cannot be reached: {describe(exc)}")

    def _redirect(self, url: str, location: str) -> str:
        target = urljoin(url, location)
        parts = urlsplit(target)
        if (parts.scheme, parts.netloc.lower()) != (self._origin.scheme, self._host):
            raise UpstreamError(
                f"Pyxis at {self._base} redirected to {parts.scheme}://{parts.netloc[:200]}; "
                "the API key goes to the configured Pyxis host only, so it is not followed"
            )
        return target


def _read(response: Answer, base: str, host: str, deadline: Deadline) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := response.raw.read1(64 * 1024, decode_content=False):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise UpstreamError(f"Pyxis at {base} answered more than {MAX_RESPONSE_BYTES} bytes")
        deadline.charge(host, len(chunk))
        chunks.append(chunk)
    return b"".join(chunks)


def _architecture(image: Any, base: str) -> ArchitectureGrades:
    if not isinstance(image, dict):
        raise UpstreamError(f"Pyxis at {base} listed an image that is not an object")
    # Pyxis leaves architecture unset for the default x86-64 build.
    architecture = image.get("architecture") or "amd64"
    raw = image.get("freshness_grades") or []
    if not isinstance(raw, list):
        raise UpstreamError(f"Pyxis at {base}: freshness_grades of {architecture} is not a list")
    windows = tuple(sorted((_window(entry, base) for entry in raw), key=_start))
    return ArchitectureGrades(str(architecture), str(image.get("image_id") or ""), windows)


def _start(window: Window) -> datetime:
    return window.start or datetime.min.replace(tzinfo=UTC)


def _window(entry: Any, base: str) -> Window:
    if not isinstance(entry, dict) or entry.get("grade") not in GRADES:
        raise UpstreamError(f"Pyxis at {base} published a freshness grade that is not A to F")
    grade: Grade = entry["grade"]
    start = parse_date(entry.get("start_date"))
    end = entry.get("end_date")
    if start is None:
        raise UpstreamError(f"Pyxis at {base} published grade {grade} without a valid start_date")
    end_date = None if end is None else parse_date(end)
    if end is not None and end_date is None:
        raise UpstreamError(f"Pyxis at {base} published grade {grade} with an invalid end_date")
    return Window(grade, start, end_date)
