"""A connection to one API server (lightkube) that lists, reads, writes and deletes objects.

The connection is lightkube's (a maintained client, chosen over the official
``kubernetes`` client for its size and import time: docs/design-notes.md). Lists
are read in pages (``limit``/``continue``) so that a large cluster never arrives
in one answer. Objects are handled as generic resources: the API server's JSON
reaches the caller as it was sent, so no field a model does not know (a new image
field) is lost.

Separate from what is listed or written (workloads, reports) so that each of
those is a few lines over one client whose every failure is a ``KubeError`` that
says what to do.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx2
import msgspec
from lightkube import ALL_NS, ApiError, Client, ConfigError, LoadResourceError
from lightkube.generic_resource import (
    GenericGlobalResource,
    GenericNamespacedResource,
    create_global_resource,
    create_namespaced_resource,
)
from lightkube.types import PatchType

from webhook.core.errors import KubeError
from webhook.core.failures import describe
from webhook.kube.credentials import Credentials

__all__ = ["DEFAULT_PAGE_SIZE", "TIMEOUT_SECONDS", "KubeClient", "Resource", "refusal_status"]

DEFAULT_PAGE_SIZE = 500
#: Each call to the API server (connect, each read) is bounded by this.
TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Resource:
    """One resource the client reads or writes: kind, API group/version, plural, scope."""

    kind: str
    api_version: str
    plural: str
    #: False for cluster-scoped kinds (webhook configurations), which take no namespace.
    namespaced: bool = True

    @property
    def group(self) -> str:
        """The API group; empty for the core group."""
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        """The version within the group (``v1``)."""
        return self.api_version.rpartition("/")[2]


@functools.cache
def _generic(resource: Resource) -> Any:
    # The class lightkube lists with: it keeps each object's JSON as sent. Made
    # once per resource: lightkube registers it, and refuses a second class for
    # a core-group kind. Typed Any: lightkube's overloads tell namespaced classes
    # from global ones by type, which a Resource decides only when it runs.
    made: type[GenericNamespacedResource | GenericGlobalResource]
    if resource.namespaced:
        made = create_namespaced_resource(
            resource.group, resource.version, resource.kind, resource.plural
        )
    else:
        made = create_global_resource(
            resource.group, resource.version, resource.kind, resource.plural
        )
    return made


class KubeClient:
    """Reads and writes objects of one API server; use it as a context manager.

    ``timeout`` bounds each call's connect and each read and write (seconds).
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self.credentials = credentials
        self.page_size = page_size
        try:
            self._client = Client(credentials.config, timeout=httpx2.Timeout(timeout))
        except (ConfigError, OSError, ValueError) as exc:
            # An unreadable CA or client certificate file, or inline data that is not base64.
            raise KubeError(f"{credentials.source}: {exc}") from exc

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._client.close()

    def list(
        self, resource: Resource, namespace: str | None = None, *, labels: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every object of ``resource``, page by page, with ``kind`` and ``apiVersion`` set.

        ``labels`` is a label selector (``key=value,...``).

        Raises:
            KubeError: the API server is unreachable, refuses (401/403), a page
                expires (410) before the list is read, or an exec plug-in fails.
        """
        selector: dict[str, Any] | None = None
        if labels:
            selector = dict(part.split("=", 1) for part in labels.split(","))
        with self._errors(resource, "listing"):
            for item in self._client.list(
                _generic(resource),
                namespace=namespace or ALL_NS,
                chunk_size=self.page_size,
                labels=selector,
            ):
                # List items carry neither field; the webhook would see both.
                yield {**item, "apiVersion": resource.api_version, "kind": resource.kind}

    def apply(self, resource: Resource, obj: Mapping[str, Any]) -> None:
        """Create or update ``obj`` by server-side apply, as field manager ``trustgate``.

        Raises:
            KubeError: as ``list``, or the server rejects the object (422).
        """
        with self._errors(resource, "writing"):
            self._client.apply(_generic(resource)(**obj), field_manager="trustgate", force=True)

    def get(self, resource: Resource, name: str, namespace: str | None = None) -> dict[str, Any]:
        """One object, as the API server sent it.

        Raises:
            KubeError: as ``list``; a missing object is a KubeError that says "not found".
        """
        with self._errors(resource, "reading"):
            return dict(self._client.get(_generic(resource), name, namespace=namespace))

    def merge_patch(
        self,
        resource: Resource,
        name: str,
        patch: Mapping[str, Any],
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """Change one existing object by a JSON merge patch (RFC 7386), as field manager
        ``trustgate``; returns the object as stored.

        A merge patch never creates: an object that is gone stays gone. A patch that
        carries ``metadata.resourceVersion`` applies only to that version (409 otherwise).

        Raises:
            KubeError: as ``list``; also when the object is missing (404), has changed
                since it was read (409), or the server rejects the result (422).
        """
        with self._errors(resource, "patching"):
            return dict(
                self._client.patch(
                    _generic(resource),
                    name,
                    dict(patch),
                    namespace=namespace,
                    patch_type=PatchType.MERGE,
                    field_manager="trustgate",
                )
            )

    def delete(self, resource: Resource, name: str, namespace: str) -> None:
        """Delete one object; one already gone is no error.

        Raises:
            KubeError: as ``list``.
        """
        try:
            with self._errors(resource, "deleting"):
                self._client.delete(_generic(resource), name, namespace=namespace)
        except KubeError as exc:
            if refusal_status(exc) != 404:
                raise

    @contextlib.contextmanager
    def _errors(self, resource: Resource, verb: str) -> Iterator[None]:
        """Every failure of a call about ``resource`` as a KubeError that says what to do."""
        try:
            yield
        except ApiError as exc:
            raise KubeError(_refusal(exc, resource, self.credentials, verb)) from exc
        except httpx2.HTTPError as exc:
            raise KubeError(f"cannot reach {self.credentials.server}: {describe(exc)}") from exc
        except ConfigError as exc:
            # An exec plug-in that fails, or a token file that is gone.
            raise KubeError(f"{self.credentials.source}: {exc}") from exc
        except (LoadResourceError, ValueError, msgspec.DecodeError) as exc:
            raise KubeError(
                f"{verb} {resource.plural}: the answer is not understood: {exc}"
            ) from exc


def refusal_status(exc: KubeError) -> int | None:
    """The HTTP status with which the API server refused the call behind ``exc``, if it did.

    None when the server was not reached or its answer was not understood.
    """
    cause = exc.__cause__
    if isinstance(cause, ApiError):
        return cause.status.code or cause.response.status_code
    return None


#: The verb of RBAC each kind of call needs.
_RBAC_VERBS = {
    "listing": "list",
    "reading": "get",
    "writing": "patch",
    "patching": "patch",
    "deleting": "delete",
}


def _refusal(exc: ApiError, resource: Resource, credentials: Credentials, verb: str) -> str:
    message = str(exc.status.message or "")
    status = exc.status.code or exc.response.status_code
    what = f"{verb} {resource.plural}"
    if status == 401:
        return f"{what}: not authenticated ({credentials.source}): {message}"
    if status == 403:
        need = _RBAC_VERBS[verb]
        return f"{what}: forbidden; the identity needs '{need}' on {resource.plural}: {message}"
    if status == 404 and verb in ("reading", "patching"):
        return f"{what}: not found: {message}"
    if status == 404 and verb != "deleting":
        served = f"{resource.api_version} {resource.plural}"
        return f"{what}: not found (does the API server serve {served}?): {message}"
    if status == 409:
        return f"{what}: changed by another writer meanwhile; read it again: {message}"
    if status == 410:
        return f"{what}: the list changed too much while it was read; run again: {message}"
    return f"{what}: HTTP {status}: {message}"
