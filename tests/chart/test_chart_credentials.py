"""The chart's side of registry credentials, rendered by a real Helm.

``config.credentials`` (trustgate.yaml) decides the RBAC: pull secrets off grant nothing
on Secrets; listed namespaces get a Role each; every namespace takes a ClusterRole and an
explicit ``rbac.readSecretsClusterWide``. Grants are checked two ways: object by object,
and by asking the rendered RBAC who may do what, as the API server's RBAC authorizer
would (``allowed``). Cloud identity values (annotations, pod labels) and the kubelet
credential-provider mounts land on the webhook's pods and on the audit job's.
"""

from __future__ import annotations

from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from tests.chart.test_chart import CHART, KUBERNETES, NAMESPACE, RELEASE, one, render
from tests.support.docblocks import REPO, blocks
from webhook.config import parse_config

WEBHOOK = (NAMESPACE, RELEASE)
AUDIT = (NAMESPACE, f"{RELEASE}-audit")
READ = ["get", "list", "watch"]
RULES = [{"apiGroups": [""], "resources": ["secrets", "serviceaccounts"], "verbs": READ}]
#: Namespaces asked about; None is a cluster-wide request (list or watch across namespaces).
WHERE: list[str | None] = ["team-a", "team-b", "other", NAMESPACE, "kube-system", None]
VERBS = ["get", "list", "watch", "create", "update", "patch", "delete"]
CRDS = {"Certificate", "Issuer", "ServiceMonitor", "PrometheusRule"}


def credentials(**fields: Any) -> dict[str, Any]:
    return {"config": {"credentials": fields}}


def allowed(
    objects: list[dict], subject: tuple[str, str], verb: str, resource: str, ns: str | None
) -> bool:
    """Whether ServiceAccount ``subject`` (namespace, name) may ``verb`` any object of the core
    ``resource`` in ``ns`` (None: across all namespaces) under the rendered RBAC alone."""
    roles = {
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
        for o in objects
        if o["kind"] in ("Role", "ClusterRole")
    }
    for binding in objects:
        if binding["kind"] == "RoleBinding":
            if binding["metadata"]["namespace"] != ns:
                continue
        elif binding["kind"] != "ClusterRoleBinding":
            continue
        subjects = {
            (s.get("namespace"), s["name"])
            for s in binding.get("subjects", [])
            if s["kind"] == "ServiceAccount"
        }
        if subject not in subjects:
            continue
        ref = binding["roleRef"]
        where = binding["metadata"]["namespace"] if ref["kind"] == "Role" else None
        role = roles.get((ref["kind"], where, ref["name"]))
        for rule in role["rules"] if role else ():
            if (
                not rule.get("resourceNames")
                and set(rule.get("apiGroups", ())) & {"", "*"}
                and set(rule.get("resources", ())) & {resource, "*"}
                and set(rule.get("verbs", ())) & {verb, "*"}
            ):
                return True
    return False


def readable(objects: list[dict], subject: tuple[str, str]) -> set[str | None]:
    """Where ``subject`` may get, list and watch both Secrets and ServiceAccounts."""
    return {
        ns
        for ns in WHERE
        if all(
            allowed(objects, subject, verb, resource, ns)
            for verb in READ
            for resource in ("secrets", "serviceaccounts")
        )
    }


def pull_secret_rbac(objects: list[dict]) -> list[dict]:
    return [o for o in objects if "pull-secrets" in o["metadata"]["name"]]


def secret_rules(objects: list[dict]) -> list[dict]:
    return [
        rule
        for o in objects
        if o["kind"] in ("Role", "ClusterRole")
        for rule in o["rules"]
        if set(rule.get("resources", ())) & {"secrets", "*"}
    ]


# --- pull secrets off: nothing on Secrets ---------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"auditJob": {"enabled": True, "output": "policyreport"}},
        {"registryCredentials": {"secrets": ["quay"]}, "auditJob": {"enabled": True}},
        {**credentials(pullSecrets=False), "rbac": {"readSecretsClusterWide": True}},
        credentials(pullSecrets=True, namespaces=[]),
    ],
    ids=["default", "audit-reports", "mounted-secrets", "opt-in-alone", "no-namespace"],
)
def test_no_secret_permission_unless_pull_secrets_are_on(values: dict[str, Any]) -> None:
    objects = render(values)
    assert secret_rules(objects) == []
    assert pull_secret_rbac(objects) == []
    for subject in (WEBHOOK, AUDIT):
        for ns in WHERE:
            assert not any(allowed(objects, subject, v, "secrets", ns) for v in VERBS)


