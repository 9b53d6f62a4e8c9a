"""The rollback high-water mark in a ConfigMap of trustgate's own namespace.

``policies.signature.rollback: {configMap: {name, namespace}}``. The mark is the
ConfigMap's ``data``: ``version`` (decimal), ``digest`` and ``updatedAt``. It
outlives every pod, so an older signed policy set stays refused after a
restart, a reschedule or a rollout, wherever the next pod runs.

The chart creates the ConfigMap with no data and keeps it on ``helm upgrade``
and ``helm uninstall``; trustgate never creates it (its Role grants ``get``,
``update`` and ``patch`` on that one name and nothing else). An advance reads
the object and writes a merge patch that names the ``resourceVersion`` it read:
a write that lost a race with another replica is refused (409) and tried again
on what that replica wrote, and nothing is ever written over a higher version.
Every call is bounded in time and in bytes (``ApiReader``): a stalled API server
costs a load at most ``timeout`` per call, never a hung reload.

Why this is safe: the object lives in trustgate's namespace and can be written by
trustgate's ServiceAccount (this one object) and by that namespace's admins, the
same people who can edit trustgate.yaml, which decides whether signatures are
required at all. Those the signatures defend against, people who can push to the
policy repository or edit the policy ConfigMap, have no write to it, so they
cannot lower it to replay an old set. Deleting the ConfigMap (a namespace admin)
forgets the mark: the next load finds no object and refuses until the chart is
upgraded (which recreates it empty) or it is created again; from then on the
floor is ``policies.signature.minimumVersion``, which is why that value should
follow the versions deployed.

A ``webhook.policy.signing.gate.MarkStore`` once wrapped in
``webhook.policy.signing.marks.RemoteMark`` (``build_mark_store`` in
``webhook/services.py`` does), which checks the fields and turns every failure
into a ``MarkError``: this layer may not import the policy layer.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from webhook.core.errors import KubeError
from webhook.kube.apistream import ApiReader, ApiRefusal
from webhook.kube.credentials import Credentials
from webhook.kube.pullobjects import valid_name

__all__ = ["DEFAULT_TIMEOUT", "MAX_ANSWER_BYTES", "ConfigMapMark", "CorruptMark", "StoredMark"]

#: Each call to the API server ends within this (seconds); an advance makes at most
#: ``_ATTEMPTS`` reads and writes.
DEFAULT_TIMEOUT: Final = 5.0
#: A ConfigMap answer larger than this is refused unread (the mark is under 1 KiB;
#: managedFields and labels add a few).
MAX_ANSWER_BYTES: Final = 256 * 1024
_ATTEMPTS: Final = 4


class CorruptMark(KubeError):
    """The ConfigMap holds a mark that is not one (a version that is not a number)."""


@dataclass(frozen=True, slots=True)
class StoredMark:
    """The mark's fields as the ConfigMap holds them (checked by the caller)."""

    version: str
    digest: str
    updated_at: str


