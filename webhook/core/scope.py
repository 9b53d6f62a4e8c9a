"""On whose behalf a review's registry calls authenticate: logins, their sources, the scope.

A registry login can come from trustgate's own configuration, from the pull
secrets of the workload under review, or from a cloud identity or kubelet
credential plug-in that trustgate holds. The first two differ in whom they
belong to: a pull secret is one namespace's, and must never authenticate a
review in another (see docs/configuration.md, "Registry credentials").

This module names those things (``sources`` the protocols of who provides
them) and nothing more, so that the registry client
(which tries logins), the caches (which keep what one namespace's logins
fetched apart from another's) and the code that reads secrets and cloud
identities agree on them without importing one another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from webhook.core.reference import ImageRef

#: The source kinds metrics count authentication failures by (label ``source``).
SOURCE_KINDS: Final = ("config", "pullSecret", "ecr", "gcp", "acr", "plugin", "anonymous")


@dataclass(frozen=True, slots=True)
class Login:
    """One username and password to try at a registry, and where it came from.

    ``source`` says where, for people (``pull secret team-a/regcred``,
    ``registries.quay.io``, ``ecr``); ``kind`` is one of ``SOURCE_KINDS``, for
    metrics. Neither holds a secret, and the password stays out of ``repr``.
    """

    username: str
    password: str = field(repr=False)
    source: str
    kind: str

    @property
    def key(self) -> str:
        """A digest of the username and password: what tokens fetched with it are cached by.

        Two sources holding the same login share its tokens: whoever holds it
        could fetch them anyway.
        """
        material = f"{self.username}\0{self.password}".encode()
        return hashlib.sha256(material).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Scope:
    """The pull secrets one review may authenticate with, and the partition they make.

    ``key`` partitions every cache entry that depends on who fetched it (a
    tag's digest, a failure, a flight in progress): reviews with different
    keys never share those, while a verified fact about a digest is shared by
    all. It holds the namespace and a digest of the secrets' content, so a
    rotated secret starts afresh; it is None when the review has no usable
    secret, which shares trustgate's own partition. ``label`` says whose
    secrets they are (``namespace team-a, service account builder``).
    """

    key: str | None
    label: str
    lookup: Callable[[ImageRef], Sequence[Login]]
    #: The secrets named but not usable (missing, of another type, unreadable),
    #: one line each, for a denial to say why they were not tried.
    problems: tuple[str, ...] = ()


def partition(scope: Scope | None) -> str | None:
    """The cache partition of a review with ``scope``: None for trustgate's own logins only."""
    return None if scope is None else scope.key


@dataclass(frozen=True, slots=True)
class PullIdentity:
    """What a workload pulls with: its namespace, its pull secrets' names, its service account.

    ``secrets`` are the pod spec's ``imagePullSecrets`` in order; the
    service account's own come after them (``default`` when unnamed), as the
    kubelet uses them.
    """

    namespace: str
    secrets: tuple[str, ...] = ()
    service_account: str = "default"
