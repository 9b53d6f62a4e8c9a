"""google-auth's HTTP transport, with every call bounded in time and bytes, and no redirect.

google-auth makes its calls (the metadata server, STS, IAM credentials)
through a ``google.auth.transport.Request`` it is handed; its own requests
transport waits two minutes by default and reads answers whole. This one
takes at most ``timeout`` seconds to connect and between reads, and the body
at most ``timeout`` seconds (checked after each read, and each read returns
what one receive brought, so a body dripped a byte at a time cannot stretch it)
and ``max_bytes`` bytes; it reads the proxy environment as requests does and
answers a redirect as it is.

A failed call raises google-auth's ``TransportError``, which its own retries
understand; an answer too large raises ``RefreshError``, which they do not
retry: asking again would bring the same.

``google.auth.default()`` looks up the project of federated credentials at
Cloud Resource Manager, sending the new token there. trustgate needs no
project, so that lookup is answered 404 here (google-auth then leaves the
project unset): the token goes to registries only, and a cluster without
egress to that API still gets its logins.

Imported only by ``webhook.credentials.gcp`` when a ``gcp`` provider is
built: it imports google-auth.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, cast
from urllib.parse import urlsplit

import requests
import urllib3
from google.auth import exceptions, transport

from webhook.core.failures import describe

#: google-auth's errors, called with a message (their constructors carry no types).
_TransportError = cast(Callable[[str], Exception], exceptions.TransportError)
_RefreshError = cast(Callable[[str], Exception], exceptions.RefreshError)
#: Cloud Resource Manager's host, in any universe.
_PROJECT_LOOKUP: Final = "cloudresourcemanager."
_CHUNK: Final = 8192


class Answer(transport.Response):
    """A status, headers, and the body as read."""

    def __init__(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self._status = status
        self._headers = headers
        self._data = data

    @property
    def status(self) -> int:
        """The HTTP status code."""
        return self._status

    @property
    def headers(self) -> Mapping[str, str]:
        """The response headers (case-insensitive)."""
        return self._headers

    @property
    def data(self) -> bytes:
        """The body."""
        return self._data


class BoundedRequest(transport.Request):
    """Calls of at most ``timeout`` seconds (each wait, and the body) and ``max_bytes`` bytes."""

    def __init__(self, timeout: float, max_bytes: int) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._local = threading.local()

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: Any = None,
        **kwargs: Any,
    ) -> Answer:
        """Send one request and read its answer.

        Raises:
            TransportError: it failed or took too long (the message names the host).
            RefreshError: the answer was larger than ``max_bytes``.
        """
        bound = self.timeout if timeout is None else min(float(timeout), self.timeout)
        host = urlsplit(url).netloc
        if host.startswith(_PROJECT_LOOKUP):
            return Answer(404, {}, b"{}")
        try:
            with self._session().request(
                method,
                url,
                data=body,
                headers=dict(headers or {}),
                timeout=(bound, bound),
                stream=True,
                allow_redirects=False,
            ) as response:
                data = self._read(response, host, time.monotonic() + bound)
                return Answer(response.status_code, response.headers, data)
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            raise _TransportError(f"{host}: {describe(exc)}") from None

    def _read(self, response: requests.Response, host: str, until: float) -> bytes:
        # ``read1``, not ``iter_content``: the latter waits to fill each chunk, and a
        # server sending a byte just within each read timeout would hold it for hours.
        chunks: list[bytes] = []
        size = 0
        while chunk := response.raw.read1(_CHUNK, decode_content=True):
            size += len(chunk)
            if size > self.max_bytes:
                raise _RefreshError(f"{host} answered more than {self.max_bytes} bytes")
            if time.monotonic() > until:
                raise _TransportError(f"{host} took longer than {self.timeout:g} s to answer")
            chunks.append(chunk)
        return b"".join(chunks)

    def _session(self) -> requests.Session:
        # One session per thread (requests' sessions are not thread-safe); a forked
        # worker's threads are new, so it never shares its parent's connections.
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
        return session
