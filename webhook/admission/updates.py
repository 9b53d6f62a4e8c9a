"""Whether an UPDATE is a new admission of the object's images.

An image admitted once and unchanged since is not admitted again by an
UPDATE that leaves it where it was: removing a finalizer, changing a label or
scaling a Deployment starts nothing new. Re-judging such updates would deny
them whenever a policy became stricter after the object was created, and a
Pod that can no longer lose its finalizer hangs in Terminating for good.

``oldObject`` comes from the API server (the stored object), never from the
client, so it is a trustworthy record of what was admitted. Compared are the
images together with where they sit (path, container or volume name, kind):
a changed, added or moved image is a new admission and is judged in full.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from webhook.admission.workloads import ContainerImage, find_images
from webhook.core.errors import TrustgateError

#: Why an UPDATE was admitted without a re-check (decision log and annotation).
DELETING = "the object is being deleted"
UNCHANGED = "no image changed"

_Placed = tuple[str, str, str, str]


def _placed(images: Iterable[ContainerImage]) -> Counter[_Placed]:
    return Counter((i.path, i.kind, i.container, i.image) for i in images)


def _being_deleted(old: Mapping[str, Any]) -> bool:
    metadata = old.get("metadata")
    if not isinstance(metadata, Mapping):
        return False
    stamp = metadata.get("deletionTimestamp")
    return isinstance(stamp, str) and bool(stamp)


def not_new(
    old: Mapping[str, Any] | None, new_images: tuple[ContainerImage, ...] | None
) -> str | None:
    """Why an UPDATE from ``old`` is no new admission, or None when it is one.

    ``new_images`` are the images of the updated object (None when it could
    not be read). The stored object being deleted is reason enough: its
    deletion cannot be undone, controllers start nothing from an object being
    deleted, and the kubelet starts no container in a terminating Pod. An
    ``old`` that cannot be read (a malformed stored object) proves nothing,
    and the update is judged in full.
    """
    if old is None:
        return None
    try:
        old_images = find_images(old)
    except TrustgateError:
        return None
    if _being_deleted(old):
        return DELETING
    if new_images is not None and _placed(new_images) == _placed(old_images):
        return UNCHANGED
    return None
