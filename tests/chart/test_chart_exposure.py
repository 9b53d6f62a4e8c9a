"""What the rendered chart exposes, and to whom: namespace exemptions, network reach, secrets.

- No label a namespace's owner can set exempts it by default: exclusions go by
  ``kubernetes.io/metadata.name``, which the API server sets. An opt-out label is
  opt-in, and comes with a ValidatingAdmissionPolicy that lets only named users and
  groups set it; its CEL is evaluated here against the requests it must refuse.
- A NetworkPolicy by default: the webhook port for the API server, the metrics port
  (a port of its own) only for the monitoring namespace.
- The Pyxis API key lands in a Secret, mounted as a file, never in a ConfigMap.
"""

from __future__ import annotations

import base64
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from tests.chart.test_chart import (
    CHART,
    KUBERNETES,
    NAMESPACE,
    RELEASE,
    mounts_cover,
    one,
    render,
    webhooks,
)
from webhook.cli.main import build_parser
from webhook.config import parse_config

OPT_OUT = "trustgate.dev/ignore"
PYXIS_KEY = "pyxis-key-0f3b9c2e7a"


def hooks(objects: list[dict]) -> list[dict]:
    """The validating and the mutating webhook, as the pods register them."""
    found = [hook for _, hook in webhooks(objects)]
    assert len(found) == 2
    return found


def server_container(objects: list[dict]) -> dict:
    spec = one(objects, "Deployment")["spec"]["template"]["spec"]
    container: dict = next(c for c in spec["containers"] if c["name"] == "trustgate")
    return container


# --- namespaces: no opt-out anyone can set -------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {"webhook": {"optOutLabel": OPT_OUT}, "freshness": {"pyxis": {"apiKey": PYXIS_KEY}}},
        {
            "freshness": {"pyxis": {"apiKeySecret": {"name": "pyxis"}}},
            "networkPolicy": {"metricsFrom": [], "egress": [{"ports": [{"port": 443}]}]},
            "auditJob": {"enabled": True},
        },
    ],
)
def test_lint_strict_is_clean_with_the_new_values(values: dict[str, Any]) -> None:
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version="v1.30.0")
    assert (report["errors"], report["messages"]) == ([], [])
    for obj in render(values):
        if obj["kind"] not in ("ServiceMonitor",):
            kubernetes_validate.validate(obj, KUBERNETES[-1], strict=True)


def test_by_default_only_the_api_servers_name_label_exempts_a_namespace() -> None:
    objects = render()
    for hook in hooks(objects):
        assert hook["namespaceSelector"] == {
            "matchExpressions": [
                {
                    "key": "kubernetes.io/metadata.name",
                    "operator": "NotIn",
                    "values": [NAMESPACE, "kube-system"],
                }
            ]
        }
    assert "ValidatingAdmissionPolicy" not in {o["kind"] for o in objects}


def test_an_opt_out_label_is_opt_in_and_guarded() -> None:
    objects = render({"webhook": {"optOutLabel": OPT_OUT}})
    for hook in hooks(objects):
        expressions = hook["namespaceSelector"]["matchExpressions"]
        assert expressions[0]["key"] == "kubernetes.io/metadata.name"
        assert {"key": OPT_OUT, "operator": "NotIn", "values": ["true"]} in expressions
    policy = one(objects, "ValidatingAdmissionPolicy")
    binding = one(objects, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert policy["spec"]["failurePolicy"] == "Fail"
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert (rule["resources"], sorted(rule["operations"])) == (["namespaces"], ["CREATE", "UPDATE"])
    for version in KUBERNETES:
        for obj in (policy, binding):
            kubernetes_validate.validate(obj, version, strict=True)
    unguarded = render({"webhook": {"optOutLabel": OPT_OUT, "optOutGuard": {"enabled": False}}})
    assert "ValidatingAdmissionPolicy" not in {o["kind"] for o in unguarded}


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **labels}}}


def admits(policy: dict, request: dict[str, Any], new: dict, old: dict | None) -> str | None:
    """None if the guard admits the request, else its message: the policy's CEL, evaluated."""
    from cel_expr_python import cel

    names = ("object", "oldObject", "request", "variables")
    env = cel.NewEnv(variables={name: cel.Type.DYN for name in names})
    data: dict[str, Any] = {"object": new, "oldObject": old, "request": request, "variables": {}}
    for variable in policy["spec"]["variables"]:
        value = env.compile(variable["expression"]).eval(data=data).value()
        data["variables"] = {**data["variables"], variable["name"]: value}
    (validation,) = policy["spec"]["validations"]
    if env.compile(validation["expression"]).eval(data=data).value() is True:
        return None
    message: str = env.compile(validation["messageExpression"]).eval(data=data).value()
    return message


