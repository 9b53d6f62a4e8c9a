"""One HTTP request over urllib3, sent as given: no redirects, retries, cookies or netrc.

The registry client and the Pyxis client decide every redirect, retry and
credential themselves, so what they need underneath is a single request and
its streaming answer. requests would add a session's merging, hooks, a cookie
jar and a second response object to every call: about 0.3 ms of CPU per call,
a fifth of a cold review's (bench/signatures.py). Here a call costs what
urllib3 costs.

What the environment gives a host (its proxy, less ``NO_PROXY``, and a CA
bundle from ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE``) is read once per host:
a server's environment does not change while it runs. Connections come from
guard's pools, whose sockets are shut down at the deadline of the review using
them. Without a CA of its own, a host is checked against certifi's bundle, as
requests does.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import certifi
import requests.utils
import urllib3
from urllib3.util import make_headers, parse_url

from webhook.registry.guard import POOL_CLASSES

#: An answer's headers: a case-insensitive mapping.
Headers = urllib3.HTTPHeaderDict


@dataclass(frozen=True, slots=True)
class Answer:
    """A response whose body is left unread in ``raw`` (``read1`` it, then it is released)."""

    url: str
    status: int
    reason: str
    headers: Headers
    raw: urllib3.BaseHTTPResponse

    @property
    def ok(self) -> bool:
        """Neither a client nor a server error (status below 400)."""
        return self.status < 400

    def close(self) -> None:
        """Give up the body: the connection is closed, not reused."""
        self.raw.close()
        self.raw.release_conn()

    def drain(self) -> None:
        """Read and drop what is left of the body, so the connection is reused."""
        self.raw.drain_conn()
        self.raw.release_conn()

    def next_link(self) -> str | None:
        """The URL of the ``Link: <...>; rel="next"`` header (RFC 8288), if any."""
        header = self.headers.get("Link")
        if not header:
            return None
        for link in requests.utils.parse_header_links(header):
            if "next" in link.get("rel", "").split():
                url = link.get("url")
                return url or None
        return None


def timed_out_waiting(exc: BaseException) -> bool:
    """A wait for bytes ran out; urllib3 files a refused connection under timeouts too."""
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return False
    return isinstance(exc, TimeoutError | urllib3.exceptions.TimeoutError)


def cut_by_deadline(exc: BaseException, remaining: float, waited: float, own: float) -> bool:
    """Whether the review's deadline, not the host, ended a request that raised ``exc``.

    It did when the review has no time left (``remaining``), or when a wait for
    bytes ran out under a timeout (``waited``) that the deadline had cut below
    the host's own (``own``). The caller raises a CallCut then, which the
    host's breaker does not count, and a HostFailure otherwise: the host failed
    while the review still had time.
    """
    return remaining <= 0 or (timed_out_waiting(exc) and waited < own)


@functools.lru_cache(maxsize=1)
def user_agent() -> str:
    """``trustgate/<version>``, sent with every outbound call."""
    try:
        return f"trustgate/{importlib.metadata.version('trustgate')}"
    except importlib.metadata.PackageNotFoundError:
        return "trustgate/dev"


@functools.lru_cache(maxsize=1024)
def environment(scheme: str, netloc: str) -> tuple[str | None, str | None]:
    """The proxy URL (``*_PROXY`` less ``NO_PROXY``) and CA bundle the environment gives a host."""
    proxies = requests.utils.get_environ_proxies(f"{scheme}://{netloc}/")
    proxy = proxies.get(scheme) or proxies.get("all")
    if proxy and "://" not in proxy:
        proxy = "http://" + proxy
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    return proxy or None, bundle


class Transport:
    """Thread-safe: one pool manager per (proxy, CA), each with ``per_host`` idle connections."""

    def __init__(self, per_host: int = 8) -> None:
        self._per_host = per_host
        self._lock = threading.Lock()
        self._managers: dict[tuple[str | None, str | None], urllib3.PoolManager] = {}
        self._pid = os.getpid()

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        *,
        timeout: float,
        ca: str | None = None,
    ) -> Answer:
        """Send one request; the answer's body is left to read.

        ``timeout`` bounds the connection and each wait for bytes; ``ca`` is a
        CA bundle for an HTTPS host (default: the environment's, or certifi's).
        Raises urllib3's exceptions as they are (``retries=False``):
        NewConnectionError, ConnectTimeoutError, ReadTimeoutError, SSLError,
        ProtocolError, ProxyError.
        """
        parts = urlsplit(url)
        proxy, bundle = environment(parts.scheme, parts.netloc.lower())
        ca = (ca or bundle or certifi.where()) if parts.scheme == "https" else None
        sent = {"User-Agent": user_agent(), **headers}
        response = self._manager(proxy, ca).urlopen(
            method,
            url,
            headers=sent,
            redirect=False,
            retries=False,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            preload_content=False,
            decode_content=False,
        )
        return Answer(url, response.status, response.reason or "", response.headers, response)

    def _manager(self, proxy: str | None, ca: str | None) -> urllib3.PoolManager:
        key = (proxy, ca)
        manager = self._managers.get(key)
        if manager is not None and self._pid == os.getpid():
            return manager
        with self._lock:
            if self._pid != os.getpid():
                # A forked child (gunicorn worker) never shares its parent's sockets.
                self._managers = {}
                self._pid = os.getpid()
            manager = self._managers.get(key)
            if manager is None:
                manager = self._new_manager(proxy, ca)
                self._managers[key] = manager
            return manager

    def _new_manager(self, proxy: str | None, ca: str | None) -> urllib3.PoolManager:
        tls: dict[str, Any] = {}
        if ca is not None:
            tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": ca}
        manager: urllib3.PoolManager
        if proxy is None:
            manager = urllib3.PoolManager(num_pools=64, maxsize=self._per_host, **tls)
        else:
            auth = parse_url(proxy).auth
            manager = urllib3.ProxyManager(
                proxy,
                num_pools=64,
                maxsize=self._per_host,
                proxy_headers=make_headers(proxy_basic_auth=auth) if auth else None,
                **tls,
            )
        manager.pool_classes_by_scheme = dict(POOL_CLASSES)
        return manager
