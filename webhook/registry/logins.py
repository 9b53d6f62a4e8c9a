"""Which logins a registry call tries, in what order, and which one each registry accepted.

The order is the one docs/configuration.md promises: the configuration's
``registries.<host>`` login, then the review's pull secrets
(``deadline.scope``), then each login source that serves the host (cloud
identities, kubelet plug-ins), then anonymous. A login the registry accepted
is tried first next time, so a wrong secret listed before the right one costs
one refusal per registry, repository and namespace, not one per review.

Separate from ``call`` because it is the part that decides whose secrets a
call may carry: what one review's pull secrets got is remembered under that
review's partition only (``webhook.core.scope``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Final

from cachetools import TLRUCache

from webhook.core.deadline import Deadline
from webhook.core.errors import UpstreamError
from webhook.core.reference import ImageRef
from webhook.core.scope import Login
from webhook.core.sources import LoginSource
from webhook.registry.auth import pull_scope

#: How long the login a registry accepted is tried first; after that the order starts over.
ACCEPTED_SECONDS: Final = 600.0
_ACCEPTED_SIZE: Final = 4096
#: The key ``accepted`` remembers for anonymous access.
_ANONYMOUS: Final = ""


def source_of(login: Login | None) -> str:
    """Where ``login`` came from, for people: ``anonymous`` for None."""
    return "anonymous" if login is None else login.source


def kind_of(login: Login | None) -> str:
    """The source kind of ``login`` (``core.scope.SOURCE_KINDS``), for metrics."""
    return "anonymous" if login is None else login.kind


def partition_of(deadline: Deadline) -> str | None:
    """The cache partition of the review ``deadline`` belongs to (None: trustgate's own)."""
    return None if deadline.scope is None else deadline.scope.key


def token_key_of(login: Login | None, deadline: Deadline) -> str:
    """What the tokens fetched with ``login`` are cached by.

    A pull secret's tokens are kept per namespace (the scope's partition) as
    well as per login: one namespace's tokens never serve another, even one
    that holds a secret with the same content.
    """
    if login is None:
        return _ANONYMOUS
    if login.kind == "pullSecret":
        return f"{partition_of(deadline)}/{login.key}"
    return login.key


class Logins:
    """The ordered logins of calls, for one registry client; thread-safe.

    ``event(name, host)`` hears ``auth_failed:<kind>`` when a source cannot
    give a login (the metrics count authentication failures by source).
    """

    def __init__(
        self,
        sources: Sequence[LoginSource] = (),
        event: Callable[[str, str], None] | None = None,
    ) -> None:
        self._sources = tuple(sources)
        self._event = event
        self._accepted: TLRUCache[tuple[str, str, str | None], str] = TLRUCache(
            _ACCEPTED_SIZE, ttu=lambda _k, _v, now: now + ACCEPTED_SECONDS, timer=time.monotonic
        )
        self._lock = threading.Lock()

    def candidates(
        self,
        host: str,
        image: ImageRef,
        configured: Login | None,
        deadline: Deadline,
        tried: list[str],
    ) -> Iterator[Login | None]:
        """The logins to try for ``image`` at ``host``, in order; None (anonymous) last.

        ``configured`` is the configuration's login for the host. A source
        that cannot give logins is noted in ``tried`` and skipped. The login
        accepted last time comes first (when it is still offered).
        """
        with self._lock:
            remembered = self._accepted.get(_memo(host, image, deadline))
        # ``first``: the key already tried, skipped where it comes again. A login
        # remembered from a source is not fetched out of turn: it keeps its place.
        first: str | None = None
        if remembered == _ANONYMOUS:
            first = remembered
            yield None
        elif remembered is not None:
            login = self._cheap(image, configured, deadline, remembered)
            if login is not None:
                first = remembered
                yield login
        if configured is not None and configured.key != first:
            yield configured
        scope = deadline.scope
        if scope is not None:
            yield from (login for login in scope.lookup(image) if login.key != first)
        for source in self._sources:
            if not source.matches(host):
                continue
            try:
                logins = source.logins(image, deadline)
            except UpstreamError as exc:
                tried.append(f"{source.name} (no login: {exc.message})")
                if self._event is not None:
                    self._event(f"auth_failed:{source.kind}", host)
                continue
            yield from (login for login in logins if login.key != first)
        if first != _ANONYMOUS:
            yield None

    def accepted(self, host: str, image: ImageRef, deadline: Deadline, login: Login | None) -> None:
        """Record that ``host`` accepted ``login`` for ``image``, in ``deadline``'s review.

        ``deadline.logins`` then names its source for the decision log and ``check``.
        """
        deadline.logins[image.repository] = source_of(login)
        key = _ANONYMOUS if login is None else login.key
        memo = _memo(host, image, deadline)
        with self._lock:
            if self._accepted.get(memo) != key:
                self._accepted[memo] = key

    @staticmethod
    def _cheap(
        image: ImageRef, configured: Login | None, deadline: Deadline, key: str
    ) -> Login | None:
        """The login with ``key`` among those listed without asking a source, or None."""
        if configured is not None and configured.key == key:
            return configured
        if deadline.scope is not None:
            for login in deadline.scope.lookup(image):
                if login.key == key:
                    return login
        return None


def _memo(host: str, image: ImageRef, deadline: Deadline) -> tuple[str, str, str | None]:
    return (host, pull_scope(image.path), partition_of(deadline))