def test_the_guard_lets_only_named_users_and_groups_opt_a_namespace_out() -> None:
    values = {"webhook": {"optOutLabel": OPT_OUT, "optOutGuard": {"users": ["alice"]}}}
    policy = one(render(values), "ValidatingAdmissionPolicy")
    tenant = {"userInfo": {"username": "mallory", "groups": ["system:authenticated", "dev"]}}
    admin = {"userInfo": {"username": "root", "groups": ["system:masters"]}}
    alice = {"userInfo": {"username": "alice", "groups": ["system:authenticated"]}}
    plain, opted_out = namespace("team-a"), namespace("team-a", **{OPT_OUT: "true"})

    # A tenant can neither create an opted-out namespace nor label one.
    for old in (None, plain):
        message = admits(policy, tenant, opted_out, old)
        assert message is not None
        assert OPT_OUT in message and "team-a" in message and "mallory" in message
    # Named users and groups can.
    for who in (admin, alice):
        assert admits(policy, who, opted_out, None) is None
        assert admits(policy, who, opted_out, plain) is None
    # What only turns checks on, or leaves the label as it was, is free.
    assert admits(policy, tenant, plain, opted_out) is None
    assert admits(policy, tenant, namespace("team-a", **{OPT_OUT: "false"}), plain) is None
    assert admits(policy, tenant, namespace("team-a", **{OPT_OUT: "true"}), opted_out) is None
    assert admits(policy, tenant, namespace("team-b", other="x"), None) is None


# --- network reach and the metrics port ---------------------------------------------


def test_network_policy_is_on_by_default_with_a_metrics_rule() -> None:
    objects = render()
    policy = one(objects, "NetworkPolicy")
    assert (
        policy["spec"]["podSelector"]["matchLabels"]
        == (one(objects, "Deployment")["spec"]["selector"]["matchLabels"])
    )
    webhook, metrics = policy["spec"]["ingress"]
    # The API server's source address cannot be known in general: any, unless narrowed.
    assert webhook == {"ports": [{"port": "https", "protocol": "TCP"}]}
    assert metrics == {
        "ports": [{"port": "metrics", "protocol": "TCP"}],
        "from": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ],
    }
    assert policy["spec"]["policyTypes"] == ["Ingress"]  # egress stays open by default
    ports = {p["name"] for p in server_container(objects)["ports"]}
    assert ports == {"https", "metrics"}  # the rules' named ports exist


def test_metrics_peers_follow_the_values_and_none_closes_the_port() -> None:
    peers = [{"podSelector": {"matchLabels": {"app": "prometheus"}}}]
    policy = one(render({"networkPolicy": {"metricsFrom": peers}}), "NetworkPolicy")
    assert policy["spec"]["ingress"][1]["from"] == peers
    closed = one(render({"networkPolicy": {"metricsFrom": []}}), "NetworkPolicy")
    assert [r["ports"][0]["port"] for r in closed["spec"]["ingress"]] == ["https"]
    assert "NetworkPolicy" not in {o["kind"] for o in render({"networkPolicy": {"enabled": False}})}


@pytest.mark.parametrize("port", [None, 9464])
def test_metrics_have_a_port_of_their_own_that_the_service_monitor_scrapes(
    port: int | None,
) -> None:
    values: dict[str, Any] = {"metrics": {"serviceMonitor": {"enabled": True}}}
    if port is not None:
        values["metrics"]["port"] = port
    expected = port or 9090
    objects = render(values)
    server = server_container(objects)
    args = build_parser({}).parse_args(server["args"])
    assert args.metrics_port == expected
    assert args.port != expected
    (container_port,) = [p for p in server["ports"] if p["name"] == "metrics"]
    assert container_port["containerPort"] == expected
    service_ports = {p["name"]: p for p in one(objects, "Service")["spec"]["ports"]}
    assert service_ports["metrics"]["targetPort"] == "metrics"
    assert service_ports["metrics"]["port"] == expected
    (endpoint,) = one(objects, "ServiceMonitor")["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["scheme"]) == (
        "metrics",
        "/metrics",
        "https",
    )
    # Probes stay on the webhook port, which still serves health.
    for probe in ("livenessProbe", "readinessProbe"):
        assert server[probe]["httpGet"]["port"] == "https"


def test_a_metrics_port_equal_to_the_webhook_port_fails_to_render() -> None:
    with pytest.raises(helm.HelmError, match=r"metrics\.port"):
        render({"metrics": {"port": 8443}})


# --- the Pyxis API key ----------------------------------------------------------------


def config_of(objects: list[dict]) -> dict[str, Any]:
    config_map = one(objects, "ConfigMap", f"{RELEASE}-config")
    loaded: dict[str, Any] = yaml.safe_load(config_map["data"]["trustgate.yaml"])
    return loaded


