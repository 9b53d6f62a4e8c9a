"""webhook.kube.workloads: what ``audit --cluster`` judges, listed from a stand-in API server."""

from __future__ import annotations

from pathlib import Path

from tests.support.kubeapi import ApiServer
from tests.support.kubecluster import token_credentials
from webhook.kube.client import KubeClient
from webhook.kube.workloads import cluster_workloads


def test_one_namespace(api: ApiServer, tmp_path: Path) -> None:
    with KubeClient(token_credentials(api, tmp_path)) as client:
        manifests = list(cluster_workloads(client, namespace="prod-data"))
    assert [(m.object["kind"], m.object["metadata"]["name"]) for m in manifests] == [
        ("StatefulSet", "db")
    ]
    assert {r.path for r in api.requests} >= {
        "/apis/apps/v1/namespaces/prod-data/deployments",
        "/apis/batch/v1/namespaces/prod-data/cronjobs",
        "/api/v1/namespaces/prod-data/pods",
    }


def test_owned_objects_are_judged_through_their_owner(api: ApiServer, tmp_path: Path) -> None:
    lines: list[str] = []
    with KubeClient(token_credentials(api, tmp_path), page_size=2) as client:
        manifests = list(
            cluster_workloads(
                client, exclude_namespaces=frozenset({"kube-system"}), progress=lines.append
            )
        )
    names = [(m.object["kind"], m.object["metadata"]["name"]) for m in manifests]
    assert names == [
        ("Deployment", "api"),
        ("Deployment", "legacy"),
        ("StatefulSet", "db"),
        ("CronJob", "report"),
        ("Pod", "debug"),
        ("Pod", "rollout-1"),  # its controller is not a kind the audit lists
    ]
    assert "pods: 2 judged, 6 owned by another workload or excluded" in lines
    assert "deployments: 2 judged" in lines
