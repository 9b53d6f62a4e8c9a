"""The small production cluster that the webhook.kube and ``audit --cluster`` tests list.

Shared by tests/unit/kube and tests/unit/cli/test_audit_cluster.py: both assert
counts of these objects ("pods: 3 judged, 5 owned by another workload"), so they
are written once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.kubeapi import EXEC_V1BETA1, ApiServer, kubeconfig, stored
from webhook.kube.credentials import Credentials, from_kubeconfig

GOOD = "quay.io/acme/api:1.0"
BAD = "docker.io/library/nginx:1.27"


def fill_production(api: ApiServer) -> None:
    """Load ``api`` with a small production cluster and forget what earlier tests did.

    One Deployment runs an image the policy refuses; owned ReplicaSets, Jobs and
    Pods sit under their owners.
    """
    api.objects = {
        "deployments": [
            stored("Deployment", "api", "prod-web", GOOD),
            stored("Deployment", "legacy", "prod-web", GOOD, BAD),
        ],
        "replicasets": [
            stored("ReplicaSet", "api-6d9f", "prod-web", GOOD, owner=("Deployment", "api")),
            stored("ReplicaSet", "legacy-77c", "prod-web", BAD, owner=("Deployment", "legacy")),
        ],
        "statefulsets": [stored("StatefulSet", "db", "prod-data", GOOD)],
        "daemonsets": [],
        "replicationcontrollers": [],
        "cronjobs": [stored("CronJob", "report", "prod-web", GOOD)],
        "jobs": [stored("Job", "report-2891", "prod-web", GOOD, owner=("CronJob", "report"))],
        "pods": [
            stored("Pod", f"api-6d9f-{i}", "prod-web", GOOD, owner=("ReplicaSet", "api-6d9f"))
            for i in range(5)
        ]
        + [
            stored("Pod", "debug", "prod-web", BAD),
            stored("Pod", "rollout-1", "prod-web", GOOD, owner=("Rollout", "canary")),
            stored("Pod", "etcd", "kube-system", "registry.k8s.io/etcd:3.5"),
        ],
    }
    api.forbidden = set()
    api.requests.clear()
    api.expire_continue = False


def token_credentials(api: ApiServer, tmp_path: Path) -> Credentials:
    """Credentials of a kubeconfig whose user holds the API server's token."""
    return from_kubeconfig(kubeconfig(tmp_path / "config", api, token=api.token))


def exec_user(script: Path, api_version: str = EXEC_V1BETA1) -> dict[str, Any]:
    """A kubeconfig user whose token comes from running ``script``, as EKS/GKE/AKS's do."""
    return {
        "apiVersion": api_version,
        "command": str(script),
        "args": ["token", "--cluster", "prod"],
        "env": [{"name": "CLOUD_PROFILE", "value": "audit"}],
        "interactiveMode": "Never",
        "provideClusterInfo": False,
    }
