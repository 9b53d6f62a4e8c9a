"""Reads of the API server bounded in time and bytes: one answer whole, or a watch line by line.

lightkube's ``Client`` reads an answer whole however large it is, and watches
with no read timeout at all: right for ``audit``, which a person runs and can
stop, but not for a cache that a webhook keeps for days, where the API server
(or whatever sits in front of it) may hang, drip, or send a Secret of a
megabyte. So these reads go through lightkube's own connection (its kubeconfig
handling, TLS and authentication, exec plug-ins included), but read the answer
themselves: a byte cap on every answer and every watch line, a read timeout on
every call, a wall-clock bound on every answer, and no compression (a small
compressed answer could expand past any cap before it is looked at).

Every call is counted by kind (``ApiCalls``), so that a benchmark can say how
many calls the API server sees per thousand reviews.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, Final

import httpx2
from lightkube import ConfigError
from lightkube.config.client_adapter import ConnectionParams

from webhook.core.errors import KubeError
from webhook.core.failures import describe
from webhook.kube.credentials import Credentials

__all__ = ["CALL_KINDS", "AnswerTooLarge", "ApiCalls", "ApiReader", "ApiRefusal", "status_message"]

#: The kinds of call counted: a page of a list, a watch opened, one object read.
CALL_KINDS: Final = ("list", "watch", "get")
#: What a refusal's body may take: a Status object is a few hundred bytes.
_STATUS_BYTES: Final = 64 * 1024
_SHOWN: Final = 300


class ApiRefusal(KubeError):
    """The API server answered a call with an error status (``code``): 403, 410, 500..."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class AnswerTooLarge(KubeError):
    """An answer was over the bytes allowed for it (a smaller page may fit)."""


class ApiCalls:
    """How many calls were made to the API server, by kind (``CALL_KINDS``); thread-safe."""

    def __init__(self) -> None:
        self._counts = dict.fromkeys(CALL_KINDS, 0)
        self._lock = threading.Lock()

    def count(self, kind: str) -> None:
        """Count one call of ``kind``."""
        with self._lock:
            self._counts[kind] += 1

    def snapshot(self) -> dict[str, int]:
        """The counts so far, by kind."""
        with self._lock:
            return dict(self._counts)

    @property
    def total(self) -> int:
        """Every call so far."""
        with self._lock:
            return sum(self._counts.values())


