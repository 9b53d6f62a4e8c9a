"""The workloads ``trustgate audit --cluster`` judges, listed from the API server.

Separate from the client because choosing what to judge (which kinds, which
objects their owners already stand for, which namespaces are left out) is the
audit's rule, not the API's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from webhook.kube.client import KubeClient, Resource

__all__ = ["PROGRESS_EVERY", "WORKLOADS", "Listed", "cluster_workloads"]

#: Long runs say how far they got this often (objects of one resource).
PROGRESS_EVERY = 100

#: Every kind whose pod template the webhook checks, owners before what they own.
WORKLOADS = (
    Resource("Deployment", "apps/v1", "deployments"),
    Resource("StatefulSet", "apps/v1", "statefulsets"),
    Resource("DaemonSet", "apps/v1", "daemonsets"),
    Resource("ReplicaSet", "apps/v1", "replicasets"),
    Resource("ReplicationController", "v1", "replicationcontrollers"),
    Resource("CronJob", "batch/v1", "cronjobs"),
    Resource("Job", "batch/v1", "jobs"),
    Resource("Pod", "v1", "pods"),
)
_LISTED_KINDS = frozenset(r.kind for r in WORKLOADS)


def _controlled_by_listed_kind(obj: Mapping[str, Any]) -> bool:
    metadata = obj.get("metadata") or {}
    for owner in metadata.get("ownerReferences") or []:
        if (
            isinstance(owner, dict)
            and owner.get("controller")
            and owner.get("kind") in (_LISTED_KINDS)
        ):
            return True
    return False


@dataclass(frozen=True, slots=True)
class Listed:
    """One workload object as the API server listed it; ``number`` counts within its kind."""

    number: int
    object: Mapping[str, Any]


def cluster_workloads(
    client: KubeClient,
    *,
    namespace: str | None = None,
    exclude_namespaces: frozenset[str] = frozenset(),
    progress: Callable[[str], None] | None = None,
) -> Iterator[Listed]:
    """Every workload in the cluster (or ``namespace``) as the audit judges it.

    Objects controlled by another listed workload (the ReplicaSets of a Deployment,
    the Pods of a ReplicaSet or Job) are skipped: their images are their owner's,
    and the owner's row says which object to fix. Pods of other controllers and
    bare Pods are kept.

    Raises:
        KubeError: as ``KubeClient.list``.
    """
    for resource in WORKLOADS:
        kept = skipped = 0
        for obj in client.list(resource, namespace):
            metadata = obj.get("metadata") or {}
            if metadata.get("namespace") in exclude_namespaces or _controlled_by_listed_kind(obj):
                skipped += 1
                continue
            if progress is not None and kept and kept % PROGRESS_EVERY == 0:
                progress(f"{resource.plural}: {kept} judged so far")
            kept += 1
            yield Listed(kept, obj)
        if progress is not None:
            note = f", {skipped} owned by another workload or excluded" if skipped else ""
            progress(f"{resource.plural}: {kept} judged{note}")
