"""Who provides logins: the protocols of login sources and of pull-secret readers.

Separate from ``scope`` (the data) because these take a ``Deadline``, which
carries a ``Scope``: kept apart, neither module imports the other's importer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from webhook.core.deadline import Deadline
from webhook.core.reference import ImageRef
from webhook.core.scope import Login, PullIdentity, Scope


class LoginSource(Protocol):
    """A source of logins trustgate holds itself: a cloud identity, a kubelet plug-in.

    Unlike pull secrets, these serve every namespace alike, as the node's own
    identity does for the kubelet.
    """

    #: What messages and the decision log call it (``ecr``, ``plugin ecr-credential-provider``).
    name: str
    #: One of ``SOURCE_KINDS``.
    kind: str

    def matches(self, host: str) -> bool:
        """Whether this source serves the registry at ``host`` (``host[:port]``)."""
        ...

    def logins(self, image: ImageRef, deadline: Deadline) -> Sequence[Login]:
        """The logins to try for ``image``, fetched (or renewed) within ``deadline``.

        Raises:
            UpstreamError: the identity could not be turned into a login in
                time (the message says why, never a secret).
        """
        ...


class ScopeReader(Protocol):
    """Turns a workload's pull identity into the scope its review authenticates with."""

    def scope(self, identity: PullIdentity, deadline: Deadline) -> Scope | None:
        """The scope, or None when the workload has no usable pull secret.

        Raises:
            UpstreamError: the secrets could not be read within ``deadline``.
        """
        ...
