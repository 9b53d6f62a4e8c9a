"""Pull secrets, service accounts and the RBAC to read them, as a cluster holds them.

Objects are written as ``kubectl create secret docker-registry`` writes them
(base64 ``data``, the ``kubernetes.io/dockerconfigjson`` type, a
``last-applied-configuration`` annotation repeating the data), for the stand-in
API server of tests/support/apistore.py, and for the in-memory store the unit
tests of webhook.credentials.pullsecrets use.

``cluster_api`` is a module-scoped fixture: a test module takes it with
``api = cluster_api`` (pytest names a fixture after the module attribute).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.apistore import Store, start_store
from tests.support.registry import Registry

#: The bearer token of trustgate's own ServiceAccount in the stand-in.
READER_TOKEN = "trustgate-reader-token"
READER = ("trustgate-system", "trustgate")
_RBAC = "rbac.authorization.k8s.io/v1"
_RULES = [
    {
        "apiGroups": [""],
        "resources": ["secrets", "serviceaccounts"],
        "verbs": ["get", "list", "watch"],
    }
]


@pytest.fixture(scope="module")
def cluster_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """The stand-in API server, empty, where trustgate's ServiceAccount may read everywhere."""
    store = reset(start_store(tmp_path_factory.mktemp("pull-api")))
    grant_cluster(store)
    yield store
    store.stop()


def login(registry: Registry, *, wrong: bool = False) -> dict[str, tuple[str, str]]:
    """``registry``'s user and password (a wrong password with ``wrong``), for ``pull_secret``."""
    assert registry.username is not None and registry.password is not None
    password = "wrong-" + registry.password if wrong else registry.password
    return {registry.host: (registry.username, password)}


def auth(username: str, password: str) -> str:
    return base64.b64encode(f"{username}:{password}".encode()).decode()


def dockerconfigjson(auths: dict[str, tuple[str, str]]) -> str:
    """The base64 ``.dockerconfigjson`` data for ``{registry key: (user, password)}``."""
    document = {"auths": {key: {"auth": auth(u, p)} for key, (u, p) in auths.items()}}
    return base64.b64encode(json.dumps(document).encode()).decode()


def pull_secret(
    namespace: str,
    name: str,
    auths: dict[str, tuple[str, str]] | None = None,
    *,
    secret_type: str = "kubernetes.io/dockerconfigjson",
    data: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Secret as ``kubectl create secret docker-registry`` (then ``apply``) leaves it."""
    if data is None:
        if secret_type == "kubernetes.io/dockercfg":
            entries = {k: {"auth": auth(u, p)} for k, (u, p) in (auths or {}).items()}
            data = {".dockercfg": base64.b64encode(json.dumps(entries).encode()).decode()}
        else:
            data = {".dockerconfigjson": dockerconfigjson(auths or {})}
    applied = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": secret_type,
        "data": data,
        "metadata": {"name": name, "namespace": namespace},
    }
    annotation = "kubectl.kubernetes.io/last-applied-configuration"
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {annotation: json.dumps(applied)},
        },
        "type": secret_type,
        "data": data,
    }


def service_account(namespace: str, name: str, *secrets: str) -> dict[str, Any]:
    """A ServiceAccount whose ``imagePullSecrets`` name ``secrets``."""
    account: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace},
    }
    if secrets:
        account["imagePullSecrets"] = [{"name": secret} for secret in secrets]
    return account


def grant_namespaces(store: Store, *namespaces: str) -> None:
    """trustgate's ServiceAccount may get, list and watch Secrets and ServiceAccounts in
    ``namespaces`` (a Role and RoleBinding in each, as the chart renders them)."""
    store.service_accounts[READER_TOKEN] = READER
    subject = {"kind": "ServiceAccount", "name": READER[1], "namespace": READER[0]}
    for namespace in namespaces:
        metadata = {"name": "trustgate-pull-secrets", "namespace": namespace}
        store.put({"apiVersion": _RBAC, "kind": "Role", "metadata": metadata, "rules": _RULES})
        ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": metadata["name"]}
        store.put(
            {
                "apiVersion": _RBAC,
                "kind": "RoleBinding",
                "metadata": metadata,
                "roleRef": ref,
                "subjects": [subject],
            }
        )


def grant_cluster(store: Store) -> None:
    """trustgate's ServiceAccount may read Secrets and ServiceAccounts everywhere."""
    store.service_accounts[READER_TOKEN] = READER
    subject = {"kind": "ServiceAccount", "name": READER[1], "namespace": READER[0]}
    name = "trustgate-pull-secrets"
    store.put(
        {"apiVersion": _RBAC, "kind": "ClusterRole", "metadata": {"name": name}, "rules": _RULES}
    )
    ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}
    store.put(
        {
            "apiVersion": _RBAC,
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": ref,
            "subjects": [subject],
        }
    )


def reset(store: Store) -> Store:
    """``store`` empty, live watches on, bookmarks each 0.2 s, nothing hanging or dripping."""
    with store.lock:
        store.objects.clear()
        store.applied.clear()
        store.events.clear()
        store.calls.clear()
        store.compacted = 0
    store.service_accounts.clear()
    store.live_watch = True
    store.bookmark_seconds = 0.2
    store.hanging.clear()
    store.drip = 0.0
    return store


def kubeconfig(store: Store, directory: Path, token: str = READER_TOKEN) -> Path:
    return store.kubeconfig(directory / f"kubeconfig-{token}", token)
