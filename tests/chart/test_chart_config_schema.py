"""One schema for trustgate.yaml: the chart's `config` values are checked by the server's own.

values.schema.json's `config` part is made from webhook/config/schema.py (`make schema`).
Here a real Helm refuses what the server refuses at start-up, accepts what it accepts,
and the file is compared with the server's schema itself, not only with the generator.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.chart.test_chart import CHART, RELEASE, one, render
from webhook.config import parse_config
from webhook.config.chartschema import chart_config_schema
from webhook.config.schema import SCHEMA
from webhook.core.errors import ConfigError


def chart_config() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    config: dict[str, Any] = schema["properties"]["config"]
    return config


def test_the_chart_schema_is_made_from_the_server_schema() -> None:
    assert chart_config() == chart_config_schema(), (
        "charts/trustgate/values.schema.json's config is stale: run `make schema`"
    )


def test_every_server_rule_is_in_the_chart_and_only_two_are_added() -> None:
    """Independent of the generator: the file against SCHEMA, difference by difference."""
    chart = copy.deepcopy(chart_config())
    server = copy.deepcopy(SCHEMA)
    del server["$schema"]
    # The chart's own refusals: config is rendered into a ConfigMap the chart mounts.
    pyxis = chart["properties"]["freshness"]["properties"]["pyxis"]
    assert pyxis["not"] == {"required": ["apiKey"]}
    assert "never here" in pyxis["properties"].pop("apiKey")["const"]
    del pyxis["not"], pyxis["description"]
    server_pyxis = server["properties"]["freshness"]["properties"]["pyxis"]
    del server_pyxis["properties"]["apiKey"], server_pyxis["not"]
    cache = chart["properties"]["cache"]
    assert cache.pop("not") == {"required": ["shared"]}
    assert "never here" in cache["properties"].pop("shared")["const"]
    del server["properties"]["cache"]["properties"]["shared"]
    del chart["description"]
    assert chart == server


# --- the chart refuses what the server refuses -------------------------------------------


REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"deadlineSecond": 5}, "at '/config': additional properties 'deadlineSecond' not allowed"),
    ({"defaults": {"noMatch": "maybe"}}, "/config/defaults/noMatch"),
    ({"defaults": {"nomatch": "deny"}}, "additional properties 'nomatch' not allowed"),
    ({"log": {"level": "verbose"}}, "/config/log/level"),
    ({"maxRequestBytes": 100}, "/config/maxRequestBytes"),
    ({"admission": {"maxImages": 0}}, "/config/admission/maxImages"),
    ({"network": {"perHostConcurrency": 0}}, "/config/network/perHostConcurrency"),
    ({"network": {"retries": 3}}, "additional properties 'retries' not allowed"),
    ({"conditions": {"processes": 17}}, "/config/conditions/processes"),
    ({"cache": {"gradeTTL": 86400}}, "/config/cache/gradeTTL"),
    ({"cache": {"digestTtl": 60}}, "additional properties 'digestTtl' not allowed"),
    ({"freshness": {"pyxis": {"url": "catalog.redhat.com"}}}, "/config/freshness/pyxis/url"),
    ({"freshness": {"static": {"path": "/g.yaml"}}}, "additional properties 'path' not allowed"),
    ({"sigstore": {"tufUrl": "ftp://mirror"}}, "/config/sigstore/tufUrl"),
    ({"registries": {"quay.io": {"insecur": True}}}, "additional properties 'insecur' not allowed"),
    ({"registries": {"quay.io": {"insecure": "yes"}}}, "/config/registries/quay.io/insecure"),
    ({"registries": {"quay.io": "robot:secret"}}, "/config/registries/quay.io"),
    ({"registries": {"q.io": {"credentials": "/c", "username": "u"}}}, "/config/registries/q.io"),
    ({"policies": {"reloadIntervalSeconds": -1}}, "/config/policies/reloadIntervalSeconds"),
]


@pytest.mark.parametrize(("config", "message"), REFUSED, ids=[m for _, m in REFUSED])
def test_the_chart_refuses_what_the_server_refuses(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError):
        parse_config(config)
    with pytest.raises(helm.HelmValuesError) as refused:
        render({"config": config})
    assert message in str(refused.value)


def test_a_deadline_typo_fails_helm_template() -> None:
    """`config.deadlineSecond: 5` used to render and crash-loop the pods."""
    with pytest.raises(helm.HelmValuesError) as refused:
        render({"config": {"deadlineSecond": 5}})
    assert "at '/config': additional properties 'deadlineSecond' not allowed" in str(refused.value)
    report = helm.lint(CHART, {"config": {"deadlineSecond": 5}}, strict=True)
    assert any("deadlineSecond" in error for error in map(str, report["errors"]))


# --- and accepts what it accepts ---------------------------------------------------------


FULL: dict[str, Any] = {
    "defaults": {"noMatch": "warn"},
    "deadlineSeconds": 7.5,
    "maxRequestBytes": 2097152,
    "admission": {"maxImages": 50, "recheckUnchangedImages": True},
    "policies": {"reloadIntervalSeconds": 0},
    "log": {"format": "text", "level": "debug"},
    "registries": {
        "quay.io": {"credentials": "/etc/trustgate/registry/quay/.dockerconfigjson"},
        "registry.internal:5000": {"ca": "/etc/ca.pem", "username": "robot", "password": "p"},
        "localhost:5000": {"insecure": True},
    },
    "network": {
        "perHostConcurrency": 4,
        "perHostQueueSeconds": 0.5,
        "callTimeoutSeconds": 3,
        "breakerFailures": 3,
        "breakerOpenSeconds": 10,
        "reviewBudgetBytes": 1048576,
        "reviewThreads": 8,
    },
    "conditions": {"costSeconds": 0.25, "processes": 4},
    "freshness": {
        "pyxis": {"url": "https://pyxis.example/api", "timeoutSeconds": 2},
        "static": {"file": "/etc/trustgate/grades.yaml"},
    },
    "cache": {
        "digestTTL": 30,
        "digestSize": 100,
        "verifiedTTL": 60,
        "verifiedSize": 100,
        "failureTTL": 5,
        "failureSize": 10,
        "gradeTTL": 600,
        "gradeSize": 100,
    },
    "sigstore": {"refreshTrustedRoot": True, "refreshTimeoutSeconds": 5, "tufUrl": "https://t"},
    "kubernetes": {"kubeconfig": "/etc/trustgate/kubeconfig", "context": "admin"},
    "credentials": {
        "pullSecrets": True,
        "namespaces": ["team-a"],
        "providers": [{"type": "acr", "registries": ["*.azurecr.io"], "clientId": "c"}],
        "kubeletPlugins": {"config": "/etc/tg/plugins.yaml", "binDir": "/usr/libexec/tg"},
    },
}


def test_every_section_the_server_accepts_is_described_and_renders_as_given() -> None:
    assert set(FULL) == set(SCHEMA["properties"])  # every top-level key of the server's
    described = chart_config()
    assert described["additionalProperties"] is False
    assert set(described["properties"]) == set(FULL)
    objects = render({"config": FULL})
    rendered = one(objects, "ConfigMap", f"{RELEASE}-config")["data"]["trustgate.yaml"]
    data = yaml.safe_load(rendered)
    assert data == FULL
    parse_config(data)


# --- what the chart refuses beyond the server, and why -----------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"freshness": {"pyxis": {"apiKey": "k"}}},
            "give the key as freshness.pyxis.apiKey or freshness.pyxis.apiKeySecret",
        ),
        (
            {"cache": {"shared": {"url": "redis://r:6379/0", "keyFile": "/etc/k"}}},
            "give the values cache.shared.url, cache.shared.keySecret",
        ),
    ],
)
def test_what_a_config_map_must_not_hold_is_refused_with_what_to_do(
    config: dict[str, Any], message: str
) -> None:
    parse_config(config)  # the server would take it from a file it reads...
    with pytest.raises(helm.HelmValuesError) as refused:
        render({"config": config})  # ...the chart points to the values that work
    assert message in str(refused.value)