class ApiReader:
    """Bounded reads of one API server; thread-safe, one connection per call in flight.

    ``timeout`` bounds connecting and each read of every call (seconds);
    ``connections`` how many may be open at once (a watch holds one).
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        timeout: float = 10.0,
        connections: int = 8,
        calls: ApiCalls | None = None,
    ) -> None:
        self.credentials = credentials
        self.timeout = timeout
        self.calls = calls if calls is not None else ApiCalls()
        try:
            params = ConnectionParams(timeout=httpx2.Timeout(timeout)).httpx_params(
                credentials.config
            )
            limits = httpx2.Limits(max_connections=connections, max_keepalive_connections=4)
            self._client = httpx2.Client(**params, limits=limits)
        except (ConfigError, OSError, ValueError) as exc:
            raise KubeError(f"{credentials.source}: {exc}") from exc
        self._lock = threading.Lock()
        self._busy = 0
        self._closed = False

    def close(self) -> None:
        """Close the connections: at once, or as the last call in flight ends.

        A connection another thread is reading is never closed under it: its
        descriptor would be free for the next connection opened while that
        thread still reads, which would then read (and break) that connection's
        bytes. Calls made after ``close`` fail with a KubeError.
        """
        with self._lock:
            self._closed = True
            if self._busy:
                return
        self._client.close()

    @contextlib.contextmanager
    def _call(self, what: str) -> Iterator[None]:
        """One call in flight: ``close`` waits for its end to close the connections."""
        with self._lock:
            if self._closed:
                raise KubeError(f"{what}: the connection to the API server is closed")
            self._busy += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy -= 1
                last = self._closed and not self._busy
            if last:
                self._client.close()

    def get(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        what: str,
        verb: str,
        seconds: float,
        max_bytes: int,
    ) -> dict[str, Any] | None:
        """The JSON object at ``path``, or None when the API server answers 404.

        ``what`` names the call in messages (``listing secrets in team-a``) and
        ``verb`` the RBAC verb it needs (``list``, ``get``); it is counted as a
        ``list`` or a ``get``. The call ends within about ``seconds`` and reads
        at most ``max_bytes``.

        Raises:
            ApiRefusal: the API server refused (the message says what to grant
                on a 403).
            KubeError: unreachable, too slow, too large, or not JSON.
        """
        self.calls.count("list" if verb == "list" else "get")
        end = time.monotonic() + seconds
        with self._stream(path, params, what, verb, seconds, seconds) as response:
            if response.status_code == 404 and verb == "get":
                return None
            body = _read(response, max_bytes, end, what)
        return _object(body, what)

    def merge_patch(
        self,
        path: str,
        patch: Mapping[str, Any],
        *,
        what: str,
        seconds: float,
        max_bytes: int,
    ) -> dict[str, Any]:
        """Change the object at ``path`` by a JSON merge patch, as field manager
        ``trustgate``; the object as stored.

        A patch that carries ``metadata.resourceVersion`` applies only to that
        version (an ``ApiRefusal`` of code 409 otherwise); a missing object is an
        ``ApiRefusal`` of code 404 (a merge patch never creates). Bounded as ``get``;
        not counted (``ApiCalls`` counts reads).

        Raises:
            ApiRefusal, KubeError: as ``get``.
        """
        end = time.monotonic() + seconds
        content = json.dumps(patch).encode()
        manager = {"fieldManager": "trustgate"}
        with self._stream(path, manager, what, "patch", seconds, seconds, content) as response:
            body = _read(response, max_bytes, end, what)
        return _object(body, what)

    @contextlib.contextmanager
    def watch(
        self,
        path: str,
        params: Mapping[str, str],
        *,
        what: str,
        seconds: float,
        idle: float,
        max_line: int,
    ) -> Iterator[Iterator[dict[str, Any]]]:
        """A watch's events, one JSON object per line, until the API server ends it.

        The watch is dropped (a KubeError) after ``seconds`` in all, after
        ``idle`` seconds without a byte, or at a line over ``max_line`` bytes.
        ``params`` must ask for ``watch``.

        Raises:
            ApiRefusal, KubeError: as ``get``, on opening or while reading.
        """
        self.calls.count("watch")
        end = time.monotonic() + seconds
        with self._stream(path, params, what, "watch", self.timeout, idle) as response:
            yield _lines(response, max_line, end, what, self.credentials.server)

    @contextlib.contextmanager
    def _stream(
        self,
        path: str,
        params: Mapping[str, str] | None,
        what: str,
        verb: str,
        connect: float,
        read: float,
        content: bytes | None = None,
    ) -> Iterator[httpx2.Response]:
        """A response whose status is a success (or a 404 for a ``get``), still unread.

        With ``content``, a PATCH that sends it as a JSON merge patch; else a GET.
        """
        timeout = httpx2.Timeout(
            connect=min(connect, self.timeout), read=read, write=connect, pool=connect
        )
        headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
        if content is not None:
            headers["Content-Type"] = "application/merge-patch+json"
        with (
            self._call(what),
            self._send(path, params, what, verb, timeout, headers, content) as response,
        ):
            yield response

    @contextlib.contextmanager
    def _send(
        self,
        path: str,
        params: Mapping[str, str] | None,
        what: str,
        verb: str,
        timeout: httpx2.Timeout,
        headers: Mapping[str, str],
        content: bytes | None = None,
    ) -> Iterator[httpx2.Response]:
        """The response to one GET (or PATCH of ``content``), closed when done with; a
        refusal raised."""
        try:
            request = self._client.build_request(
                "GET" if content is None else "PATCH",
                path,
                params=dict(params or {}),
                headers=headers,
                content=content,
                timeout=timeout,
            )
            response = self._client.send(request, stream=True)
        except httpx2.HTTPError as exc:
            raise KubeError(
                f"{what}: cannot reach {self.credentials.server}: {describe(exc)}"
            ) from None
        except ConfigError as exc:
            # An exec plug-in that fails, or a token file that is gone.
            raise KubeError(f"{what}: {self.credentials.source}: {exc}") from None
        try:
            if response.status_code >= 400 and not (response.status_code == 404 and verb == "get"):
                try:
                    end = time.monotonic() + (timeout.connect or self.timeout)
                    body = _read(response, _STATUS_BYTES, end, what)
                except KubeError:
                    body = b""
                raise ApiRefusal(
                    _refusal(response.status_code, body, what, verb), response.status_code
                )
            yield response
        finally:
            response.close()


def _read(response: httpx2.Response, max_bytes: int, end: float, what: str) -> bytes:
    """The body of ``response``: at most ``max_bytes``, read by ``end`` (monotonic)."""
    body = bytearray()
    try:
        for chunk in response.iter_raw():
            body += chunk
            if len(body) > max_bytes:
                raise AnswerTooLarge(f"{what}: the answer is over {max_bytes:,} bytes; not read")
            if time.monotonic() > end:
                raise KubeError(f"{what}: the answer took too long to arrive; dropped")
    except httpx2.HTTPError as exc:
        raise KubeError(f"{what}: the answer was cut off: {describe(exc)}") from None
    return bytes(body)


def _object(body: bytes, what: str) -> dict[str, Any]:
    try:
        found = json.loads(body)
    except ValueError as exc:
        raise KubeError(f"{what}: the answer is not JSON ({exc})") from None
    if not isinstance(found, dict):
        raise KubeError(f"{what}: the answer is not a JSON object")
    return found


def _lines(
    response: httpx2.Response, max_line: int, end: float, what: str, server: str
) -> Iterator[dict[str, Any]]:
    """The JSON objects of a watch, one per line, each at most ``max_line`` bytes."""
    pending = bytearray()
    try:
        for chunk in response.iter_raw():
            pending += chunk
            while (cut := pending.find(b"\n")) >= 0:
                if cut > max_line:
                    break
                line = bytes(pending[:cut])
                del pending[: cut + 1]
                if line.strip():
                    yield _event(line, what)
            if len(pending) > max_line:
                raise KubeError(f"{what}: an event is over {max_line:,} bytes; watch dropped")
            if time.monotonic() > end:
                raise KubeError(f"{what}: the watch outlived its timeout; dropped")
    except httpx2.HTTPError as exc:
        raise KubeError(f"{what}: the watch on {server} broke: {describe(exc)}") from None
    if pending.strip():
        yield _event(bytes(pending), what)


def _event(line: bytes, what: str) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except ValueError:
        raise KubeError(f"{what}: a watch event is not JSON") from None
    if not isinstance(event, dict):
        raise KubeError(f"{what}: a watch event is not a JSON object")
    return event


def status_message(status: Any) -> str:
    """The ``message`` of a Status object, cut for a log line; empty when there is none."""
    message = status.get("message") if isinstance(status, dict) else None
    if not isinstance(message, str):
        return ""
    text = "".join(c if c.isprintable() else " " for c in message)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def _refusal(code: int, body: bytes, what: str, verb: str) -> str:
    """What a refusal means and what to do, with the API server's own words."""
    try:
        message = status_message(json.loads(body))
    except ValueError:
        message = ""
    said = f": {message}" if message else ""
    if code == 401:
        return f"{what}: not authenticated; check the token or certificate of the kubeconfig{said}"
    if code == 403:
        return f"{what}: forbidden; trustgate's identity needs '{verb}' here{said}"
    if code == 410:
        return f"{what}: the resource version is too old (410 Gone){said}"
    return f"{what}: HTTP {code}{said}"
