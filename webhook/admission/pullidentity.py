"""What a workload pulls with: its pod spec's ``imagePullSecrets`` and service account.

The kubelet pulls a pod's images with the pod's pull secrets, then its
service account's; trustgate authenticates with the same (when
``credentials.pullSecrets`` is on), so it reads them from the object under
review: a Pod, or the pod template of a controller.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from webhook.admission.workloads import POD_SPEC_PATHS
from webhook.core.scope import PullIdentity

#: Most pull secrets one pod spec may name that trustgate reads; the rest are ignored.
MAX_SECRETS: Final = 32
#: Kubernetes object names are at most 253 characters.
_MAX_NAME: Final = 253


def pull_identity(namespace: str, obj: Mapping[str, Any]) -> PullIdentity:
    """The pull secrets and service account of ``obj``'s pod spec, in ``namespace``.

    An object without a known pod spec (a custom resource whose images were
    found by walking it) names no secret and runs as ``default``, as a pod
    that says nothing does. Malformed entries are skipped, never guessed at.
    It runs on every review with pull secrets on, so it reads plain dicts
    (what JSON decodes to) directly.
    """
    kind = obj.get("kind")
    node: Any = obj
    for key in POD_SPEC_PATHS.get(kind, ()) if isinstance(kind, str) else ():
        node = node.get(key) if isinstance(node, dict) else None
    if node is obj or not isinstance(node, dict):
        return PullIdentity(namespace)
    names: list[str] = []
    listed = node.get("imagePullSecrets")
    if isinstance(listed, list):
        for entry in listed[:MAX_SECRETS]:
            name = entry.get("name") if isinstance(entry, dict) else None
            if isinstance(name, str) and 0 < len(name) <= _MAX_NAME and name not in names:
                names.append(name)
    account = node.get("serviceAccountName") or node.get("serviceAccount")
    if not isinstance(account, str) or not 0 < len(account) <= _MAX_NAME:
        account = "default"
    return PullIdentity(namespace, tuple(names), account)