# --- listed namespaces: a Role in each --------------------------------------------------------


def test_listed_namespaces_get_a_role_and_binding_each_and_nothing_cluster_wide() -> None:
    objects = render(credentials(pullSecrets=True, namespaces=["team-a", "team-b"]))
    rbac = pull_secret_rbac(objects)
    assert sorted((o["kind"], o["metadata"]["namespace"]) for o in rbac) == [
        ("Role", "team-a"),
        ("Role", "team-b"),
        ("RoleBinding", "team-a"),
        ("RoleBinding", "team-b"),
    ]
    for ns in ("team-a", "team-b"):
        role = one([o for o in rbac if o["metadata"]["namespace"] == ns], "Role")
        assert role["metadata"]["name"] == f"{RELEASE}-pull-secrets"
        assert role["rules"] == RULES
        binding = one([o for o in rbac if o["metadata"]["namespace"] == ns], "RoleBinding")
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": f"{RELEASE}-pull-secrets",
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}
        ]
    assert not any(o["kind"].startswith("Cluster") for o in rbac)
    assert secret_rules([o for o in objects if o["kind"] == "ClusterRole"]) == []
    assert readable(objects, WEBHOOK) == {"team-a", "team-b"}
    # Read only: never a change to anyone's Secret.
    for ns in WHERE:
        for verb in ("create", "update", "patch", "delete"):
            assert not allowed(objects, WEBHOOK, verb, "secrets", ns)


@pytest.mark.parametrize(
    ("audit_namespace", "where"),
    [("", {"team-a", "team-b"}), ("team-b", {"team-b"}), ("other", set())],
)
def test_the_audit_job_reads_pull_secrets_where_it_audits(
    audit_namespace: str, where: set[str]
) -> None:
    values = {
        **credentials(pullSecrets=True, namespaces=["team-a", "team-b"]),
        "auditJob": {"enabled": True, "namespace": audit_namespace},
    }
    objects = render(values)
    assert readable(objects, AUDIT) == where
    assert readable(objects, WEBHOOK) == {"team-a", "team-b"}
    # One Role per namespace serves both accounts.
    assert len([o for o in pull_secret_rbac(objects) if o["kind"] == "Role"]) == 2


# --- every namespace: a ClusterRole, only when asked for in writing --------------------------


@pytest.mark.parametrize("audit", [False, True])
def test_cluster_wide_read_is_refused_without_the_opt_in(audit: bool) -> None:
    values = {**credentials(pullSecrets=True), "auditJob": {"enabled": audit}}
    with pytest.raises(helm.HelmRenderError) as refused:
        render(values)
    message = str(refused.value)
    assert "would read every Secret in the cluster" in message
    assert "anyone who takes over a trustgate pod" in message
    # Both ways out, by their names.
    assert "config.credentials.namespaces: [team-a, team-b]" in message
    assert "rbac.readSecretsClusterWide: true" in message


def test_cluster_wide_read_with_the_opt_in() -> None:
    values = {
        **credentials(pullSecrets=True),
        "rbac": {"readSecretsClusterWide": True},
        "auditJob": {"enabled": True},
    }
    objects = render(values)
    rbac = pull_secret_rbac(objects)
    assert sorted(o["kind"] for o in rbac) == ["ClusterRole", "ClusterRoleBinding"]
    assert one(objects, "ClusterRole", f"{RELEASE}-pull-secrets")["rules"] == RULES
    binding = one(objects, "ClusterRoleBinding", f"{RELEASE}-pull-secrets")
    assert binding["roleRef"]["kind"] == "ClusterRole"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE},
        {"kind": "ServiceAccount", "name": f"{RELEASE}-audit", "namespace": NAMESPACE},
    ]
    assert readable(objects, WEBHOOK) == set(WHERE)
    assert readable(objects, AUDIT) == set(WHERE)