class ConfigMapMark:
    """The high-water mark in ConfigMap ``namespace/name`` (default: the credentials'
    namespace, which in a pod is the pod's own)."""

    def __init__(
        self,
        credentials: Credentials,
        name: str,
        namespace: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self.namespace = namespace or credentials.config.namespace
        if not valid_name(self.namespace, name):
            raise KubeError(f"ConfigMap {self.namespace}/{name}: not a valid object name")
        self.name = name
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.where = f"ConfigMap {self.namespace}/{name}"
        self._path = f"/api/v1/namespaces/{self.namespace}/configmaps/{name}"
        self._credentials = credentials
        self._reader = ApiReader(credentials, timeout=timeout, connections=2)
        self._pid = os.getpid()

    def close(self) -> None:
        """Close the connections."""
        self._reader.close()

    @property
    def reader(self) -> ApiReader:
        """This process's connection: one made before gunicorn forks its workers is not
        shared with them (two processes on one TLS stream would garble it); the parent's
        is left to the parent."""
        if self._pid != os.getpid():
            self._reader = ApiReader(self._credentials, timeout=self.timeout, connections=2)
            self._pid = os.getpid()
        return self._reader

    def read(self) -> StoredMark | None:
        """The mark's fields; None when the ConfigMap holds no mark yet.

        Raises:
            CorruptMark: ``data`` holds some of the fields, or not as strings.
            KubeError: the ConfigMap is missing, forbidden, or the API server is
                unreachable, too slow or answers too much; the message says what to do.
        """
        return _fields(self._get(), self.where)

    def advance(self, version: int, digest: str) -> None:
        """Write ``version`` and ``digest`` unless the ConfigMap holds this version or a
        higher one; a conflicting write by another replica is read again and retried.

        Raises:
            CorruptMark: as ``read``; a corrupt mark is not written over.
            KubeError: as ``read``, or every attempt lost a race.
        """
        end = time.monotonic() + self.timeout * 2 * _ATTEMPTS
        for _ in range(_ATTEMPTS):
            live = self._get()
            stored = _fields(live, self.where)
            if stored is not None and _version(stored, self.where) >= version:
                return
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            patch = {
                "metadata": {"resourceVersion": live["metadata"]["resourceVersion"]},
                "data": {"version": str(version), "digest": digest, "updatedAt": now},
            }
            try:
                self.reader.merge_patch(
                    self._path,
                    patch,
                    what=f"updating {self.where}",
                    seconds=self.timeout,
                    max_bytes=self.max_bytes,
                )
            except ApiRefusal as exc:
                if exc.code != 409 or time.monotonic() > end:
                    raise KubeError(self._explained(exc, "patch")) from None
                continue
            return
        raise KubeError(
            f"updating {self.where}: {_ATTEMPTS} writes in a row lost a race with another "
            "writer; the next policy load tries again"
        )

    def _get(self) -> dict[str, Any]:
        try:
            found = self.reader.get(
                self._path,
                what=f"reading {self.where}",
                verb="get",
                seconds=self.timeout,
                max_bytes=self.max_bytes,
            )
        except ApiRefusal as exc:
            raise KubeError(self._explained(exc, "get")) from None
        if found is None:
            raise KubeError(self._missing())
        metadata = found.get("metadata")
        if not isinstance(metadata, dict) or not isinstance(metadata.get("resourceVersion"), str):
            raise KubeError(f"reading {self.where}: the answer is not a ConfigMap")
        return found

    def _explained(self, exc: ApiRefusal, verb: str) -> str:
        if exc.code == 404:
            return self._missing()
        if exc.code == 403:
            return (
                f"{exc.message}; trustgate's ServiceAccount needs a Role in namespace "
                f'{self.namespace} with the rule {{apiGroups: [""], resources: [configmaps], '
                f"resourceNames: [{self.name}], verbs: [get, update, patch]}} and a "
                "RoleBinding to it (the chart renders both, <release>-policy-version)"
            )
        return exc.message

    def _missing(self) -> str:
        return (
            f"{self.where} does not exist, so the highest policy-set version loaded "
            "cannot be kept; trustgate never creates it: install or upgrade the chart with "
            "signatures configured (it renders the ConfigMap, from "
            "config.policies.signature.rollback.configMap), or create it empty: kubectl "
            f"create configmap {self.name} -n {self.namespace}"
        )


def _fields(live: dict[str, Any], where: str) -> StoredMark | None:
    data = live.get("data") or {}
    if not isinstance(data, dict):
        raise CorruptMark(f"{where}: data is not a map; {_repair(where)}")
    fields = [data.get(key) for key in ("version", "digest")]
    if all(value is None for value in fields):
        return None
    version, digest = fields
    if not isinstance(version, str) or not isinstance(digest, str):
        raise CorruptMark(f"{where}: data holds version or digest alone; {_repair(where)}")
    updated = data.get("updatedAt")
    return StoredMark(version, digest, updated if isinstance(updated, str) else "")


def _version(stored: StoredMark, where: str) -> int:
    text = stored.version
    # Above 2**63 - 1 no set can be signed (the manifest's limit): a corrupt mark,
    # which says how to repair it, rather than a replay of every set.
    if not (text.isascii() and text.isdecimal()) or len(text) > 20 or int(text) > 2**63 - 1:
        raise CorruptMark(
            f"{where}: data.version is not a whole number of zero or more; {_repair(where)}"
        )
    return int(text)


def _repair(where: str) -> str:
    namespace, _, name = where.removeprefix("ConfigMap ").partition("/")
    return (
        "no policy set loads until it is repaired, since a replay cannot be ruled out: set "
        "policies.signature.minimumVersion to the version deployed now (trustgate policy "
        f"verify prints it), then kubectl edit configmap {name} -n {namespace} and remove "
        "data.version and data.digest, so that the next load writes a new mark"
    )
