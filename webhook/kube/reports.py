"""Writing the audit's policy reports into the cluster, and removing stale ones.

Separate from listing workloads: it writes and deletes, so it needs more of the
identity's RBAC (list, patch and delete on the reports), and only
``audit --write-reports`` calls it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from webhook.kube.client import KubeClient, Resource

__all__ = ["write_reports"]


def write_reports(
    client: KubeClient,
    resource: Resource,
    objects: Sequence[Mapping[str, Any]],
    *,
    labels: Mapping[str, str],
    namespace: str | None = None,
    exclude_namespaces: frozenset[str] = frozenset(),
) -> tuple[int, int]:
    """Apply namespaced policy reports of ``resource``, then delete stale ones.

    A stale report carries ``labels``, lies in the audited scope (``namespace``,
    or every namespace but ``exclude_namespaces``) and was not written by this
    run: its workload is gone, or it is clean now. Returns (written, deleted).

    Raises:
        KubeError: the API server refuses (the identity needs list, patch and
            delete on the reports), does not serve the reports' CRD, or rejects
            a report.
    """
    written = set()
    for obj in objects:
        client.apply(resource, obj)
        written.add((obj["metadata"]["namespace"], obj["metadata"]["name"]))
    selector = ",".join(f"{key}={value}" for key, value in labels.items())
    stale = [
        (o["metadata"]["namespace"], o["metadata"]["name"])
        for o in client.list(resource, namespace, labels=selector)
        if (o["metadata"]["namespace"], o["metadata"]["name"]) not in written
        and o["metadata"]["namespace"] not in exclude_namespaces
    ]
    for ns, name in stale:
        client.delete(resource, name, ns)
    return len(written), len(stale)
