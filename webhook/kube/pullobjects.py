"""What the stores of pull secrets keep of a Secret or a ServiceAccount, and the bounds on it.

A Secret's JSON carries much that a pull does not use (managed fields, a
``last-applied-configuration`` annotation repeating its data, other data
keys); a ServiceAccount's carries its token secrets. Both stores (the watched
one of ``serve``, the direct reads of ``review``) keep only what
``webhook.credentials.pullsecrets`` reads: names and versions, the type, the
one data key of a pull secret type, the names of a ServiceAccount's
``imagePullSecrets``. That is what the bounds count, and a Secret whose pull
data is over ``Bounds.object_bytes`` is kept as a marker saying so
(``DROPPED``), so the review can say why it was not tried.

The names here restate ``webhook.credentials`` (``DROPPED``, the two types):
``kube`` and ``credentials`` are siblings that may not import each other, and
a test holds the two copies equal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "DROPPED",
    "PULL_SECRET_TYPES",
    "Bounds",
    "Kept",
    "dropped",
    "key_of",
    "trim_account",
    "trim_secret",
    "valid_name",
]

#: Set on an object seen but not kept, with the reason (``webhook.credentials.pullsecrets``).
DROPPED: Final = "trustgate/dropped"
#: The Secret types the kubelet pulls with, and the data key each keeps its content under.
PULL_SECRET_TYPES: Final[Mapping[str, str]] = {
    "kubernetes.io/dockerconfigjson": ".dockerconfigjson",
    "kubernetes.io/dockercfg": ".dockercfg",
}
#: What a kept object costs besides its data: names, versions, the dict around them.
OVERHEAD: Final = 512
#: Names of a ServiceAccount's ``imagePullSecrets`` kept (a real one lists a few).
MAX_ACCOUNT_SECRETS: Final = 256
_NAME: Final = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_NAMESPACE: Final = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True, slots=True)
class Bounds:
    """What a store keeps at most, per list and watch (one kind, one namespace or all).

    ``object_bytes`` bounds one Secret's pull data (base64, as sent): a pull
    secret for a few registries is a few kB, and ``dockerconfig`` refuses
    content over 256 KiB (about 342 KiB of base64) anyway. ``per_namespace``
    and ``per_namespace_bytes`` keep one namespace from filling what the others
    need: a thousand secrets of a few kB fit, a hundred of ``object_bytes`` do not.
    ``page_size``/``page_bytes`` bound one page of a list, ``event_bytes`` one
    watch event or single object (the API server stores up to about 1.5 MiB).
    """

    objects: int = 10_000
    bytes: int = 32 * 1024 * 1024
    per_namespace: int = 1_000
    per_namespace_bytes: int = 4 * 1024 * 1024
    object_bytes: int = 384 * 1024
    page_size: int = 100
    page_bytes: int = 8 * 1024 * 1024
    event_bytes: int = 4 * 1024 * 1024


#: A kept object and what it counts against ``Bounds.bytes``.
Kept = tuple[dict[str, Any], int]


def valid_name(namespace: str, name: str) -> bool:
    """Whether ``namespace`` and ``name`` can name an object (and so go in a URL path)."""
    return bool(_NAMESPACE.fullmatch(namespace) and _NAME.fullmatch(name))


def key_of(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """(namespace, name) of an object, or None when it has no such names."""
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        return None
    namespace, name = metadata.get("namespace"), metadata.get("name")
    if not isinstance(namespace, str) or not isinstance(name, str):
        return None
    return namespace, name


def _metadata(obj: Mapping[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata") or {}
    return {
        field: metadata[field]
        for field in ("name", "namespace", "uid", "resourceVersion")
        if isinstance(metadata.get(field), str)
    }


def dropped(obj: Mapping[str, Any], reason: str) -> dict[str, Any]:
    """The marker kept for ``obj`` instead of it: its names, versions and type, and why."""
    marker = {"metadata": _metadata(obj), DROPPED: reason}
    if isinstance(obj.get("type"), str):
        marker["type"] = obj["type"]
    return marker


def trim_secret(
    obj: Mapping[str, Any], bounds: Bounds, *, any_type: bool = False
) -> Kept | str | None:
    """What is kept of a Secret: a Kept, a reason it is too large, or None.

    None for a Secret of another type, unless ``any_type``: then its names
    and type are kept, so that a review can say the type is wrong.
    """
    secret_type = obj.get("type")
    data_key = PULL_SECRET_TYPES.get(secret_type) if isinstance(secret_type, str) else None
    if data_key is None:
        if not any_type:
            return None
        kept = {
            "metadata": _metadata(obj),
            "type": secret_type if isinstance(secret_type, str) else "",
        }
        return kept, OVERHEAD
    data = obj.get("data")
    value = data.get(data_key) if isinstance(data, dict) else None
    size = len(value) if isinstance(value, str) else 0
    if size > bounds.object_bytes:
        return (
            f"its {data_key} data is {size:,} bytes; trustgate keeps pull secrets of at most "
            f"{bounds.object_bytes:,} bytes"
        )
    content = {data_key: value} if isinstance(value, str) else {}
    return {"metadata": _metadata(obj), "type": secret_type, "data": content}, size + OVERHEAD


def trim_account(obj: Mapping[str, Any], bounds: Bounds) -> Kept:
    """What is kept of a ServiceAccount: its names, versions and ``imagePullSecrets`` names."""
    listed = obj.get("imagePullSecrets")
    names = [
        item["name"]
        for item in (listed if isinstance(listed, list) else [])
        if isinstance(item, dict) and isinstance(item.get("name"), str)
    ][:MAX_ACCOUNT_SECRETS]
    kept = {"metadata": _metadata(obj), "imagePullSecrets": [{"name": name} for name in names]}
    return kept, OVERHEAD + sum(len(name) for name in names)