def everywhere_but_secrets(objects: list[dict]) -> str:
    return "\n".join(yaml.safe_dump(o) for o in objects if o["kind"] != "Secret")


def test_an_inline_key_lands_in_a_secret_only() -> None:
    values = {
        "freshness": {"pyxis": {"apiKey": PYXIS_KEY}},
        "config": {"freshness": {"pyxis": {"url": "https://pyxis.example.com/v1"}}},
        "auditJob": {"enabled": True},
    }
    objects = render(values)
    text = everywhere_but_secrets(objects)
    encoded = base64.b64encode(PYXIS_KEY.encode()).decode()
    assert PYXIS_KEY not in text and encoded not in text
    for config_map in (o for o in objects if o["kind"] == "ConfigMap"):
        assert PYXIS_KEY not in yaml.safe_dump(config_map)
    secret = one(objects, "Secret", f"{RELEASE}-pyxis")
    assert base64.b64decode(secret["data"]["apiKey"]).decode() == PYXIS_KEY

    config = config_of(objects)
    assert config["freshness"]["pyxis"] == {
        "url": "https://pyxis.example.com/v1",
        "apiKeyFile": "/etc/trustgate/pyxis/apiKey",
    }
    parse_config(config)  # the server accepts what the chart renders
    # Both the server and the audit job (which grades images too) can read the file.
    server = server_container(objects)
    job = one(objects, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    for pod, container in (
        (one(objects, "Deployment")["spec"]["template"]["spec"], server),
        (job, job["containers"][0]),
    ):
        assert mounts_cover(container, "/etc/trustgate/pyxis/apiKey")
        (volume,) = [v for v in pod["volumes"] if v["name"] == "pyxis-key"]
        assert volume["secret"]["secretName"] == f"{RELEASE}-pyxis"
        assert volume["secret"]["items"] == [{"key": "apiKey", "path": "apiKey"}]


def test_an_existing_secret_is_mounted_and_none_is_created() -> None:
    values = {"freshness": {"pyxis": {"apiKeySecret": {"name": "pyxis", "key": "token"}}}}
    objects = render(values)
    assert not [o for o in objects if o["kind"] == "Secret" and "pyxis" in o["metadata"]["name"]]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "pyxis-key"]
    assert volume["secret"]["secretName"] == "pyxis"
    assert volume["secret"]["items"] == [{"key": "token", "path": "apiKey"}]
    assert config_of(objects)["freshness"]["pyxis"]["apiKeyFile"] == "/etc/trustgate/pyxis/apiKey"


def test_without_a_key_nothing_is_mounted() -> None:
    objects = render()
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert "pyxis-key" not in {v["name"] for v in pod["volumes"]}
    assert "freshness" not in config_of(objects)


def test_a_key_in_the_config_section_is_refused() -> None:
    inline = {"config": {"freshness": {"pyxis": {"apiKey": PYXIS_KEY}}}}
    with pytest.raises(helm.HelmValuesError, match="/config/freshness/pyxis/apiKey") as refused:
        render(inline)
    assert PYXIS_KEY not in str(refused.value)
    assert "freshness.pyxis.apiKeySecret" in str(refused.value)  # says where it goes


@pytest.mark.parametrize(
    "values",
    [
        {"freshness": {"pyxis": {"apiKey": PYXIS_KEY, "apiKeySecret": {"name": "pyxis"}}}},
        {
            "freshness": {"pyxis": {"apiKey": PYXIS_KEY}},
            "config": {"freshness": {"pyxis": {"apiKeyFile": "/somewhere"}}},
        },
    ],
)
def test_two_sources_of_the_key_fail_to_render_without_echoing_it(values: dict) -> None:
    with pytest.raises(helm.HelmError, match="Pyxis API key") as refused:
        render(values)
    assert PYXIS_KEY not in str(refused.value)


def notes(values: dict[str, Any] | None = None) -> str:
    manifests = helm.Chart.load(CHART).render(
        values, name=RELEASE, namespace=NAMESPACE, is_install=True
    )
    (text,) = [t for path, t in manifests.items() if path.endswith("NOTES.txt")]
    return " ".join(text.split())


def test_notes_say_what_is_exempt_and_open() -> None:
    default = notes()
    assert f"except {NAMESPACE}, kube-system to https://" in default
    assert "namespaces carrying it are checked" in default  # the upgrade impact
    assert "GET /metrics on port 9090" in default
    unguarded = notes(
        {
            "webhook": {"optOutLabel": OPT_OUT, "optOutGuard": {"enabled": False}},
            "networkPolicy": {"enabled": False},
        }
    )
    assert f"namespaces labelled {OPT_OUT}=true" in unguarded
    assert "WARNING: anyone who may label or create a namespace" in unguarded
    assert "WARNING: networkPolicy.enabled is false" in unguarded
