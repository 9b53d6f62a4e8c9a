"""The ConfigMap that keeps the highest signed policy-set version, and the one Role to write it.

Rendered, installed, upgraded, rolled back, uninstalled and installed again by the real
Helm (helm-python-sdk: Helm 4's Go SDK in-process) against the stand-in API server of
tests/support/apistore.py; the pods' part is ``webhook.kube.policymark`` run with the
pod's service account, authorized by the Role the chart installed. What the pods write
into the ConfigMap must survive every Helm operation, or a replay would load after an
upgrade.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from tests.chart.test_chart import CHART, NAMESPACE, RELEASE, one, render
from tests.support.apistore import Store, start_store
from tests.support.policysigning import public_pem
from webhook.config.loader import parse_config
from webhook.core.errors import KubeError
from webhook.kube.credentials import from_kubeconfig
from webhook.kube.policymark import ConfigMapMark

POD_TOKEN = "pod-service-account-token"
MARK = f"{RELEASE}-policy-version"
DIGEST = "sha256:" + "ab" * 32
KEY = public_pem(ec.generate_private_key(ec.SECP256R1())).decode()


def signed(**signature: Any) -> dict[str, Any]:
    """Values that switch signed policy sets on, with ``signature`` added."""
    authorities = [{"name": "policy-team", "key": {"pem": KEY}}]
    wanted = {"required": True, "authorities": authorities, **signature}
    return {"config": {"policies": {"signature": wanted}}}


def config_file(objects: list[dict]) -> dict[str, Any]:
    text = one(objects, "ConfigMap", f"{RELEASE}-config")["data"]["trustgate.yaml"]
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def marks(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["metadata"]["name"].endswith("-policy-version")]


def test_without_signatures_nothing_is_rendered() -> None:
    objects = render()
    assert marks(objects) == []
    assert "signature" not in config_file(objects)["policies"]


def test_signatures_keep_their_mark_in_a_config_map_by_default() -> None:
    objects = render(signed())
    rollback = config_file(objects)["policies"]["signature"]["rollback"]
    assert rollback == {"configMap": {"name": MARK}}
    # The file the pods load names the ConfigMap the chart renders.
    config = parse_config(config_file(objects))
    assert config.policy_signature is not None
    assert config.policy_signature.rollback is not None
    assert config.policy_signature.rollback.config_map == MARK
    assert config.policy_signature.rollback.namespace is None  # the pod's own

    config_map = one(objects, "ConfigMap", MARK)
    assert config_map["metadata"]["namespace"] == NAMESPACE
    # No data: Helm owns no field the pods write.
    assert set(config_map) == {"apiVersion", "kind", "metadata"}
    assert config_map["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    for obj in marks(objects):
        kubernetes_validate.validate(obj, "1.30", strict=True)


def test_the_pods_may_get_update_and_patch_that_one_config_map_and_nothing_else() -> None:
    objects = render(signed())
    role = one(objects, "Role", MARK)
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [MARK],
            "verbs": ["get", "update", "patch"],  # no create, delete, list or watch
        }
    ]
    binding = one(objects, "RoleBinding", MARK)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": MARK,
    }
    account = one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
    ]
    # The pods' other grants are unchanged: one ClusterRole, to register their webhooks.
    granted = {o["metadata"]["name"] for o in objects if o["kind"] in ("Role", "ClusterRole")}
    assert granted == {MARK, f"{RELEASE}-register"}


def test_a_config_map_in_another_namespace_gets_its_role_there() -> None:
    objects = render(signed(rollback={"configMap": {"name": "mark", "namespace": "keep"}}))
    assert config_file(objects)["policies"]["signature"]["rollback"] == {
        "configMap": {"name": "mark", "namespace": "keep"}
    }
    assert one(objects, "ConfigMap", "mark")["metadata"]["namespace"] == "keep"
    role = one(objects, "Role", MARK)
    assert role["metadata"]["namespace"] == "keep"
    assert role["rules"][0]["resourceNames"] == ["mark"]
    binding = one(objects, "RoleBinding", MARK)
    assert binding["metadata"]["namespace"] == "keep"
    assert binding["subjects"][0]["namespace"] == NAMESPACE


def test_a_file_mark_renders_no_config_map_and_no_role(tmp_path: Path) -> None:
    objects = render(signed(rollback={"file": "/var/lib/trustgate/mark.json"}))
    assert marks(objects) == []
    rollback = config_file(objects)["policies"]["signature"]["rollback"]
    assert rollback == {"file": "/var/lib/trustgate/mark.json"}


def test_lint_strict_is_clean_with_signatures() -> None:
    report = helm.lint(CHART, signed(), strict=True, namespace=NAMESPACE, kube_version="v1.30.0")
    assert report["errors"] == []
    assert report["messages"] == []


# --- install, upgrade, rollback, uninstall, install again ---------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    running = start_store(tmp_path)
    running.service_accounts[POD_TOKEN] = (NAMESPACE, RELEASE)
    yield running
    running.stop()


def pod_mark(store: Store, tmp: Path, name: str = MARK) -> ConfigMapMark:
    """The mark as a pod reaches it: its service account, its namespace."""
    credentials = from_kubeconfig(store.kubeconfig(tmp / "kubeconfig", POD_TOKEN))
    return ConfigMapMark(credentials, name, NAMESPACE, timeout=5)


def live_data(store: Store) -> dict[str, str]:
    found: dict[str, str] = store.get("", "configmaps", MARK, NAMESPACE).get("data", {})
    return found


def test_what_the_pods_write_survives_upgrade_rollback_and_uninstall(
    store: Store, tmp_path: Path
) -> None:
    config = helm.Config(
        kube_apiserver=store.url,
        kube_token="admin",
        kube_ca_file=str(store.ca),
        namespace=NAMESPACE,
        storage_driver="memory",
    )
    chart = helm.Chart.load(CHART)
    config.install(chart, RELEASE, signed(), namespace=NAMESPACE, timeout=60)
    assert live_data(store) == {}
    mark = pod_mark(store, tmp_path)
    assert mark.read() is None

    # A pod loads version 7; Helm then upgrades (other values), rolls back, upgrades again.
    mark.advance(7, DIGEST)
    written = live_data(store)
    assert written["version"] == "7"
    helm_writes = []
    for step in ("upgrade", "rollback", "upgrade-again"):
        store.calls.clear()
        if step == "rollback":
            config.rollback(RELEASE, version=1, timeout=60)
        else:
            values = signed(minimumVersion=2)
            values["config"]["policies"]["reloadIntervalSeconds"] = 7
            config.upgrade(chart, RELEASE, values, namespace=NAMESPACE, timeout=60)
        helm_writes += [
            c for c in store.calls if c.user == "admin" and c.path.endswith(f"/configmaps/{MARK}")
        ]
        assert live_data(store) == written, step
        assert mark.read() is not None
    # Helm did write the ConfigMap (labels, annotation), never its data.
    # Helm 4 writes by server-side apply: an apply removes only fields its manager applied
    # before, and Helm never applied data (the pods wrote it, as another manager).
    applies = [c for c in helm_writes if c.method != "GET"]
    assert {c.content_type for c in applies} == {"application/apply-patch+yaml"}
    assert len(applies) == 3
    assert all("data" not in c.body for c in applies)
    managers = store.get("", "configmaps", MARK, NAMESPACE)["metadata"]["managedFields"]
    data_owners = [m["manager"] for m in managers if "f:data" in m["fieldsV1"]]
    assert data_owners == ["trustgate"]

    # The mark goes on advancing under the upgraded release.
    mark.advance(8, DIGEST)
    assert live_data(store)["version"] == "8"

    # Uninstall keeps it (resource-policy keep), data and all; the Role goes, so a pod
    # left running can no longer write it.
    config.uninstall(RELEASE, timeout=60)
    assert live_data(store)["version"] == "8"
    assert ("rbac.authorization.k8s.io", "roles", NAMESPACE, MARK) not in store.objects
    with pytest.raises(KubeError, match="forbidden"):
        mark.read()

    # Installing again adopts the kept ConfigMap and its mark: no replay after a reinstall.
    config.install(chart, RELEASE, signed(), namespace=NAMESPACE, timeout=60)
    assert live_data(store)["version"] == "8"
    assert pod_mark(store, tmp_path).read() is not None
    mark.close()
