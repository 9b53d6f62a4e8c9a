"""One HTTPS form POST that carries a credential, bounded in time and bytes, never redirected.

A token exchange (ACR's ``/oauth2/exchange``) sends a bearer credential in
its body, so the call must reach that host and no other: no redirect is
followed (a 3xx is an answer, and an error to the caller), TLS is always
verified, and nothing is retried behind the caller's back.

It must also end when it should, whatever the server does. urllib3's
timeouts bound each wait for bytes, not the call: a server that drips its
TLS handshake or its answer one byte at a time restarts them with every
byte. So every socket the call opens is shut down at the call's deadline by
a timer, which ends any blocked read at once, and the answer is read in
chunks up to a size cap.

The environment's proxy (``HTTPS_PROXY`` less ``NO_PROXY``) and CA bundle
(``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE``, else certifi's) apply, as they
do to the registry client's calls. Exchanges are rare (one per registry every
few hours), so each call uses a fresh connection and leaves nothing pooled.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import certifi
import requests.utils
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util import make_headers, parse_url

from webhook.core.errors import UpstreamError
from webhook.core.failures import describe

_CHUNK: Final = 16 * 1024
_local = threading.local()


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole answer: status, its media type and body (at most the cap), any Location."""

    status: int
    content_type: str
    body: bytes
    location: str | None


def post_form(url: str, fields: Mapping[str, str], *, seconds: float, max_bytes: int) -> Reply:
    """POST ``fields`` form-encoded to the HTTPS ``url``, within ``seconds``, reading ``max_bytes``.

    A redirect is returned as it came (its ``location`` says where), never followed.

    Raises:
        UpstreamError: not an HTTPS URL, the host cannot be reached, the call
            ran past ``seconds``, or the answer is larger than ``max_bytes``.
            The message names the host and says what to check, never a field's value.
    """
    parts = urlsplit(url)
    host = parts.netloc
    if parts.scheme != "https":
        raise UpstreamError(f"{host}: a credential is sent over HTTPS only")
    expires_at = time.monotonic() + seconds
    cutter = _Cutter(seconds)
    manager = _manager(url)
    try:
        with _cutting(cutter):
            response = manager.urlopen(
                "POST",
                url,
                body=urlencode(dict(fields)),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Accept": "application/json",
                    "Accept-Encoding": "identity",
                },
                redirect=False,
                retries=False,
                timeout=urllib3.Timeout(connect=seconds, read=seconds),
                preload_content=False,
                decode_content=False,
            )
            try:
                body = _read(response, max_bytes, host)
            finally:
                response.release_conn()
        if cutter.cut_off:  # a cut can read as a short answer; whatever came is not one
            raise UpstreamError(f"{host}: did not answer within {seconds:g}s")
    except UpstreamError:
        raise
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        if cutter.cut_off or time.monotonic() >= expires_at:
            raise UpstreamError(f"{host}: did not answer within {seconds:g}s") from None
        raise UpstreamError(f"{host}: {describe(exc)}") from None
    finally:
        cutter.close()
        manager.clear()
    return Reply(
        response.status,
        response.headers.get("Content-Type", ""),
        body,
        response.headers.get("Location"),
    )


def _read(response: urllib3.BaseHTTPResponse, max_bytes: int, host: str) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise UpstreamError(f"{host}: the answer is larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = response.read(_CHUNK, decode_content=False)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise UpstreamError(f"{host}: the answer is larger than {max_bytes} bytes")
        chunks.append(chunk)


def _manager(url: str) -> urllib3.PoolManager:
    """A one-call pool manager: verified TLS, the environment's proxy and CA bundle."""
    proxies = requests.utils.get_environ_proxies(url)
    proxy = proxies.get("https") or proxies.get("all")
    if proxy and "://" not in proxy:
        proxy = "http://" + proxy
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    tls: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED", "ca_certs": bundle or certifi.where()}
    manager: urllib3.PoolManager
    if proxy:
        auth = parse_url(proxy).auth
        headers = make_headers(proxy_basic_auth=auth) if auth else None
        manager = urllib3.ProxyManager(proxy, num_pools=1, proxy_headers=headers, **tls)
    else:
        manager = urllib3.PoolManager(num_pools=1, **tls)
    manager.pool_classes_by_scheme = {"http": _Pool, "https": _HTTPSPool}
    return manager


class _Cutter:
    """Shuts down, at its deadline, every socket registered with it, ending blocked reads.

    It keeps a duplicate of each socket: ``shutdown`` acts on the connection,
    not the descriptor, so shutting down the duplicate also ends a TLS
    handshake running on the original, which ``ssl`` has already taken over.
    """

    def __init__(self, seconds: float) -> None:
        self.cut_off = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, seconds), self._cut)
        self._timer.daemon = True
        self._timer.start()

    def add(self, sock: socket.socket) -> None:
        duplicate = sock.dup()
        with self._lock:
            self._sockets.append(duplicate)
            late = self.cut_off
        if late:
            _shutdown(duplicate)

    def _cut(self) -> None:
        with self._lock:
            self.cut_off = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def _cutting(cutter: _Cutter) -> Iterator[None]:
    _local.cutter = cutter
    try:
        yield
    finally:
        _local.cutter = None


class _Registering:
    """Connection mixin: the new socket (to the host or its proxy) joins this thread's cutter."""

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        cutter: _Cutter | None = getattr(_local, "cutter", None)
        if cutter is not None:
            cutter.add(sock)
        return sock


class _Connection(_Registering, HTTPConnection):
    pass


class _HTTPSConnection(_Registering, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection
