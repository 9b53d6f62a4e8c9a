"""The chart installs its webhook configurations empty; its pods fill them in once ready.

Rendered, installed, upgraded, rolled back and uninstalled by the real Helm
(helm-python-sdk: Helm 4's Go SDK in-process) against the stand-in API server of
tests/support/apistore.py; the pods' part is ``webhook.kube.registration`` run with the
pod's service account, authorized by the ClusterRole the chart installed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

from tests.chart.test_chart import (
    CASES,
    CHART,
    NAMESPACE,
    RELEASE,
    WORKLOAD_RULES,
    mounts_cover,
    one,
    registration,
    render,
    values_for,
    webhooks,
)
from tests.support.apistore import Call, Store, start_store
from tests.support.registration import GROUP, MUTATING, VALIDATING
from webhook.cli.main import build_parser
from webhook.core import certs
from webhook.core.errors import KubeError
from webhook.kube.client import KubeClient
from webhook.kube.credentials import from_kubeconfig
from webhook.kube.registration import Registration, load_registration, register

KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
POD_TOKEN = "pod-service-account-token"
TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory: pytest.TempPathFactory) -> str:
    paths = certs.generate(tmp_path_factory.mktemp("ca"), service="x", namespace="y")
    return paths.ca.read_text()


@pytest.fixture(scope="module", params=sorted(CASES))
def rendered(request: pytest.FixtureRequest, ca_pem: str) -> tuple[str, list[dict]]:
    return request.param, render(values_for(request.param, ca_pem))


def trustgate_container(objects: list[dict]) -> dict:
    spec = one(objects, "Deployment")["spec"]["template"]["spec"]
    container: dict = next(c for c in spec["containers"] if c["name"] == "trustgate")
    return container


# --- what Helm installs ------------------------------------------------------------


def test_helm_installs_the_webhook_configurations_without_webhooks(
    rendered: tuple[str, list[dict]],
) -> None:
    """Not even an empty list: Helm then owns no part of the field the pods write."""
    name, objects = rendered
    shells = [o for o in objects if o["kind"] in KINDS]
    assert len(shells) == (1 if name == "no-pinning" else 2)
    for shell in shells:
        assert set(shell) == {"apiVersion", "kind", "metadata"}
    # Everything the pods write goes into these objects, and nothing else.
    names = {(o["kind"], o["metadata"]["name"]) for o in shells}
    assert {(c["kind"], c["name"]) for c in registration(objects)["configurations"]} == names


def test_the_pods_may_get_and_patch_the_two_configurations_by_name_and_nothing_else(
    rendered: tuple[str, list[dict]],
) -> None:
    _, objects = rendered
    role = one(objects, "ClusterRole", f"{RELEASE}-register")
    granted = set()
    for rule in role["rules"]:
        assert rule["apiGroups"] == ["admissionregistration.k8s.io"]
        assert rule["verbs"] == ["get", "patch"]  # no create, update, delete, list or watch
        (resource,) = rule["resources"]
        (name,) = rule["resourceNames"]
        granted.add((resource, name))
    plural = {
        "ValidatingWebhookConfiguration": VALIDATING,
        "MutatingWebhookConfiguration": MUTATING,
    }
    assert granted == {
        (plural[c["kind"]], c["name"]) for c in registration(objects)["configurations"]
    }
    binding = one(objects, "ClusterRoleBinding", f"{RELEASE}-register")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    account = one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
    ]


def test_the_server_registers_the_mounted_file_with_a_token_only_it_holds(
    rendered: tuple[str, list[dict]],
) -> None:
    name, objects = rendered
    spec = one(objects, "Deployment")["spec"]["template"]["spec"]
    server = trustgate_container(objects)
    args = build_parser({}).parse_args(server["args"])
    assert mounts_cover(server, str(args.register))
    mount = next(m for m in server["volumeMounts"] if str(args.register).startswith(m["mountPath"]))
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == f"{RELEASE}-registration"
    assert args.register.name in one(objects, "ConfigMap", f"{RELEASE}-registration")["data"]
    if name != "existing-secret":
        # No caBundle in the file: the pod takes ca.crt beside its certificate.
        assert mounts_cover(server, str(args.cert.parent / "ca.crt"))
        assert all("caBundle" not in hook["clientConfig"] for _, hook in webhooks(objects))
    # The API token: projected into this one container, never into git-sync.
    assert spec["automountServiceAccountToken"] is False
    token = next(m for m in server["volumeMounts"] if m["mountPath"] == TOKEN_PATH)
    assert token["readOnly"] is True
    sources = next(v for v in spec["volumes"] if v["name"] == token["name"])["projected"]
    assert {next(iter(s)) for s in sources["sources"]} == {
        "serviceAccountToken",
        "configMap",
        "downwardAPI",
    }
    for other in spec.get("initContainers", []) + spec["containers"]:
        if other is not server:
            assert not mounts_cover(other, TOKEN_PATH)


@pytest.mark.parametrize(
    ("judge", "resources"),
    [
        (None, WORKLOAD_RULES),
        ("workloads", WORKLOAD_RULES),
        ("pods", {("", "pods"), ("", "pods/ephemeralcontainers")}),
    ],
)
def test_judge_selects_the_resources_sent(
    judge: str | None, resources: set[tuple[str, str]]
) -> None:
    values = {"webhook": {"judge": judge}} if judge else None
    found = webhooks(render(values))
    assert len(found) == 2
    for _, hook in found:
        covered = {(g, r) for rule in hook["rules"] for g in rule["apiGroups"]
                   for r in rule["resources"]}  # fmt: skip
        assert covered == resources


def test_judge_refuses_anything_else() -> None:
    with pytest.raises(helm.HelmValuesError, match="/webhook/judge"):
        render({"webhook": {"judge": "deployments"}})


# --- install, upgrade, rollback, uninstall -------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    running = start_store(tmp_path)
    running.service_accounts[POD_TOKEN] = (NAMESPACE, RELEASE)
    yield running
    running.stop()


def mounted_registration(store: Store, tmp: Path, rename: str | None = None) -> Registration:
    """registration.json and ca.crt as the pod sees them (the validating configuration
    renamed to ``rename``, if given)."""
    config_map = store.get("", "configmaps", f"{RELEASE}-registration", NAMESPACE)
    document = json.loads(config_map["data"]["registration.json"])
    if rename:
        document["configurations"][0]["name"] = rename
    secret = store.get("", "secrets", f"{RELEASE}-tls", NAMESPACE)
    (tmp / "registration.json").write_text(json.dumps(document))
    (tmp / "ca.crt").write_bytes(base64.b64decode(secret["data"]["ca.crt"]))
    return load_registration(tmp / "registration.json", tmp / "ca.crt")


def pod_registers(store: Store, tmp: Path, what: Registration) -> list[str]:
    """What a ready pod does: register, as its own service account."""
    credentials = from_kubeconfig(store.kubeconfig(tmp / "kubeconfig", POD_TOKEN))
    with KubeClient(credentials, timeout=5) as client:
        return register(client, what)


def helm_writes(calls: list[Call]) -> list[tuple[str, str, Any]]:
    """(method, kind or plural, body) of each write Helm made, in order."""
    return [
        (c.method, c.body.get("kind", "") if isinstance(c.body, dict) else c.path, c.body)
        for c in calls
        if c.user == "admin" and c.method != "GET"
    ]


def registered_webhooks(store: Store) -> dict[str, list[dict[str, Any]]]:
    found = {}
    for plural, name in ((VALIDATING, RELEASE), (MUTATING, f"{RELEASE}-pin")):
        found[name] = store.get(GROUP, plural, name).get("webhooks", [])
    return found


def test_install_upgrade_rollback_and_uninstall_around_what_the_pods_register(
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

    # Install: the preflight Job, then Secret and ConfigMaps, RBAC, the Deployment; the
    # webhook configurations last, with no webhooks: nothing is enforced yet.
    config.install(chart, RELEASE, None, namespace=NAMESPACE, timeout=60)
    order = [kind for _, kind, _ in helm_writes(store.calls)]
    assert order.index("Job") < order.index("Secret")
    assert order.index("Deployment") < order.index("MutatingWebhookConfiguration")
    assert order.index("Deployment") < order.index("ValidatingWebhookConfiguration")
    for kind in ("Secret", "ConfigMap", "ClusterRole", "ClusterRoleBinding", "ServiceAccount"):
        assert order.index(kind) < order.index("Deployment")
    assert registered_webhooks(store) == {RELEASE: [], f"{RELEASE}-pin": []}

    # A pod is ready: it registers, as its service account.
    assert len(pod_registers(store, tmp_path, mounted_registration(store, tmp_path))) == 2
    installed = registered_webhooks(store)
    assert [w["name"] for w in installed[RELEASE]] == ["validate.trustgate.dev"]
    ca = store.get("", "secrets", f"{RELEASE}-tls", NAMESPACE)["data"]["ca.crt"]
    assert installed[RELEASE][0]["clientConfig"]["caBundle"] == ca

    # Upgrade and rollback apply the configurations again, never their webhooks.
    store.calls.clear()
    config.upgrade(chart, RELEASE, {"webhook": {"judge": "pods"}}, namespace=NAMESPACE, timeout=60)
    config.rollback(RELEASE, version=1, timeout=60)
    applied = [body for _, kind, body in helm_writes(store.calls) if kind in KINDS]
    assert len(applied) == 4
    assert all("webhooks" not in body for body in applied)
    assert registered_webhooks(store) == installed

    # The pods read the upgraded registration.json: Pods only, after the upgrade.
    config.upgrade(chart, RELEASE, {"webhook": {"judge": "pods"}}, namespace=NAMESPACE, timeout=60)
    now = mounted_registration(store, tmp_path)
    assert pod_registers(store, tmp_path, now) == [
        f"ValidatingWebhookConfiguration {RELEASE}",
        f"MutatingWebhookConfiguration {RELEASE}-pin",
    ]
    (hook,) = registered_webhooks(store)[RELEASE]
    assert [rule["resources"] for rule in hook["rules"]] == [["pods", "pods/ephemeralcontainers"]]

    # The pods' role reaches no other webhook configuration.
    store.put({"apiVersion": f"{GROUP}/v1", "kind": "ValidatingWebhookConfiguration",
               "metadata": {"name": "another-admission-controller"}})  # fmt: skip
    elsewhere = mounted_registration(store, tmp_path, rename="another-admission-controller")
    with pytest.raises(KubeError, match=r"forbidden: User .* cannot get"):
        pod_registers(store, tmp_path, elsewhere)
    assert "webhooks" not in store.get(GROUP, VALIDATING, "another-admission-controller")

    # Uninstall deletes both configurations, with what the pods wrote into them, first;
    # a pod still running can neither write nor recreate them.
    store.calls.clear()
    config.uninstall(RELEASE, timeout=60)
    deleted = [c.path.rsplit("/", 1)[-1] for c in store.calls if c.method == "DELETE"]
    assert deleted[:2] == [RELEASE, f"{RELEASE}-pin"]
    assert {k[3] for k in store.objects} == {"another-admission-controller"}
    store.calls.clear()
    with pytest.raises(KubeError):
        pod_registers(store, tmp_path, now)
    assert [c.method for c in store.calls] == ["GET", "GET"]
    assert {k[3] for k in store.objects} == {"another-admission-controller"}
