"""charts/trustgate rendered and linted by a real Helm, checked against Kubernetes schemas.

Helm runs in-process through the ``helm-python-sdk`` wheel (Helm 4's Go SDK behind a C
ABI); ``kubernetes-validate`` ships the OpenAPI schemas of every Kubernetes release, so
all of this works offline.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from cryptography import x509

from webhook.cli.main import build_parser
from webhook.policy.loader import load_directory

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "trustgate"
RELEASE = "trustgate"
NAMESPACE = "trustgate-system"
KUBERNETES = ("1.30.0", kubernetes_validate.latest_version())
#: Kinds whose schema is a CRD's, not Kubernetes'; checked field by field below.
CRDS = {"Certificate", "Issuer", "ServiceMonitor"}
WORKLOAD_RULES = {
    ("", "pods"),
    ("", "pods/ephemeralcontainers"),
    ("", "replicationcontrollers"),
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
}

CASES: dict[str, dict[str, Any]] = {
    "default": {},
    "cert-manager": {"tls": {"mode": "certManager"}},
    "cert-manager-issuer": {
        "tls": {
            "mode": "certManager",
            "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}},
        }
    },
    "existing-secret": {"tls": {"mode": "secret", "secret": {"name": "webhook-tls"}}},
    "hpa-networkpolicy-servicemonitor": {
        "autoscaling": {"enabled": True},
        "networkPolicy": {
            "enabled": True,
            "ingressFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}}],
            "egress": [{"ports": [{"port": 443, "protocol": "TCP"}]}],
        },
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
        "priorityClassName": "system-cluster-critical",
    },
    "git-sync": {
        "gitSync": {
            "enabled": True,
            "repo": "https://git.example.com/platform/policies.git",
            "ref": "release",
            "credentialsSecret": "policies-git",
        }
    },
    "git-sync-ssh": {
        "gitSync": {
            "enabled": True,
            "repo": "git@git.example.com:platform/policies.git",
            "credentialsSecret": "policies-ssh",
            "auth": "ssh",
            "path": "",
        }
    },
    "signed-policies": {
        "policies": {"existingConfigMap": "p", "existingSignatureConfigMap": "p-signature"}
    },
    "no-pinning": {"webhook": {"mutate": {"enabled": False}, "timeoutSeconds": 20}},
    "audit-job": {"auditJob": {"enabled": True}, "registryCredentials": {"secrets": ["quay"]}},
    "audit-job-namespace": {
        "auditJob": {"enabled": True, "namespace": "prod-web", "output": "junit"},
        "gitSync": {"enabled": True, "repo": "https://git.example.com/p.git"},
    },
}


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory: pytest.TempPathFactory) -> str:
    from webhook.core import certs

    paths = certs.generate(tmp_path_factory.mktemp("ca"), service="x", namespace="y")
    return paths.ca.read_text()


def values_for(case: str, ca_pem: str) -> dict[str, Any]:
    values = yaml.safe_load(yaml.safe_dump(CASES[case]))  # a deep copy
    if case == "existing-secret":
        values["tls"]["secret"]["caBundle"] = ca_pem
    return values


def render(values: dict[str, Any] | None = None, namespace: str = NAMESPACE) -> list[dict]:
    """Every object the chart renders, as Helm would install it."""
    chart = helm.Chart.load(CHART)
    manifests = chart.render(values, name=RELEASE, namespace=namespace, is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def render_upgrade(
    tmp: Path, values: dict[str, Any] | None, *installed: dict[str, Any]
) -> tuple[list[dict], list[str]]:
    """What ``helm upgrade`` renders while the API server holds the ``installed`` Secrets.

    Helm renders against a stand-in API server (tests/support/kubeapi.py); also returned are the
    paths Helm asked it for.
    """
    from tests.support.kubeapi import start_api_server

    api = start_api_server(tmp)
    try:
        for secret in installed:
            api.secrets[(NAMESPACE, secret["metadata"]["name"])] = secret
        config = helm.Config(
            kube_apiserver=api.url,
            kube_token=api.token,
            kube_ca_file=str(api.ca),
            namespace=NAMESPACE,
        )
        manifests = config.render(
            helm.Chart.load(CHART), values, name=RELEASE, namespace=NAMESPACE, is_upgrade=True
        )
    finally:
        api.stop()
    upgraded = [
        doc
        for path, text in manifests.items()
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    return upgraded, [request.path for request in api.requests]


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} objects named {name}"
    return found[0]


def kinds(objects: list[dict]) -> set[str]:
    return {o["kind"] for o in objects}


def containers(pod_spec: dict) -> Iterator[dict]:
    yield from pod_spec.get("initContainers", [])
    yield from pod_spec["containers"]


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request: pytest.FixtureRequest, ca_pem: str) -> tuple[str, dict, list[dict]]:
    values = values_for(request.param, ca_pem)
    return request.param, values, render(values)


# --- lint and schemas --------------------------------------------------------------


def test_lint_strict_is_clean(case: tuple[str, dict, list[dict]]) -> None:
    _, values, _ = case
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version="v1.30.0")
    assert report["errors"] == []
    assert report["messages"] == []


@pytest.mark.parametrize("version", KUBERNETES)
def test_every_object_validates_against_kubernetes(
    case: tuple[str, dict, list[dict]], version: str
) -> None:
    _, _, objects = case
    for obj in objects:
        if obj["kind"] in CRDS:
            continue
        kubernetes_validate.validate(obj, version, strict=True)


def test_custom_resources_are_well_formed(case: tuple[str, dict, list[dict]]) -> None:
    _, _, objects = case
    for obj in objects:
        if obj["kind"] in {"Certificate", "Issuer"}:
            assert obj["apiVersion"] == "cert-manager.io/v1"
        elif obj["kind"] == "ServiceMonitor":
            assert obj["apiVersion"] == "monitoring.coreos.com/v1"
            (endpoint,) = obj["spec"]["endpoints"]
            assert (endpoint["port"], endpoint["path"], endpoint["scheme"]) == (
                "metrics",
                "/metrics",
                "https",
            )
        else:
            continue
        assert obj["metadata"]["namespace"] == NAMESPACE


def test_default_values_satisfy_the_schema() -> None:
    helm.Chart.load(CHART).validate_schema(None)


# --- the webhook configuration -----------------------------------------------------


def registration(objects: list[dict]) -> dict:
    """registration.json: the webhooks the pods register once ready, as the chart renders it."""
    config_map = one(objects, "ConfigMap", f"{RELEASE}-registration")
    document: dict = json.loads(config_map["data"]["registration.json"])
    return document


def webhooks(objects: list[dict]) -> list[tuple[dict, dict]]:
    """Each webhook configuration, as Helm installs it (empty), with the one webhook the
    pods register into it: validating, then mutating if any."""
    registered = {
        (c["kind"], c["name"]): c["webhooks"] for c in registration(objects)["configurations"]
    }
    found = []
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        for config in (o for o in objects if o["kind"] == kind):
            assert "webhooks" not in config, "Helm would enforce before a pod is ready"
            (hook,) = registered.pop((kind, config["metadata"]["name"]))
            found.append((config, hook))
    assert registered == {}, "registered into a configuration Helm does not install"
    return found


def test_webhook_configuration_invariants(case: tuple[str, dict, list[dict]]) -> None:
    _, _, objects = case
    for config, hook in webhooks(objects):
        mutating = config["kind"] == "MutatingWebhookConfiguration"
        path = "/mutate" if mutating else "/validate"
        assert hook["name"] == ("pin" if mutating else "validate") + ".trustgate.dev"
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["sideEffects"] == "None"
        # /mutate never denies: if it cannot answer, /validate still decides
        assert hook["failurePolicy"] == ("Ignore" if mutating else "Fail")
        assert hook.get("reinvocationPolicy") == ("IfNeeded" if mutating else None)
        assert hook["matchPolicy"] == "Equivalent"
        service = hook["clientConfig"]["service"]
        assert service == {"name": RELEASE, "namespace": NAMESPACE, "path": path, "port": 443}
        one(objects, "Service", service["name"])
        _check_rules_and_exclusions(hook)


def test_both_webhooks_share_service_trust_rules_exclusions_and_timeout(
    case: tuple[str, dict, list[dict]],
) -> None:
    name, values, objects = case
    found = webhooks(objects)
    if name == "no-pinning":
        assert [c["kind"] for c, _ in found] == ["ValidatingWebhookConfiguration"]
        return
    (validating, validate), (mutating, mutate) = found
    assert mutating["metadata"]["name"] == f"{RELEASE}-pin"
    timeout = values.get("webhook", {}).get("timeoutSeconds", 10)
    assert validate["timeoutSeconds"] == mutate["timeoutSeconds"] == timeout
    for key in ("rules", "namespaceSelector", "admissionReviewVersions", "matchPolicy"):
        assert validate[key] == mutate[key]
    assert validate["clientConfig"].get("caBundle") == mutate["clientConfig"].get("caBundle")
    assert validating["metadata"].get("annotations") == mutating["metadata"].get("annotations")
    assert validating["metadata"]["labels"] == mutating["metadata"]["labels"]


def test_pinning_can_be_switched_off_and_fail_closed() -> None:
    kinds_rendered = kinds(render({"webhook": {"mutate": {"enabled": False}}}))
    assert "MutatingWebhookConfiguration" not in kinds_rendered
    assert "ValidatingWebhookConfiguration" in kinds_rendered
    strict = render({"webhook": {"mutate": {"failurePolicy": "Fail"}}})
    (_, hook) = webhooks(strict)[1]
    assert hook["failurePolicy"] == "Fail"


def _check_rules_and_exclusions(hook: dict) -> None:

    covered = set()
    for rule in hook["rules"]:
        assert sorted(rule["operations"]) == ["CREATE", "UPDATE"]
        assert rule["apiVersions"] == ["v1"]
        covered |= {(group, r) for group in rule["apiGroups"] for r in rule["resources"]}
    assert covered == WORKLOAD_RULES

    expressions = hook["namespaceSelector"]["matchExpressions"]
    assert {
        "key": "kubernetes.io/metadata.name",
        "operator": "NotIn",
        "values": [NAMESPACE, "kube-system"],
    } in expressions
    # No label a namespace's owner could set exempts it (webhook.optOutLabel is off).
    assert [e["key"] for e in expressions] == ["kubernetes.io/metadata.name"]


def test_own_namespace_is_excluded_wherever_the_release_goes(ca_pem: str) -> None:
    objects = render({"webhook": {"excludeNamespaces": ["kube-system", "monitoring"]}}, "sec")
    assert len(webhooks(objects)) == 2
    for _, hook in webhooks(objects):
        first = hook["namespaceSelector"]["matchExpressions"][0]
        assert first["values"] == ["sec", "kube-system", "monitoring"]
        assert hook["clientConfig"]["service"]["namespace"] == "sec"


def test_the_api_server_trusts_the_serving_certificate(
    case: tuple[str, dict, list[dict]], ca_pem: str
) -> None:
    """Every TLS option gives the registered webhooks a caBundle that signs the served
    certificate: in the registration (tls.mode secret), or the TLS Secret's ca.crt, which the
    pod mounts beside its certificate and registers (generate, certManager)."""
    name, values, objects = case
    config, hook = webhooks(objects)[0]
    mode = values.get("tls", {}).get("mode", "generate")
    deployment = one(objects, "Deployment")
    volume = next(
        v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls"
    )
    secret_name = volume["secret"]["secretName"]
    mounted = {item["key"] for item in volume["secret"]["items"]}
    # trustgate writes caBundle; cert-manager's injector would be a second writer.
    assert "cert-manager.io/inject-ca-from" not in (config["metadata"].get("annotations") or {})
    if mode == "certManager":
        assert "caBundle" not in hook["clientConfig"]
        assert mounted == {"tls.crt", "tls.key", "ca.crt"}
        certificate = one(objects, "Certificate", RELEASE)
        assert certificate["spec"]["secretName"] == secret_name
        assert f"{RELEASE}.{NAMESPACE}.svc" in certificate["spec"]["dnsNames"]
        issuer = certificate["spec"]["issuerRef"]
        if name == "cert-manager-issuer":
            assert issuer == {"name": "corp-ca", "kind": "ClusterIssuer"}
            assert "Issuer" not in kinds(objects)
        else:
            ca_issuer = one(objects, "Issuer", issuer["name"])
            ca_certificate = one(objects, "Certificate", f"{RELEASE}-ca")
            assert ca_issuer["spec"]["ca"]["secretName"] == ca_certificate["spec"]["secretName"]
            assert ca_certificate["spec"]["isCA"] is True
        return
    if mode == "secret":
        bundle = base64.b64decode(hook["clientConfig"]["caBundle"])
        x509.load_pem_x509_certificate(bundle)
        assert bundle.decode() == ca_pem
        assert secret_name == "webhook-tls"
        assert mounted == {"tls.crt", "tls.key"}
        assert not [o for o in objects if o["kind"] == "Secret"]
        return
    assert "caBundle" not in hook["clientConfig"]
    assert mounted == {"tls.crt", "tls.key", "ca.crt"}
    secret = one(objects, "Secret", secret_name)
    bundle = base64.b64decode(secret["data"]["ca.crt"])
    ca = x509.load_pem_x509_certificate(bundle)
    assert secret["type"] == "kubernetes.io/tls"
    served = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    served.verify_directly_issued_by(ca)
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{RELEASE}.{NAMESPACE}.svc" in names.get_values_for_type(x509.DNSName)
    assert not names.get_values_for_type(x509.IPAddress) or all(
        isinstance(ip, ipaddress.IPv4Address) for ip in names.get_values_for_type(x509.IPAddress)
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"webhook": {"timeoutSeconds": 31}}, "maximum: got 31, want 30"),
        ({"webhook": {"failurePolicy": "Maybe"}}, "failurePolicy"),
        ({"tls": {"mode": "secret", "secret": {"name": "x"}}}, "caBundle"),
        ({"tls": {"mode": "selfsigned"}}, "/tls/mode"),
        ({"securityContext": {"runAsNonRoot": False}}, "runAsNonRoot"),
        ({"gitSync": {"enabled": True}}, "/gitSync/repo"),
        ({"replicas": 3}, "replicas"),
        ({"server": {"workers": 0}}, "workers"),
        ({"server": {"workers": "many"}}, "workers"),
    ],
)
def test_schema_refuses(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=message):
        render(values)


# --- the Deployment ----------------------------------------------------------------


def mounts_cover(container: dict, path: str) -> bool:
    return any(
        path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")
        for m in container.get("volumeMounts", [])
    )


def test_deployment_runs_trustgate_serve_with_its_real_flags(
    case: tuple[str, dict, list[dict]],
) -> None:
    _, values, objects = case
    deployment = one(objects, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    server = next(c for c in spec["containers"] if c["name"] == "trustgate")
    assert server["args"][0] == "serve"
    # argparse exits on an unknown flag, so this fails if the chart drifts from the CLI.
    args = build_parser({}).parse_args(server["args"])
    assert args.command == "serve"
    assert not args.insecure_http
    server_values = values.get("server", {})
    assert args.client_timeout == server_values.get("clientTimeoutSeconds", 10)
    assert args.max_connections == server_values.get("maxConnections", 4096)
    for path in (args.cert, args.key, args.config, args.policies, args.register):
        assert mounts_cover(server, str(path)), f"{path} is not on a mounted volume"
    port = next(p for p in server["ports"] if p["name"] == "https")
    assert port["containerPort"] == args.port == 8443
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = server[probe]["httpGet"]
        assert (get["path"], get["port"], get["scheme"]) == (path, "https", "HTTPS")
    service = one(objects, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "https"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    if values.get("gitSync", {}).get("enabled"):
        path = values["gitSync"].get("path", "policies")
        assert str(args.policies) == f"/git/current/{path}".rstrip("/")


@pytest.mark.parametrize(("workers", "expected"), [(None, "auto"), ("auto", "auto"), (3, 3)])
def test_workers_flag_and_the_cpu_request_auto_counts(
    workers: int | str | None, expected: int | str
) -> None:
    values: dict[str, Any] = {
        "server": {"env": [{"name": "EXTRA", "value": "1"}]},
        "resources": {"requests": {"cpu": "1500m", "memory": "128Mi"}},
    }
    if workers is not None:
        values["server"]["workers"] = workers
    spec = one(render(values), "Deployment")["spec"]["template"]["spec"]
    server = next(c for c in spec["containers"] if c["name"] == "trustgate")
    assert f"--workers={expected}" in server["args"]
    env = {e["name"]: e for e in server["env"]}
    # The Downward API hands the container's own CPU request in, in millicores.
    assert env["TRUSTGATE_CPU_REQUEST_MILLICORES"]["valueFrom"] == {
        "resourceFieldRef": {
            "containerName": "trustgate",
            "resource": "requests.cpu",
            "divisor": "1m",
        }
    }
    assert env["EXTRA"] == {"name": "EXTRA", "value": "1"}
    # What kubelet would set from the 1500m request, read the way `serve` reads it.
    args = build_parser({"TRUSTGATE_CPU_REQUEST_MILLICORES": "1500"}).parse_args(server["args"])
    assert (args.workers, args.cpu_request) == (expected, 1500)


def test_deployment_is_highly_available_and_hardened(case: tuple[str, dict, list[dict]]) -> None:
    _, values, objects = case
    deployment = one(objects, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    if values.get("autoscaling", {}).get("enabled"):
        assert "replicas" not in deployment["spec"]
        hpa = one(objects, "HorizontalPodAutoscaler")
        assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        assert hpa["spec"]["minReplicas"] >= 2
    else:
        assert deployment["spec"]["replicas"] == 2
    anti = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    term = anti[0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]

    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    for container in containers(spec):
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert "resources" in container
        assert mounts_cover(container, "/tmp")
    assert spec.get("priorityClassName") == values.get("priorityClassName")


def test_hard_anti_affinity() -> None:
    objects = render({"podAntiAffinity": "hard"})
    spec = one(objects, "Deployment")["spec"]["template"]["spec"]
    required = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert required[0]["topologyKey"] == "kubernetes.io/hostname"


def test_optional_objects_only_when_asked(case: tuple[str, dict, list[dict]]) -> None:
    name, _, objects = case
    optional = {"HorizontalPodAutoscaler", "ServiceMonitor", "CronJob", "ValidatingAdmissionPolicy"}
    assert "NetworkPolicy" in kinds(objects)  # on by default
    expected = {
        "hpa-networkpolicy-servicemonitor": {"HorizontalPodAutoscaler", "ServiceMonitor"},
        "audit-job": {"CronJob"},
        "audit-job-namespace": {"CronJob"},
    }.get(name, set())
    assert kinds(objects) & optional == expected


def test_network_policy_admits_only_the_webhook_and_metrics_ports() -> None:
    objects = render(CASES["hpa-networkpolicy-servicemonitor"])
    policy = one(objects, "NetworkPolicy")
    webhook, metrics = policy["spec"]["ingress"]
    assert webhook["ports"] == [{"port": "https", "protocol": "TCP"}]
    assert webhook["from"] == [{"ipBlock": {"cidr": "10.0.0.0/8"}}]
    assert metrics["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]


# --- policies ----------------------------------------------------------------------


def write_config_map(config_map: dict, directory: Path) -> Path:
    directory.mkdir(parents=True)
    for key, content in config_map["data"].items():
        (directory / key).write_text(content)
    return directory


def test_default_policies_load_and_config_is_valid(tmp_path: Path) -> None:
    from webhook.config import parse_config

    objects = render()
    policies = one(objects, "ConfigMap", f"{RELEASE}-policies")
    policy_set = load_directory(write_config_map(policies, tmp_path / "policies"))
    assert [p.name for p in policy_set.policies] == ["audit-all"]
    assert policy_set.policies[0].mode == "audit"
    config_map = one(objects, "ConfigMap", f"{RELEASE}-config")
    config = parse_config(yaml.safe_load(config_map["data"]["trustgate.yaml"]))
    assert config.deadline_seconds == 8  # below timeoutSeconds 10
    deployment = one(objects, "Deployment")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["policies"]["configMap"]["name"] == policies["metadata"]["name"]
    assert "subPath" not in str(deployment)  # kubelet only updates whole-volume mounts


def test_deadline_follows_the_webhook_timeout() -> None:
    config_map = one(render({"webhook": {"timeoutSeconds": 25}}), "ConfigMap", f"{RELEASE}-config")
    assert yaml.safe_load(config_map["data"]["trustgate.yaml"])["deadlineSeconds"] == 23


@pytest.mark.parametrize(("timeout", "deadline"), [(3, 1), (3, 2), (10, 9), (30, 29), (15, 13.5)])
def test_a_deadline_that_leaves_the_api_server_time_renders(timeout: int, deadline: float) -> None:
    values = {"webhook": {"timeoutSeconds": timeout}, "config": {"deadlineSeconds": deadline}}
    config_map = one(render(values), "ConfigMap", f"{RELEASE}-config")
    assert yaml.safe_load(config_map["data"]["trustgate.yaml"])["deadlineSeconds"] == deadline


@pytest.mark.parametrize(
    "values",
    [
        {"webhook": {"timeoutSeconds": 10}, "config": {"deadlineSeconds": 10}},
        {"webhook": {"timeoutSeconds": 10}, "config": {"deadlineSeconds": 9.5}},
        {"webhook": {"timeoutSeconds": 5}, "config": {"deadlineSeconds": 25}},
    ],
)
def test_a_deadline_the_api_server_would_not_wait_for_fails_to_render(
    values: dict[str, Any],
) -> None:
    with pytest.raises(helm.HelmError, match=r"deadlineSeconds .* at least 1 s below"):
        render(values)


def test_policies_from_set_file(tmp_path: Path) -> None:
    """``helm install --set-file 'policies.files.prod\\.yaml=policies/production.yaml'``."""
    source = REPO / "policies" / "production.yaml"
    values = helm.parse_set_file(rf"policies.files.prod\.yaml={source}")
    values["policies"]["files"]["staging"] = {
        "apiVersion": "trustgate.dev/v1alpha1",
        "kind": "ImagePolicy",
        "metadata": {"name": "staging"},
        "spec": {"mode": "audit", "match": {"namespaces": ["staging"]}, "registries": ["**"]},
    }
    objects = render(values)
    policies = one(objects, "ConfigMap", f"{RELEASE}-policies")
    assert policies["data"]["prod.yaml"].strip() == source.read_text().strip()
    assert set(policies["data"]) == {"audit-all.yaml", "prod.yaml", "staging.yaml"}
    policy_set = load_directory(write_config_map(policies, tmp_path / "policies"))
    assert {p.name for p in policy_set.policies} == {"audit-all", "production", "staging"}


def test_existing_policy_config_map() -> None:
    objects = render({"policies": {"existingConfigMap": "platform-policies"}})
    released = [o for o in objects if "helm.sh/hook" not in o["metadata"].get("annotations", {})]
    assert [o["metadata"]["name"] for o in released if o["kind"] == "ConfigMap"] == [
        f"{RELEASE}-config",
        f"{RELEASE}-registration",
    ]
    volumes = one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "policies", "configMap": {"name": "platform-policies"}} in volumes


def test_git_sync_clones_before_the_server_starts_and_follows_the_branch() -> None:
    objects = render(CASES["git-sync"])
    spec = one(objects, "Deployment")["spec"]["template"]["spec"]
    (init,) = spec["initContainers"]
    sidecar = next(c for c in spec["containers"] if c["name"] == "git-sync")
    for container in (init, sidecar):
        args = container["args"]
        assert "--repo=https://git.example.com/platform/policies.git" in args
        assert "--ref=release" in args
        assert "--root=/git" in args
        assert "--link=current" in args
        env = {e["name"]: e for e in container["env"]}
        assert env["GITSYNC_USERNAME"]["valueFrom"]["secretKeyRef"]["name"] == "policies-git"
        assert env["GITSYNC_PASSWORD_FILE"]["value"] == "/etc/git-secret/password"
    assert "--one-time" in init["args"]
    assert "--one-time" not in sidecar["args"]
    assert f"{RELEASE}-policies" not in {
        o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"
    }
    server = next(c for c in spec["containers"] if c["name"] == "trustgate")
    git = next(m for m in server["volumeMounts"] if m["name"] == "git")
    assert git["readOnly"] is True


# --- identities ---------------------------------------------------------------------


def test_least_privilege(case: tuple[str, dict, list[dict]]) -> None:
    _, values, objects = case
    roles = [o for o in objects if o["kind"] in {"Role", "ClusterRole"}]
    bindings = [o for o in objects if o["kind"] in {"RoleBinding", "ClusterRoleBinding"}]
    deployment = one(objects, "Deployment")
    webhook_account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    account = one(objects, "ServiceAccount", webhook_account)
    assert account["automountServiceAccountToken"] is False
    # The webhook's one grant, registering its webhooks: tests/chart/test_chart_registration.py.
    register = one(objects, "ClusterRoleBinding", f"{RELEASE}-register")
    roles.remove(one(objects, "ClusterRole", f"{RELEASE}-register"))
    bindings.remove(register)
    # With signed policy sets, one ConfigMap by name: tests/chart/test_chart_policy_version.py.
    mark = f"{RELEASE}-policy-version"
    roles = [o for o in roles if (o["kind"], o["metadata"]["name"]) != ("Role", mark)]
    bindings = [o for o in bindings if (o["kind"], o["metadata"]["name"]) != ("RoleBinding", mark)]
    for binding in bindings:
        assert webhook_account not in {s["name"] for s in binding["subjects"]}
    if not values.get("auditJob", {}).get("enabled"):
        assert roles == [] and bindings == []
        return
    (role,) = roles
    (binding,) = bindings
    audit_namespace = values["auditJob"].get("namespace")
    assert role["kind"] == ("Role" if audit_namespace else "ClusterRole")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    granted = set()
    for rule in role["rules"]:
        assert rule["verbs"] == ["list"]
        granted |= {(group, r) for group in rule["apiGroups"] for r in rule["resources"]}
    assert granted == WORKLOAD_RULES - {("", "pods/ephemeralcontainers")}
    cron = one(objects, "CronJob")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == binding["subjects"][0]["name"]
    (audit,) = pod["containers"]
    args = build_parser({}).parse_args(audit["args"])
    assert args.command == "audit"
    assert args.cluster is True
    assert args.namespace == (audit_namespace or args.namespace)
    if not audit_namespace:
        assert "--namespace" not in " ".join(audit["args"])
        assert args.exclude_namespace == [NAMESPACE, "kube-system"]
    for path in (args.config, args.policies):
        assert mounts_cover(audit, str(path))


def test_registry_credentials_are_mounted_not_read_from_the_api() -> None:
    objects = render(CASES["audit-job"])
    spec = one(objects, "Deployment")["spec"]["template"]["spec"]
    server = next(c for c in spec["containers"] if c["name"] == "trustgate")
    assert {"name": "registry-quay", "secret": {"secretName": "quay"}} in spec["volumes"]
    assert mounts_cover(server, "/etc/trustgate/registry/quay/.dockerconfigjson")


def test_image_reference_from_values() -> None:
    digest = "sha256:" + "a" * 64
    objects = render({"image": {"repository": "registry.example/t/trustgate", "digest": digest}})
    (server,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert server["image"] == f"registry.example/t/trustgate:0.1.0@{digest}"


# --- the image ------------------------------------------------------------------------


def test_containerfile_matches_the_chart() -> None:
    """The chart runs ``<entrypoint> serve ...`` as a numeric non-root user."""
    lines = [
        line.strip()
        for line in (REPO / "Containerfile").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    args = dict(line[4:].split("=", 1) for line in lines if line.startswith("ARG ") and "=" in line)
    bases = [line.split()[1] for line in lines if line.startswith("FROM ")]
    bases = [args.get(b.removeprefix("${").removesuffix("}"), b) for b in bases]
    assert bases and all(b.startswith("registry.access.redhat.com/ubi9/python-") for b in bases)
    assert 'ENTRYPOINT ["trustgate"]' in lines
    user = [line.split()[1] for line in lines if line.startswith("USER ")][-1]
    # kubelet can only check runAsNonRoot against a numeric USER.
    assert user.isdigit() and int(user) != 0
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert defaults["podSecurityContext"]["runAsUser"] == int(user)
    assert f"EXPOSE {defaults['server']['port']} {defaults['metrics']['port']}" in lines


def test_generated_certificate_is_kept_across_upgrades(tmp_path: Path) -> None:
    """``helm upgrade`` looks up the installed Secret and reuses its CA and certificate.

    Helm renders against a stand-in API server that holds what the install created.
    """
    installed = render()
    secret = one(installed, "Secret", f"{RELEASE}-tls")
    upgraded, asked = render_upgrade(tmp_path, None, secret)
    assert one(upgraded, "Secret", f"{RELEASE}-tls")["data"] == secret["data"]
    assert f"/api/v1/namespaces/{NAMESPACE}/secrets/{RELEASE}-tls" in asked
    # Without the Secret (a first install), a new CA is generated.
    fresh = one(render(), "Secret", f"{RELEASE}-tls")
    assert fresh["data"]["ca.crt"] != secret["data"]["ca.crt"]


def _pod_templates(objects: list[dict]) -> Iterator[tuple[str, dict]]:
    for obj in objects:
        spec = obj.get("spec") or {}
        if obj["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        if "template" in spec:
            yield f"{obj['kind']}/{obj['metadata']['name']}", spec["template"]


def test_only_the_webhooks_pods_carry_its_selector(case: tuple[str, dict, list[dict]]) -> None:
    # A pod the Service selects gets admission reviews: an audit or preflight pod serves none.
    _, _, objects = case
    selector = one(objects, "Service")["spec"]["selector"]
    selecting = [
        name
        for name, template in _pod_templates(objects)
        if selector.items() <= (template.get("metadata", {}).get("labels") or {}).items()
    ]
    assert selecting == [f"Deployment/{one(objects, 'Deployment')['metadata']['name']}"]
