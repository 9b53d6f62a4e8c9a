"""Kubernetes objects and AdmissionReviews shaped as kube-apiserver sends them."""

from __future__ import annotations

import copy
import uuid
from typing import Any

# kind -> (group, version, resource)
RESOURCES: dict[str, tuple[str, str, str]] = {
    "Pod": ("", "v1", "pods"),
    "Deployment": ("apps", "v1", "deployments"),
    "ReplicaSet": ("apps", "v1", "replicasets"),
    "StatefulSet": ("apps", "v1", "statefulsets"),
    "DaemonSet": ("apps", "v1", "daemonsets"),
    "Job": ("batch", "v1", "jobs"),
    "CronJob": ("batch", "v1", "cronjobs"),
    "ReplicationController": ("", "v1", "replicationcontrollers"),
    "PodTemplate": ("", "v1", "podtemplates"),
    "DeploymentConfig": ("apps.openshift.io", "v1", "deploymentconfigs"),
}


def pod_spec(
    *images: str,
    init: tuple[str, ...] = (),
    ephemeral: tuple[str, ...] = (),
    volumes: tuple[str, ...] = (),
) -> dict:
    """A pod spec running ``images`` (and init / ephemeral containers, image volumes)."""
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": f"app-{i}",
                "image": image,
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
                "terminationMessagePath": "/dev/termination-log",
                "imagePullPolicy": "IfNotPresent",
            }
            for i, image in enumerate(images)
        ],
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
        "securityContext": {},
        "schedulerName": "default-scheduler",
    }
    if init:
        spec["initContainers"] = [
            {"name": f"init-{i}", "image": image} for i, image in enumerate(init)
        ]
    if ephemeral:
        spec["ephemeralContainers"] = [
            {"name": f"debug-{i}", "image": image, "targetContainerName": "app-0"}
            for i, image in enumerate(ephemeral)
        ]
    if volumes:
        spec["volumes"] = [{"name": "config", "configMap": {"name": "web", "defaultMode": 420}}]
        spec["volumes"] += [
            {"name": f"data-{i}", "image": {"reference": image, "pullPolicy": "IfNotPresent"}}
            for i, image in enumerate(volumes)
        ]
    return spec


def _template(spec: dict) -> dict:
    return {"metadata": {"labels": {"app": "web"}}, "spec": spec}


def workload(kind: str, spec: dict, *, name: str = "web", namespace: str = "prod-web") -> dict:
    """A ``kind`` object whose pod spec is ``spec``, as the API server decodes it."""
    group, version, _ = RESOURCES.get(kind, ("example.com", "v1", kind.lower() + "s"))
    api_version = f"{group}/{version}" if group else version
    metadata = {
        "name": name,
        "namespace": namespace,
        "uid": str(uuid.uuid4()),
        "creationTimestamp": None,
        "labels": {"app": "web"},
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
    }
    obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": metadata}
    selector = {"matchLabels": {"app": "web"}}
    if kind == "Pod":
        obj["spec"] = spec
        obj["status"] = {}
    elif kind == "PodTemplate":
        obj["template"] = _template(spec)
    elif kind == "CronJob":
        obj["spec"] = {
            "schedule": "*/5 * * * *",
            "jobTemplate": {"spec": {"template": _template(spec)}},
        }
    elif kind == "Job":
        obj["spec"] = {"backoffLimit": 6, "template": _template(spec)}
    elif kind in ("ReplicationController", "DeploymentConfig"):
        obj["spec"] = {"replicas": 1, "selector": {"app": "web"}, "template": _template(spec)}
    else:
        obj["spec"] = {"replicas": 2, "selector": selector, "template": _template(spec)}
    return obj


def review(
    obj: dict,
    *,
    operation: str = "CREATE",
    old: dict | None = None,
    sub_resource: str = "",
    dry_run: bool = False,
    uid: str | None = None,
) -> dict:
    """The AdmissionReview kube-apiserver posts for ``operation`` on ``obj``."""
    kind = obj["kind"]
    group, version, resource = RESOURCES.get(kind, ("example.com", "v1", kind.lower() + "s"))
    gvk = {"group": group, "version": version, "kind": kind}
    gvr = {"group": group, "version": version, "resource": resource}
    options_kind = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions"}.get(
        operation, "DeleteOptions"
    )
    request: dict[str, Any] = {
        "uid": uid or str(uuid.uuid4()),
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk,
        "requestResource": gvr,
        "name": obj["metadata"].get("name", ""),
        "namespace": obj["metadata"].get("namespace", ""),
        "operation": operation,
        "userInfo": {
            "username": "kubernetes-admin",
            "groups": ["system:masters", "system:authenticated"],
        },
        "object": None if operation == "DELETE" else copy.deepcopy(obj),
        "oldObject": copy.deepcopy(old if old is not None else obj)
        if operation in ("UPDATE", "DELETE")
        else None,
        "dryRun": dry_run,
        "options": {
            "apiVersion": "meta.k8s.io/v1",
            "kind": options_kind,
            "fieldManager": "kubectl-client-side-apply",
        },
    }
    if sub_resource:
        request["subResource"] = sub_resource
        request["requestSubResource"] = sub_resource
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


POLICY_TEMPLATE = """\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata:
  name: {name}
spec:
  mode: {mode}
  match:
    namespaces: {namespaces}
  registries: {registries}
"""


def policy_yaml(
    name: str = "production",
    *,
    mode: str = "enforce",
    namespaces: str = '["prod-*"]',
    registries: str = '["registry.redhat.io/**", "quay.io/acme/**"]',
    extra: str = "",
) -> str:
    """One ImagePolicy document; ``extra`` is appended under ``spec`` (indent 2)."""
    text = POLICY_TEMPLATE.format(
        name=name, mode=mode, namespaces=namespaces, registries=registries
    )
    return text + extra


BREAK_GLASS = "trustgate.dev/break-glass"


def pod_with(*images: str, namespace: str = "prod-web", break_glass: str | None = None) -> dict:
    """A Pod running ``images``, annotated for break-glass with ``break_glass`` when given."""
    obj = workload("Pod", pod_spec(*images), namespace=namespace)
    if break_glass is not None:
        obj["metadata"]["annotations"][BREAK_GLASS] = break_glass
    return obj


def as_user(body: dict, user: str, *groups: str) -> dict:
    """``body`` (an AdmissionReview) sent by ``user``, a member of ``groups``."""
    body["request"]["userInfo"] = {"username": user, "groups": [*groups, "system:authenticated"]}
    return body
