"""Pull secrets and service accounts as a watched cache: what ``serve`` authenticates with.

A review must not call the API server per image, nor wait on it beyond its
deadline. So the webhook lists and watches, in the background, the Secrets of
the two pull secret types and the ServiceAccounts, and a review reads them from
memory: a rotated or deleted Secret takes effect when its watch event arrives.

- Cluster-wide, or one list and watch per listed namespace, so that a Role in
  each namespace is enough; a store limited to namespaces never lists across
  the cluster.
- Secrets are filtered by the API server (a field selector on ``type``, one
  watch per pull secret type), so opaque and TLS secrets never reach trustgate.
- What is kept is bounded (``Bounds``); a Secret too large to keep is kept as a
  marker that says so, and logged.
- Started in the process that uses it, on first use or by ``start()``: gunicorn
  forks its workers, and a thread started before the fork does not exist after
  it; a store used in a new process starts afresh there.
- Before the first list is in, a lookup waits at most what its deadline leaves,
  then fails with UpstreamError; at once if that list has already failed (the
  retries go on in the background). ``synced`` and ``status()`` are for
  readiness. Once read, the lists serve as they are while a watch reconnects.

Satisfies ``webhook.credentials.pullsecrets.SecretStore`` by shape.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any, Final

from webhook.core.deadline import Deadline
from webhook.core.errors import UpstreamError
from webhook.kube.apistream import ApiCalls, ApiReader
from webhook.kube.credentials import Credentials
from webhook.kube.informer import Feed, Informer, Trim
from webhook.kube.pullobjects import PULL_SECRET_TYPES, Bounds, trim_account, trim_secret

__all__ = ["WatchedSecretStore"]

_SECRETS: Final = "secrets"
_ACCOUNTS: Final = "serviceaccounts"
#: How long ``close()`` waits in all for the watch threads to end (one blocked on a
#: hanging API server ends at its read timeout; they are daemon threads).
_JOIN_SECONDS: Final = 1.0


class _Running:
    """The threads of one process: its reader, informers by (plural, scope), stop flag."""

    def __init__(self, reader: ApiReader, informers: list[Informer]) -> None:
        self.reader = reader
        self.informers = informers
        self.stop = threading.Event()
        #: Every informer has read its first list.
        self.ready = False
        self.threads: list[threading.Thread] = []
        self.by_scope: dict[tuple[str, str | None], list[Informer]] = {}
        for informer in informers:
            key = (informer.feed.plural, informer.feed.namespace)
            self.by_scope.setdefault(key, []).append(informer)


class WatchedSecretStore:
    """Secrets of pull secret types and ServiceAccounts, listed and watched in the background.

    ``namespaces``: watch only these, one list and watch each (None: the whole
    cluster, with one). ``timeout`` bounds connecting and each read of a list
    page; ``watch_seconds`` is how long a watch asks to run before it is opened
    again. Thread-safe.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        namespaces: tuple[str, ...] | None = None,
        bounds: Bounds | None = None,
        timeout: float = 10.0,
        watch_seconds: float = 300.0,
    ) -> None:
        self.credentials = credentials
        self.namespaces = None if namespaces is None else tuple(dict.fromkeys(namespaces))
        self.bounds = bounds or Bounds()
        self.timeout = timeout
        self.watch_seconds = watch_seconds
        #: API-server calls made by this store in every process it ran in so far.
        self.calls = ApiCalls()
        self._running: _Running | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def feeds(self) -> list[tuple[Feed, Trim]]:
        """What is listed and watched: per scope, one feed per secret type, one of accounts."""
        scopes: tuple[str | None, ...] = (None,) if self.namespaces is None else self.namespaces
        feeds: list[tuple[Feed, Trim]] = []
        for scope in scopes:
            for secret_type in PULL_SECRET_TYPES:
                feeds.append((Feed(_SECRETS, scope, f"type={secret_type}"), trim_secret))
            feeds.append((Feed(_ACCOUNTS, scope), trim_account))
        return feeds

    def start(self) -> None:
        """Start listing and watching in this process, unless it already does.

        Raises:
            KubeError: the credentials cannot be turned into a connection.
        """
        pid = os.getpid()
        if self._pid == pid:
            return
        with self._lock:
            if self._pid == pid:
                return
            reader = ApiReader(
                self.credentials,
                timeout=self.timeout,
                connections=len(self.feeds()) + 4,
                calls=self.calls,
            )
            informers = [
                Informer(reader, feed, trim, self.bounds, watch_seconds=self.watch_seconds)
                for feed, trim in self.feeds()
            ]
            running = _Running(reader, informers)
            for informer in informers:
                thread = threading.Thread(
                    target=informer.run,
                    args=(running.stop,),
                    name=f"watch {informer.feed}",
                    daemon=True,
                )
                thread.start()
                running.threads.append(thread)
            self._running, self._pid = running, pid

    def close(self) -> None:
        """Stop watching (in this process) and close the connections."""
        with self._lock:
            running, self._running, self._pid = self._running, None, None
        if running is None:
            return
        running.stop.set()
        running.reader.close()
        end = time.monotonic() + _JOIN_SECONDS
        for thread in running.threads:
            thread.join(max(0.0, end - time.monotonic()))

    @property
    def synced(self) -> bool:
        """Whether every list has been read once in this process (readiness)."""
        running = self._current()
        return running is not None and all(i.synced.is_set() for i in running.informers)

    @property
    def generation(self) -> int | None:
        """A number that changes whenever anything kept changes; None before the first lists.

        ``PullSecrets`` keeps a built scope while it stays the same, so a warm
        review reads no object at all.
        """
        running = self._current()
        if running is None:
            return None
        if not running.ready:  # once every list is in, it stays so
            if not all(i.synced.is_set() for i in running.informers):
                return None
            running.ready = True
        return sum(informer.generation for informer in running.informers)

    def status(self) -> list[str]:
        """One line per list and watch: read or not, what is kept, the last failure."""
        running = self._current()
        if running is None:
            return ["pull secrets: not started in this process"]
        return [informer.describe() for informer in running.informers]

    def secret(self, namespace: str, name: str, deadline: Deadline) -> Mapping[str, Any] | None:
        """The Secret ``namespace/name`` if it is of a pull secret type, else None.

        Read from memory; waits only, within ``deadline``, for the first list.

        Raises:
            UpstreamError: the first list is not in before the deadline.
            KubeError: the store could not be started (see ``start``).
        """
        return self._lookup(_SECRETS, namespace, name, deadline)

    def service_account(
        self, namespace: str, name: str, deadline: Deadline
    ) -> Mapping[str, Any] | None:
        """The ServiceAccount ``namespace/name``, or None; as ``secret``."""
        return self._lookup(_ACCOUNTS, namespace, name, deadline)

    def _current(self) -> _Running | None:
        return self._running if self._pid == os.getpid() else None

    def _lookup(
        self, plural: str, namespace: str, name: str, deadline: Deadline
    ) -> Mapping[str, Any] | None:
        if self.namespaces is not None and namespace not in self.namespaces:
            return None
        self.start()
        running = self._current()
        assert running is not None  # start() just made it
        informers = running.by_scope.get((plural, None if self.namespaces is None else namespace))
        for informer in informers or ():
            # Waits for the first list, not for its retries: once it failed (RBAC,
            # unreachable) every review would wait out its deadline.
            informer.tried.wait(deadline.remaining())
            if not informer.synced.is_set():
                raise UpstreamError(
                    f"pull secrets are not yet read from the API server ({informer.describe()}); "
                    "trustgate reports ready once they are: check that it reaches the API "
                    "server and may list and watch secrets and serviceaccounts there"
                )
        found = [informer.get(namespace, name) for informer in informers or ()]
        for obj in found:
            if obj is not None:
                return obj
        for informer in informers or ():
            marker = informer.table.overflow(namespace, name)
            if marker is not None:
                return marker
        return None
