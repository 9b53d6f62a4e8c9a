"""A connection to one API server (lightkube) that lists, applies and deletes objects.

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
from lightkube.generic_resource import GenericNamespacedResource, create_namespaced_resource

from webhook.core.errors import KubeError
from webhook.core.failures import describe
from webhook.kube.credentials import Credentials

__all__ = ["DEFAULT_PAGE_SIZE", "TIMEOUT_SECONDS", "KubeClient", "Resource"]

DEFAULT_PAGE_SIZE = 500
#: Each call to the API server (connect, each read) is bounded by this.
TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Resource:
    """One namespaced resource the client reads or writes: kind, API group/version, plural."""

    kind: str
    api_version: str
    plural: str

    @property
    def group(self) -> str:
        """The API group; empty for the core group."""
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        """The version within the group (``v1``)."""
        return self.api_version.rpartition("/")[2]


@functools.cache
def _generic(resource: Resource) -> type[GenericNamespacedResource]:
    # The class lightkube lists with: it keeps each object's JSON as sent. Made
    # once per resource: lightkube registers it, and refuses a second class for
    # a core-group kind.
    return create_namespaced_resource(
        resource.group, resource.version, resource.kind, resource.plural
    )


class KubeClient:
    """Reads lists from one API server; use it as a context manager."""

    def __init__(self, credentials: Credentials, *, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        self.credentials = credentials
        self.page_size = page_size
        try:
            self._client = Client(credentials.config, timeout=httpx2.Timeout(TIMEOUT_SECONDS))
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

    def delete(self, resource: Resource, name: str, namespace: str) -> None:
        """Delete one object; one already gone is no error.

        Raises:
            KubeError: as ``list``.
        """
        try:
            with self._errors(resource, "deleting"):
                self._client.delete(_generic(resource), name, namespace=namespace)
        except KubeError as exc:
            if not isinstance(exc.__cause__, ApiError) or exc.__cause__.status.code != 404:
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


#: The verb of RBAC each kind of call needs.
_RBAC_VERBS = {"listing": "list", "writing": "patch", "deleting": "delete"}


def _refusal(exc: ApiError, resource: Resource, credentials: Credentials, verb: str) -> str:
    message = str(exc.status.message or "")
    status = exc.status.code or exc.response.status_code
    what = f"{verb} {resource.plural}"
    if status == 401:
        return f"{what}: not authenticated ({credentials.source}): {message}"
    if status == 403:
        need = _RBAC_VERBS[verb]
        return f"{what}: forbidden; the identity needs '{need}' on {resource.plural}: {message}"
    if status == 404 and verb != "deleting":
        served = f"{resource.api_version} {resource.plural}"
        return f"{what}: not found (does the API server serve {served}?): {message}"
    if status == 410:
        return f"{what}: the list changed too much while it was read; run again: {message}"
    return f"{what}: HTTP {status}: {message}"