def test_cluster_wide_read_gives_a_one_namespace_audit_that_namespace_only() -> None:
    values = {
        **credentials(pullSecrets=True),
        "rbac": {"readSecretsClusterWide": True},
        "auditJob": {"enabled": True, "namespace": "team-b"},
    }
    objects = render(values)
    binding = one(objects, "ClusterRoleBinding", f"{RELEASE}-pull-secrets")
    assert [s["name"] for s in binding["subjects"]] == [RELEASE]
    audit = one(objects, "RoleBinding", f"{RELEASE}-audit-pull-secrets")
    assert audit["metadata"]["namespace"] == "team-b"
    assert audit["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": f"{RELEASE}-pull-secrets",
    }
    assert readable(objects, AUDIT) == {"team-b"}
    assert readable(objects, WEBHOOK) == set(WHERE)


def test_the_opt_in_with_listed_namespaces_is_refused_as_ambiguous() -> None:
    values = {
        **credentials(pullSecrets=True, namespaces=["team-a"]),
        "rbac": {"readSecretsClusterWide": True},
    }
    with pytest.raises(helm.HelmRenderError, match="keep one of the two"):
        render(values)


def test_the_binding_names_the_account_the_pods_run_as() -> None:
    values = {
        **credentials(pullSecrets=True, namespaces=["team-a"]),
        "serviceAccount": {"create": False, "name": "platform-trustgate"},
    }
    objects = render(values, namespace="security")
    subject = ("security", "platform-trustgate")
    assert readable(objects, subject) == {"team-a"}
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "platform-trustgate"


def test_the_server_reads_the_rendered_credentials_as_given() -> None:
    values = credentials(
        pullSecrets=True,
        namespaces=["team-a", "team-b"],
        providers=[{"type": "ecr"}, {"type": "gcp", "registries": ["europe-docker.pkg.dev"]}],
    )
    rendered = one(render(values), "ConfigMap", f"{RELEASE}-config")["data"]["trustgate.yaml"]
    config = parse_config(yaml.safe_load(rendered))
    assert config.credentials.pull_secrets is True
    assert config.credentials.namespaces == ("team-a", "team-b")
    assert [p.type for p in config.credentials.providers] == ["ecr", "gcp"]


# --- cloud identities: annotations and labels --------------------------------------------------

IDENTITY = {
    "eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/trustgate",
    "iam.gke.io/gcp-service-account": "trustgate@acme.iam.gserviceaccount.com",
    "azure.workload.identity/client-id": "00000000-0000-0000-0000-000000000001",
}


