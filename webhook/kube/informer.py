"""One list-then-watch of one kind of object, in one namespace or all, kept in a bounded table.

The loop of client-go's reflector, reduced to what a cache of pull secrets
needs: list in pages (a consistent snapshot and its ``resourceVersion``), then
watch from that version with bookmarks, applying each event as it arrives; a
watch the API server ends is opened again from the last version seen; a
version it no longer has (410 Gone, as a status or an ERROR event) means a
fresh list, which replaces the table at once, so whatever was deleted in
between is gone too. Any other failure (unreachable, refused by RBAC, too
slow, too large) is retried with a growing, jittered delay, and logged when it
changes, not at every try.

Lookups read the table without a lock and never wait on the API server: the
table is replaced whole by a list, changed one key at a time by a watch, both
atomic in CPython. ``synced`` is set once the first list is in; until then a
store cannot answer.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from webhook.core.errors import KubeError
from webhook.core.observability import get_logger
from webhook.kube.apistream import AnswerTooLarge, ApiReader, ApiRefusal, status_message
from webhook.kube.pullobjects import OVERHEAD, Bounds, Kept, dropped, key_of

__all__ = ["Feed", "Informer", "Table", "Trim"]

_log = get_logger("kube.pullsecrets")
#: Drops logged one by one per list; the rest are counted in one line.
_LOGGED_DROPS: Final = 5
_FIRST_DELAY: Final = 0.5
_LAST_DELAY: Final = 30.0

#: What a table keeps of an object (``pullobjects.trim_secret``, ``trim_account``).
Trim = Callable[[Mapping[str, Any], Bounds], "Kept | str | None"]


@dataclass(frozen=True, slots=True)
class Feed:
    """What one list and watch reads: core/v1 ``plural``, in ``namespace`` (None: all)."""

    plural: str
    namespace: str | None = None
    #: A field selector the API server filters by (``type=kubernetes.io/dockercfg``).
    field_selector: str | None = None

    @property
    def path(self) -> str:
        """The URL path that lists and watches it."""
        if self.namespace is None:
            return f"/api/v1/{self.plural}"
        return f"/api/v1/namespaces/{self.namespace}/{self.plural}"

    def __str__(self) -> str:
        where = "every namespace" if self.namespace is None else f"namespace {self.namespace}"
        which = f" ({self.field_selector})" if self.field_selector else ""
        return f"{self.plural}{which} in {where}"

    def params(self, **extra: str) -> dict[str, str]:
        """Query parameters: ``extra`` and the field selector."""
        if self.field_selector:
            extra["fieldSelector"] = self.field_selector
        return extra


class Expired(KubeError):
    """The API server no longer has the version a watch or a list page continues from."""


class Table:
    """The objects of one feed by (namespace, name), within ``Bounds``.

    Written by one thread (the informer's), read by any.
    """

    def __init__(self, bounds: Bounds, trim: Trim) -> None:
        self.bounds = bounds
        self.trim = trim
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self._sizes: dict[tuple[str, str], int] = {}
        self._per_namespace: collections.Counter[str] = collections.Counter()
        self._namespace_bytes: collections.Counter[str] = collections.Counter()
        self.bytes = 0
        #: Namespaces where an object was refused for lack of room.
        self.full: set[str] = set()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self.objects)

    def put(self, obj: Mapping[str, Any]) -> str | None:
        """Keep ``obj`` (or its ``dropped`` marker); returns why it was not kept whole."""
        key = key_of(obj)
        if key is None:
            return "it has no namespace and name"
        trimmed = self.trim(obj, self.bounds)
        if trimmed is None:
            self.delete(obj)
            return None
        reason = trimmed if isinstance(trimmed, str) else None
        kept, size = (dropped(obj, trimmed), OVERHEAD) if isinstance(trimmed, str) else trimmed
        namespace = key[0]
        old = self._sizes.get(key)
        crowded = old is None and (
            self._per_namespace[namespace] >= self.bounds.per_namespace
            or len(self.objects) >= self.bounds.objects
        )
        grown = size - (old or 0)
        if (
            crowded
            or self.bytes + grown > self.bounds.bytes
            or self._namespace_bytes[namespace] + grown > self.bounds.per_namespace_bytes
        ):
            self.delete(obj)  # an older version must not stay as if it were current
            self.full.add(namespace)
            self.dropped += 1
            return self._full_reason(namespace)
        self.objects[key] = kept
        self._sizes[key] = size
        self.bytes += grown
        self._namespace_bytes[namespace] += grown
        if old is None:
            self._per_namespace[namespace] += 1
        if reason is not None:
            self.dropped += 1
        return reason

    def delete(self, obj: Mapping[str, Any]) -> None:
        """Forget ``obj``."""
        key = key_of(obj)
        if key is None or key not in self.objects:
            return
        del self.objects[key]
        size = self._sizes.pop(key)
        self.bytes -= size
        self._namespace_bytes[key[0]] -= size
        self._per_namespace[key[0]] -= 1

    def overflow(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A marker for a name not found in a namespace where objects were refused."""
        if namespace not in self.full:
            return None
        metadata = {"metadata": {"namespace": namespace, "name": name}}
        return dropped(metadata, f"not kept: {self._full_reason(namespace)}")

    def _full_reason(self, namespace: str) -> str:
        bounds = self.bounds
        return (
            f"namespace {namespace} holds more than trustgate keeps ({bounds.per_namespace:,} "
            f"per namespace and {bounds.per_namespace_bytes:,} bytes of each, "
            f"{bounds.objects:,} and {bounds.bytes:,} bytes in all)"
        )


class Informer:
    """Keeps ``table`` equal to what the API server holds for ``feed``; run ``run`` in a thread.

    ``watch_seconds`` is the ``timeoutSeconds`` a watch asks for (jittered
    up to twice that, as client-go does, so that watches do not all end at once).
    """

    def __init__(
        self,
        reader: ApiReader,
        feed: Feed,
        trim: Trim,
        bounds: Bounds,
        *,
        watch_seconds: float = 300.0,
        log: logging.Logger = _log,
    ) -> None:
        self.reader = reader
        self.feed = feed
        self.trim = trim
        self.bounds = bounds
        self.watch_seconds = watch_seconds
        self.log = log
        self.table = Table(bounds, trim)
        self.synced = threading.Event()
        #: Set once the first list has succeeded or failed: what a lookup waits for.
        self.tried = threading.Event()
        self.version: str | None = None
        #: Counts changes to the table, before and after each (so a reader that read
        #: it around a change sees the count move): what memos of it are keyed by.
        self.generation = 0
        #: The last failure, until a watch or list succeeds; what readiness shows.
        self.error: str | None = None

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The object kept for ``namespace/name``, or None; never calls the API server."""
        return self.table.objects.get((namespace, name))

    def describe(self) -> str:
        """One line for readiness and messages: synced or not, and the last failure."""
        if not self.synced.is_set():
            state = "not read yet"
        else:
            table = self.table
            state = f"{len(table)} kept" + (f", {table.dropped} not kept" if table.dropped else "")
        return f"{self.feed}: {state}" + (f"; {self.error}" if self.error else "")

    def run(self, stop: threading.Event) -> None:
        """List and watch until ``stop`` is set; never raises."""
        failures = expiries = 0
        while not stop.is_set():
            try:
                if self.version is None:
                    self._list()
                started = time.monotonic()
                events = self._watch(stop)
                self.error = None
                if events or time.monotonic() - started >= 1.0:
                    failures = expiries = 0
                    continue
                stop.wait(_FIRST_DELAY)  # a watch that ends at once, empty: do not spin
            except Expired as exc:
                self.log.info("pull secrets: %s; listing again", exc)
                self.version = None
                expiries += 1
                if expiries > 1:  # expired again at once: a list per try would hammer it
                    stop.wait(_delay(expiries - 1))
            except KubeError as exc:
                if stop.is_set():
                    return
                failures += 1
                self._failed(str(exc))
                stop.wait(_delay(failures))
            except Exception as exc:  # a bug must not end the cache silently: say it, retry
                self.log.exception("pull secrets: %s: unexpected failure; retrying", self.feed)
                self._failed(f"{self.feed}: unexpected failure ({type(exc).__name__})")
                failures += 1
                stop.wait(_delay(failures))

    def _failed(self, message: str) -> None:
        if message != self.error:
            self.log.warning("pull secrets: %s; retrying", message)
        self.error = message
        self.tried.set()

    def _list(self) -> None:
        """Read every object in pages into a new table, then put it in place."""
        table = Table(self.bounds, self.trim)
        limit, token, version = self.bounds.page_size, "", None
        drops: list[str] = []
        while True:
            params = self.feed.params(limit=str(limit), **({"continue": token} if token else {}))
            cap = self.bounds.page_bytes
            if limit == 1:
                cap = max(cap, self.bounds.event_bytes)
            try:
                page = self.reader.get(
                    self.feed.path,
                    params,
                    what=f"listing {self.feed}",
                    verb="list",
                    seconds=self.reader.timeout,
                    max_bytes=cap,
                )
            except AnswerTooLarge:
                if limit == 1:
                    raise
                limit = max(1, limit // 4)  # large objects: fewer per page
                continue
            except ApiRefusal as exc:
                if exc.code == 410:
                    raise Expired(str(exc)) from None
                raise
            assert page is not None  # a list is never None (404 is a refusal)
            metadata = page.get("metadata") or {}
            version = version or metadata.get("resourceVersion")
            for item in page.get("items") or []:
                if isinstance(item, dict) and (reason := table.put(item)) is not None:
                    drops.append(f"{_named(item)} not kept: {reason}")
            token = metadata.get("continue") or ""
            if not token:
                break
        if not isinstance(version, str) or not version:
            raise KubeError(f"listing {self.feed}: the list has no resourceVersion")
        self._log_drops(drops)
        self.generation += 1
        self.table, self.version = table, version
        self.generation += 1
        self.error = None
        self.synced.set()
        self.tried.set()

    def _watch(self, stop: threading.Event) -> int:
        """Apply the events of one watch; returns how many arrived."""
        seconds = self.watch_seconds * random.uniform(1.0, 2.0)
        params = self.feed.params(
            watch="1",
            allowWatchBookmarks="true",
            resourceVersion=self.version or "",
            timeoutSeconds=str(max(1, int(seconds))),
        )
        what = f"watching {self.feed}"
        count = 0
        try:
            with self.reader.watch(
                self.feed.path,
                params,
                what=what,
                seconds=seconds + 30,
                idle=seconds + 30,
                max_line=self.bounds.event_bytes,
            ) as events:
                for event in events:
                    if stop.is_set():
                        break
                    self._apply(event, what)
                    count += 1
        except ApiRefusal as exc:
            if exc.code == 410:
                raise Expired(str(exc)) from None
            raise
        return count

    def _apply(self, event: dict[str, Any], what: str) -> None:
        kind, obj = event.get("type"), event.get("object")
        if not isinstance(obj, dict):
            raise KubeError(f"{what}: an event without an object")
        if kind == "ERROR":
            message = f"{what}: the API server ended the watch: {status_message(obj)}"
            raise (Expired if obj.get("code") == 410 else KubeError)(message)
        if kind != "BOOKMARK":
            self.generation += 1  # before the change: a reader that saw it sees a new one
        if kind in ("ADDED", "MODIFIED"):
            reason = self.table.put(obj)
            if reason is not None:
                self.log.warning(
                    "pull secrets: %s %s not kept: %s", self.feed.plural, _named(obj), reason
                )
        elif kind == "DELETED":
            self.table.delete(obj)
        elif kind != "BOOKMARK":
            raise KubeError(f"{what}: an event of unknown type {str(kind)[:40]!r}")
        if kind != "BOOKMARK":
            self.generation += 1  # and after it: what was read during it is stale
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if isinstance(version, str) and version:
            self.version = version

    def _log_drops(self, drops: list[str]) -> None:
        for line in drops[:_LOGGED_DROPS]:
            self.log.warning("pull secrets: %s %s", self.feed.plural, line)
        if len(drops) > _LOGGED_DROPS:
            self.log.warning(
                "pull secrets: %s: %d more not kept", self.feed, len(drops) - _LOGGED_DROPS
            )


def _named(obj: Mapping[str, Any]) -> str:
    key = key_of(obj)
    return "(unnamed)" if key is None else f"{key[0][:63]}/{key[1][:253]}"


def _delay(failures: int) -> float:
    """Seconds to wait after ``failures`` in a row: doubling to a bound, jittered by a fifth."""
    base = min(_LAST_DELAY, _FIRST_DELAY * 2.0 ** min(failures - 1, 10))
    return base * random.uniform(0.8, 1.2)
