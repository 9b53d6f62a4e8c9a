"""A cluster as the chart leaves it for registration, and registrations as the chart writes them.

Shared by the tests of webhook.kube.registration and webhook.serving.registrar: both write
into the same two empty webhook configurations, under the same ClusterRole.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.apistore import Store

GROUP = "admissionregistration.k8s.io"
VALIDATING = "validatingwebhookconfigurations"
MUTATING = "mutatingwebhookconfigurations"
SA_TOKEN = "trustgate-sa-token"


def hook(name: str, path: str, **extra: Any) -> dict[str, Any]:
    """A webhook as the chart renders it into registration.json (no caBundle)."""
    return {
        "name": name,
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "clientConfig": {
            "service": {"name": "trustgate", "namespace": "trustgate-system", "path": path}
        },
        "rules": [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"],
                "resources": ["pods"],
            }
        ],
        **extra,
    }


def document(**extra: Any) -> dict[str, Any]:
    return {
        "configurations": [
            {
                "kind": "ValidatingWebhookConfiguration",
                "name": "trustgate",
                "webhooks": [hook("validate.trustgate.dev", "/validate", **extra)],
            },
            {
                "kind": "MutatingWebhookConfiguration",
                "name": "trustgate-pin",
                "webhooks": [hook("pin.trustgate.dev", "/mutate")],
            },
        ]
    }


def shell(kind: str, name: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1", "kind": kind, "metadata": {"name": name}}


def prepare(store: Store) -> Store:
    """``store`` holding what Helm installs for registration: the two webhook configurations,
    empty, and the chart's ClusterRole (get and patch on them by name) bound to the pod's
    service account, whose token is ``SA_TOKEN``; calls and hooks forgotten."""
    store.objects.clear()
    store.applied.clear()
    store.on_write = None
    store.service_accounts = {SA_TOKEN: ("trustgate-system", "trustgate")}
    store.put(shell("ValidatingWebhookConfiguration", "trustgate"))
    store.put(shell("MutatingWebhookConfiguration", "trustgate-pin"))
    rules = [
        {"apiGroups": [GROUP], "resources": [plural], "resourceNames": [name],
         "verbs": ["get", "patch"]}
        for plural, name in ((VALIDATING, "trustgate"), (MUTATING, "trustgate-pin"))
    ]  # fmt: skip
    rbac = "rbac.authorization.k8s.io/v1"
    store.put({"apiVersion": rbac, "kind": "ClusterRole",
               "metadata": {"name": "trustgate-register"}, "rules": rules})  # fmt: skip
    store.put({
        "apiVersion": rbac, "kind": "ClusterRoleBinding",
        "metadata": {"name": "trustgate-register"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "trustgate-register"},
        "subjects": [{"kind": "ServiceAccount", "name": "trustgate",
                      "namespace": "trustgate-system"}],
    })  # fmt: skip
    store.calls.clear()
    return store


def write(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "registration.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path
