"""What a workload pulls with: its pod spec's ``imagePullSecrets`` and service account.

The kubelet pulls a pod's images with the pod's pull secrets, then its
service account's; trustgate authenticates with the same (when
``credentials.pullSecrets`` is on), so it reads them from the object under
review: a Pod, or the pod template of a controller.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from webhook.admission.workloads import known_pod_spec
from webhook.core.errors import WorkloadError
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
    """
    try:
        spec, _ = known_pod_spec(obj)
    except WorkloadError:
        spec = None
    if spec is None:
        return PullIdentity(namespace)
    names: list[str] = []
    listed = spec.get("imagePullSecrets")
    if isinstance(listed, list):
        for entry in listed[:MAX_SECRETS]:
            name = entry.get("name") if isinstance(entry, Mapping) else None
            if isinstance(name, str) and 0 < len(name) <= _MAX_NAME and name not in names:
                names.append(name)
    account = spec.get("serviceAccountName") or spec.get("serviceAccount")
    if not isinstance(account, str) or not 0 < len(account) <= _MAX_NAME:
        account = "default"
    return PullIdentity(namespace, tuple(names), account)
