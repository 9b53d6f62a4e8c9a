"""Pull secrets and service accounts read directly: what a one-shot command authenticates with.

``trustgate review``, ``check`` and ``audit --cluster`` run once and must
decide with the secrets as they are now, not race a cache that has not been
filled yet. So each Secret or ServiceAccount a review names is read with one
GET, and remembered for the life of the command: the many images of one audit
then share one read per object, and every image is judged with the same
secrets.

Each read runs in its own thread so that a review waits only what its deadline
leaves, however the API server answers (a hang, a drip); a read a review gave
up on still ends within its own bounds (``timeout``, ``Bounds.event_bytes``),
and a later review waiting for the same object waits for that read rather than
starting another. A failed read is not remembered: the next review tries again.

Unlike the watched store, a Secret of another type is answered (its names and
type only), so that ``check`` can say the type is wrong rather than missing.
Satisfies ``webhook.credentials.pullsecrets.SecretStore`` by shape.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Final

from webhook.core.deadline import Deadline
from webhook.core.errors import KubeError, UpstreamError
from webhook.kube.apistream import ApiCalls, ApiReader
from webhook.kube.credentials import Credentials
from webhook.kube.pullobjects import Bounds, dropped, trim_account, trim_secret, valid_name

__all__ = ["OneShotSecretStore"]

#: Objects remembered; past this, reads are made but not kept (an audit of a huge cluster).
DEFAULT_MAX_OBJECTS: Final = 4096
_Answer = dict[str, Any] | None


class OneShotSecretStore:
    """Reads Secrets and ServiceAccounts with one GET each, remembered for its life.

    ``namespaces`` limits what may be read (None: any); ``timeout`` bounds
    each read's connect and reads. Thread-safe; ``close()`` when done.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        namespaces: tuple[str, ...] | None = None,
        bounds: Bounds | None = None,
        timeout: float = 10.0,
        max_objects: int = DEFAULT_MAX_OBJECTS,
    ) -> None:
        self.namespaces = None if namespaces is None else frozenset(namespaces)
        self.bounds = bounds or Bounds()
        self.timeout = timeout
        self.max_objects = max_objects
        self.calls = ApiCalls()
        self._reader = ApiReader(credentials, timeout=timeout, connections=16, calls=self.calls)
        self._reads: dict[tuple[str, str, str], Future[_Answer]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the connections (reads still running end with an error)."""
        self._reader.close()

    def secret(self, namespace: str, name: str, deadline: Deadline) -> Mapping[str, Any] | None:
        """The Secret ``namespace/name`` as it is now (its content only for a pull secret type).

        Raises:
            UpstreamError: the read failed (unreachable, refused by RBAC) or did not
                end within ``deadline``.
        """
        return self._answer("secrets", namespace, name, deadline)

    def service_account(
        self, namespace: str, name: str, deadline: Deadline
    ) -> Mapping[str, Any] | None:
        """The ServiceAccount ``namespace/name`` as it is now, or None; as ``secret``."""
        return self._answer("serviceaccounts", namespace, name, deadline)

    def _answer(
        self, plural: str, namespace: str, name: str, deadline: Deadline
    ) -> Mapping[str, Any] | None:
        if self.namespaces is not None and namespace not in self.namespaces:
            return None
        if not valid_name(namespace, name):
            return None  # no object has such a name; and it must not reach a URL path
        key = (plural, namespace, name)
        with self._lock:
            read = self._reads.get(key)
            if read is None or (read.done() and read.exception() is not None):
                read = Future()
                if len(self._reads) < self.max_objects or key in self._reads:
                    self._reads[key] = read
                threading.Thread(
                    target=self._read,
                    args=(key, read),
                    daemon=True,
                    name=f"read {plural} {namespace}/{name}",
                ).start()
        try:
            return read.result(timeout=deadline.remaining())
        except FutureTimeout:
            raise UpstreamError(
                f"reading {plural} {namespace}/{name}: the API server at "
                f"{self._reader.credentials.server} did not answer within the review's "
                f"deadline ({deadline.seconds:g}s)"
            ) from None
        except KubeError as exc:
            raise UpstreamError(exc.message) from None

    def _read(self, key: tuple[str, str, str], read: Future[_Answer]) -> None:
        plural, namespace, name = key
        try:
            found = self._reader.get(
                f"/api/v1/namespaces/{namespace}/{plural}/{name}",
                what=f"reading {plural} {namespace}/{name}",
                verb="get",
                seconds=self.timeout,
                max_bytes=self.bounds.event_bytes,
            )
        except KubeError as exc:
            read.set_exception(exc)
            return
        except Exception as exc:  # a bug: the waiting review fails, not hangs
            read.set_exception(
                KubeError(f"reading {plural} {namespace}/{name}: {type(exc).__name__}")
            )
            return
        read.set_result(None if found is None else self._kept(plural, found))

    def _kept(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        if plural == "serviceaccounts":
            return trim_account(obj, self.bounds)[0]
        trimmed = trim_secret(obj, self.bounds, any_type=True)
        if isinstance(trimmed, str):
            return dropped(obj, trimmed)
        assert trimmed is not None  # any_type keeps every Secret
        return trimmed[0]
