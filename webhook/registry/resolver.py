"""Tag -> digest through the client, remembered briefly.

A tag can move, so its digest is kept for a short TTL only; everything that is
verified afterwards is keyed by the digest, never by the tag. What a review
with pull secrets resolved is kept for reviews with the same secrets only.
"""

from __future__ import annotations

from webhook.cache.local import Cache
from webhook.core.deadline import Deadline
from webhook.core.reference import ImageRef
from webhook.registry.client import RegistryClient


class CachedResolver:
    """Resolves references to digests, one registry call per tag per TTL, however many ask."""

    def __init__(self, client: RegistryClient, cache: Cache[str]) -> None:
        self._client = client
        self._cache = cache

    def __call__(self, ref: ImageRef, deadline: Deadline) -> str:
        """The digest ``ref`` points at.

        Raises:
            UpstreamError: the registry failed, timed out or does not know the tag.
        """
        if ref.digest is not None:
            return ref.digest
        # Whether a tag may be read at all depends on the login: a review with pull
        # secrets resolves in its own partition (see webhook.core.scope).
        partition = deadline.scope.key if deadline.scope is not None else None
        key = (
            (ref.repository, ref.tag) if partition is None else (ref.repository, ref.tag, partition)
        )

        def resolve(limit: Deadline) -> str:
            return self._client.resolve(ref, limit)

        # Concurrent reviews of one tag (a rollout) make one registry call.
        return self._cache.get_or_compute(key, resolve, deadline)
