"""The chart's cache.shared values: the config it renders, the key Secret, the egress rule."""

from __future__ import annotations

import base64
from pathlib import Path
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
    render_upgrade,
)
from webhook.config import parse_config

SHARED: dict[str, Any] = {"cache": {"shared": {"url": "redis://redis.cache.svc:6380/0"}}}
RESTRICTED_EGRESS: dict[str, Any] = {
    "networkPolicy": {"enabled": True, "egress": [{"ports": [{"port": 443, "protocol": "TCP"}]}]}
}


def server_config(objects: list[dict]) -> dict[str, Any]:
    config_map = one(objects, "ConfigMap", f"{RELEASE}-config")
    data: dict[str, Any] = yaml.safe_load(config_map["data"]["trustgate.yaml"])
    return data


def test_without_a_url_nothing_changes() -> None:
    objects = render()
    assert "cache" not in server_config(objects)
    assert not [o for o in objects if o["kind"] == "Secret" and "cache" in o["metadata"]["name"]]
    assert "cache-key" not in str(one(objects, "Deployment"))


def test_a_url_renders_a_valid_shared_section_with_a_generated_key(tmp_path: Path) -> None:
    values = {**SHARED, "config": {"cache": {"verifiedTTL": 300}}}
    objects = render(values)
    config = server_config(objects)
    shared = config["cache"]["shared"]
    assert config["cache"]["verifiedTTL"] == 300  # the user's cache settings stay
    assert shared["url"] == "redis://redis.cache.svc:6380/0"
    assert parse_config(config).cache["shared"] == shared  # the server's own schema accepts it
    secret = one(objects, "Secret", f"{RELEASE}-cache-key")
    assert len(base64.b64decode(secret["data"]["key"])) >= 32
    spec = one(objects, "Deployment")["spec"]["template"]["spec"]
    server = next(c for c in spec["containers"] if c["name"] == "trustgate")
    assert mounts_cover(server, shared["keyFile"])
    volume = next(v for v in spec["volumes"] if v["name"] == "cache-key")
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    # Another install gets another key: it is generated, not shipped.
    assert one(render(values), "Secret", f"{RELEASE}-cache-key")["data"] != secret["data"]
    for obj in objects:
        for version in KUBERNETES:
            kubernetes_validate.validate(obj, version, strict=True)


def test_lint_strict_is_clean_with_every_shared_value() -> None:
    values = {
        **RESTRICTED_EGRESS,
        "cache": {
            "shared": {
                "url": "rediss://redis:6380/0",
                "passwordSecret": "redis-auth",
                "timeoutMilliseconds": 5,
                "retrySeconds": 10,
                "waitMilliseconds": 500,
                "networkPolicyPeers": [{"namespaceSelector": {}}],
            }
        },
    }
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version="v1.30.0")
    assert report["errors"] == []
    assert report["messages"] == []
    objects = render(values)
    shared = server_config(objects)["cache"]["shared"]
    assert (shared["timeoutMilliseconds"], shared["retrySeconds"]) == (5, 10)
    assert shared["waitMilliseconds"] == 500
    for obj in objects:
        for version in KUBERNETES:
            kubernetes_validate.validate(obj, version, strict=True)


def test_an_existing_key_secret_and_password_are_mounted_not_generated() -> None:
    values = {"cache": {"shared": {**SHARED["cache"]["shared"], "keySecret": "my-key",
                                   "passwordSecret": "redis-auth"}}}  # fmt: skip
    objects = render(values)
    assert not [o for o in objects if o["kind"] == "Secret" and "cache" in o["metadata"]["name"]]
    shared = server_config(objects)["cache"]["shared"]
    spec = one(objects, "Deployment")["spec"]["template"]["spec"]
    server = next(c for c in spec["containers"] if c["name"] == "trustgate")
    assert mounts_cover(server, shared["keyFile"])
    assert mounts_cover(server, shared["passwordFile"])
    secrets = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    assert (secrets["cache-key"], secrets["cache-password"]) == ("my-key", "redis-auth")
    assert "redis-auth" not in str(server_config(objects))  # the password stays in its Secret


def test_restricted_egress_gets_a_rule_for_redis() -> None:
    peers = [{"podSelector": {"matchLabels": {"app": "redis"}}}]
    values = {**RESTRICTED_EGRESS, "cache": {"shared": {**SHARED["cache"]["shared"],
                                                         "networkPolicyPeers": peers}}}  # fmt: skip
    policy = one(render(values), "NetworkPolicy")
    assert policy["spec"]["egress"] == [
        {"ports": [{"port": 443, "protocol": "TCP"}]},
        {"ports": [{"port": 6380, "protocol": "TCP"}], "to": peers},
    ]
    default_port = {**RESTRICTED_EGRESS, "cache": {"shared": {"url": "rediss://redis"}}}
    (_, rule) = one(render(default_port), "NetworkPolicy")["spec"]["egress"]
    assert rule == {"ports": [{"port": 6379, "protocol": "TCP"}]}
    # Open egress (no rules) stays open: no rule that would close it to registries.
    open_egress = {**SHARED, "networkPolicy": {"enabled": True}}
    assert "egress" not in one(render(open_egress), "NetworkPolicy")["spec"]


@pytest.mark.parametrize(
    "shared",
    [
        {"url": "http://redis:6379"},
        {"url": "redis://r", "keyfile": "x"},
        {"timeoutMilliseconds": 0},
    ],
)
def test_schema_refuses_bad_shared_values(shared: dict[str, Any]) -> None:
    with pytest.raises(Exception, match="cache"):
        render({"cache": {"shared": shared}})


def test_generated_key_is_kept_across_upgrades(tmp_path: Path) -> None:
    """Replicas must share one key: ``helm upgrade`` reuses the installed Secret."""
    installed = one(render(SHARED), "Secret", f"{RELEASE}-cache-key")
    upgraded, _ = render_upgrade(tmp_path, SHARED, installed)
    assert one(upgraded, "Secret", f"{RELEASE}-cache-key")["data"] == installed["data"]