def test_identity_annotations_and_pod_labels_reach_both_accounts_and_pods() -> None:
    values = {
        "serviceAccount": {"annotations": IDENTITY},
        "podLabels": {"azure.workload.identity/use": "true"},
        "auditJob": {"enabled": True},
    }
    objects = render(values)
    webhook_sa = one(objects, "ServiceAccount", RELEASE)
    audit_sa = one(objects, "ServiceAccount", f"{RELEASE}-audit")
    assert webhook_sa["metadata"]["annotations"] == IDENTITY
    assert audit_sa["metadata"]["annotations"] == IDENTITY
    assert webhook_sa["automountServiceAccountToken"] is False

    deployment = one(objects, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["azure.workload.identity/use"] == "true"
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()

    cron = one(objects, "CronJob")
    audit_labels = cron["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert audit_labels["azure.workload.identity/use"] == "true"
    # Still not the webhook's pods: the Service does not send reviews to the audit pod.
    service = one(objects, "Service", RELEASE)
    assert not service["spec"]["selector"].items() <= audit_labels.items()


def test_no_identity_values_no_annotations() -> None:
    objects = render({"auditJob": {"enabled": True}})
    for name in (RELEASE, f"{RELEASE}-audit"):
        assert "annotations" not in one(objects, "ServiceAccount", name)["metadata"]


# --- kubelet credential-provider plug-ins ----------------------------------------------------

PROVIDER_CONFIG = {
    "apiVersion": "kubelet.config.k8s.io/v1",
    "kind": "CredentialProviderConfig",
    "providers": [
        {
            "name": "ecr-credential-provider",
            "matchImages": ["*.dkr.ecr.*.amazonaws.com"],
            "defaultCacheDuration": "12h",
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        }
    ],
}
PLUGINS = {"config": "/etc/trustgate/credential-providers/config.yaml", "binDir": "/opt/bin"}
HOST_BINARIES = {"hostPath": {"path": "/etc/eks/image-credential-provider", "type": "Directory"}}


def plugin_values(**mounts: Any) -> dict[str, Any]:
    return {
        **credentials(kubeletPlugins=PLUGINS),
        "credentialPlugins": mounts,
        "auditJob": {"enabled": True},
    }


def pod_specs(objects: list[dict]) -> dict[str, dict]:
    return {
        "server": one(objects, "Deployment")["spec"]["template"]["spec"],
        "audit": one(objects, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"],
    }


def test_plugin_config_and_binaries_are_mounted_where_trustgate_yaml_says() -> None:
    objects = render(plugin_values(config=PROVIDER_CONFIG, binaries=HOST_BINARIES))
    config_map = one(objects, "ConfigMap", f"{RELEASE}-credential-providers")
    assert yaml.safe_load(config_map["data"]["config.yaml"]) == PROVIDER_CONFIG
    for where, spec in pod_specs(objects).items():
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["credential-providers"]["configMap"] == {
            "name": f"{RELEASE}-credential-providers",
            "items": [{"key": "config.yaml", "path": "config.yaml"}],
        }, where
        assert volumes["credential-plugins"] == {"name": "credential-plugins", **HOST_BINARIES}
        (container,) = spec["containers"]
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["credential-providers"] == {
            "name": "credential-providers",
            "mountPath": "/etc/trustgate/credential-providers",
            "readOnly": True,
        }, where
        assert mounts["credential-plugins"] == {
            "name": "credential-plugins",
            "mountPath": "/opt/bin",
            "readOnly": True,
        }, where


def test_a_new_plugin_config_restarts_the_pods() -> None:
    def checksum(config: dict[str, Any]) -> str:
        deployment = one(render(plugin_values(config=config)), "Deployment")
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        value: str = annotations["checksum/credential-providers"]
        return value

    changed = yaml.safe_load(yaml.safe_dump(PROVIDER_CONFIG))
    changed["providers"][0]["defaultCacheDuration"] = "1h"
    assert checksum(PROVIDER_CONFIG) != checksum(changed)


def test_a_plugin_config_given_as_text_or_an_existing_config_map() -> None:
    text = yaml.safe_dump(PROVIDER_CONFIG)
    objects = render(plugin_values(config=text))
    config_map = one(objects, "ConfigMap", f"{RELEASE}-credential-providers")
    assert yaml.safe_load(config_map["data"]["config.yaml"]) == PROVIDER_CONFIG

    objects = render(plugin_values(existingConfigMap="node-credential-providers"))
    assert not [o for o in objects if o["metadata"]["name"].endswith("credential-providers")]
    for spec in pod_specs(objects).values():
        volume = next(v for v in spec["volumes"] if v["name"] == "credential-providers")
        assert volume["configMap"]["name"] == "node-credential-providers"
        assert "credential-plugins" not in {v["name"] for v in spec["volumes"]}
    annotations = one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/credential-providers" not in annotations


def test_nothing_is_mounted_without_plugin_values() -> None:
    objects = render({**credentials(kubeletPlugins=PLUGINS), "auditJob": {"enabled": True}})
    for spec in pod_specs(objects).values():
        assert not [v for v in spec["volumes"] if v["name"].startswith("credential")]


@pytest.mark.parametrize(
    ("plugins", "mounts", "message"),
    [
        (None, {"binaries": HOST_BINARIES}, "kubeletPlugins (config and binDir) does not tell"),
        (PLUGINS, {"config": "a: 1", "existingConfigMap": "x"}, "keep one"),
        (
            {"config": "/etc/trustgate/config/providers.yaml", "binDir": "/opt/bin"},
            {"config": PROVIDER_CONFIG},
            "overlaps its own mount /etc/trustgate/config",
        ),
        (
            {"config": "/etc/p/c.yaml", "binDir": "/var/run/secrets/plugins"},
            {"binaries": HOST_BINARIES},
            "kubeletPlugins.binDir: the chart mounts /var/run/secrets/plugins",
        ),
        (
            {"config": "/etc/p/c.yaml", "binDir": "/etc"},
            {"binaries": HOST_BINARIES},
            "overlaps its own mount /etc/trustgate/config",
        ),
        (
            {"config": "/opt/p/c.yaml", "binDir": "/opt/p"},
            {"config": PROVIDER_CONFIG, "binaries": HOST_BINARIES},
            "must not overlap",
        ),
        (
            {"config": "providers.yaml", "binDir": "/opt/bin"},
            {"config": PROVIDER_CONFIG},
            "(providers.yaml): the chart mounts it, so it must be an absolute path",
        ),
    ],
    ids=["not-named", "two-configs", "over-config", "over-token", "above", "same", "relative"],
)
def test_plugin_mounts_that_cannot_work_are_refused(
    plugins: dict[str, str] | None, mounts: dict[str, Any], message: str
) -> None:
    values: dict[str, Any] = {"credentialPlugins": mounts}
    if plugins is not None:
        values |= credentials(kubeletPlugins=plugins)
    with pytest.raises(helm.HelmRenderError) as refused:
        render(values)
    assert message in str(refused.value)


def test_a_binaries_volume_with_a_name_is_refused() -> None:
    mounts = {"binaries": {"name": "x", "emptyDir": {}}}
    with pytest.raises(helm.HelmValuesError, match="credentialPlugins/binaries"):
        render({**credentials(kubeletPlugins=PLUGINS), "credentialPlugins": mounts})


def test_image_volume_binaries_need_a_kubernetes_that_has_them() -> None:
    image = {"image": {"reference": "registry.example/providers:v1", "pullPolicy": "Always"}}
    deployment = one(render(plugin_values(binaries=image)), "Deployment")
    kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)
    with pytest.raises(kubernetes_validate.ValidationError, match="'image' was unexpected"):
        kubernetes_validate.validate(deployment, "1.30.0", strict=True)


def test_the_install_guide_examples_render_as_it_says() -> None:
    """docs/install.md, "Registry credentials": each example renders what the text promises."""
    guide = REPO / "docs" / "install.md"
    text = guide.read_text(encoding="utf-8").splitlines()
    start = text.index("## Registry credentials")
    end = next(i for i in range(start + 1, len(text)) if text[i].startswith("## "))
    examples = [
        yaml.safe_load(b.body) for b in blocks(guide) if b.lang == "yaml" and start < b.line < end
    ]
    mounted, namespaced, plugins = examples
    assert secret_rules(render(mounted)) == []  # a mounted file: no access to Secrets
    assert readable(render(namespaced), WEBHOOK) == {"team-a", "team-b"}
    (server, audit) = pod_specs(render({**plugins, "auditJob": {"enabled": True}})).values()
    for spec in (server, audit):
        (container,) = spec["containers"]
        assert {m["mountPath"] for m in container["volumeMounts"]} >= {
            "/etc/trustgate/credential-providers",
            "/usr/libexec/trustgate/credential-providers",
        }


# --- every combination is valid Kubernetes and lints clean ----------------------------------

COMBINATIONS: dict[str, dict[str, Any]] = {
    "namespaces": {
        **credentials(pullSecrets=True, namespaces=["team-a", "team-b"]),
        "auditJob": {"enabled": True, "namespace": "team-a"},
    },
    "cluster-wide": {
        **credentials(pullSecrets=True, providers=[{"type": "ecr"}]),
        "rbac": {"readSecretsClusterWide": True},
        "auditJob": {"enabled": True},
        "serviceAccount": {"annotations": IDENTITY},
        "podLabels": {"azure.workload.identity/use": "true"},
    },
    "cluster-wide-one-audit": {
        **credentials(pullSecrets=True),
        "rbac": {"readSecretsClusterWide": True},
        "auditJob": {"enabled": True, "namespace": "team-b"},
    },
    "plugins": plugin_values(config=PROVIDER_CONFIG, binaries=HOST_BINARIES),
}


@pytest.mark.parametrize("name", sorted(COMBINATIONS))
def test_every_combination_validates_and_lints(name: str) -> None:
    values = COMBINATIONS[name]
    for obj in render(values):
        if obj["kind"] in CRDS:
            continue
        for version in KUBERNETES:
            kubernetes_validate.validate(obj, version, strict=True)
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version="v1.30.0")
    assert report["errors"] == [] and report["messages"] == []
