"""The global configuration file."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhook.config import ConditionsConfig, Config, NetworkConfig, load_config, parse_config
from webhook.core.errors import ConfigError
from webhook.registry.network import NetworkLimits
from webhook.signatures.conditions import COST_SECONDS, PROCESSES


def test_defaults_without_a_file() -> None:
    config = load_config(None)
    assert config == Config()
    assert config.no_match == "deny"


def test_full_file(tmp_path: Path) -> None:
    path = tmp_path / "trustgate.yaml"
    path.write_text(
        "defaults: {noMatch: warn}\n"
        "deadlineSeconds: 5\n"
        "maxRequestBytes: 2048\n"
        "policies: {reloadIntervalSeconds: 0}\n"
        "log: {format: text, level: debug}\n"
        "registries: {'localhost:5000': {insecure: true}}\n"
        "freshness: {pyxis: {url: 'http://127.0.0.1:1'}}\n"
    )
    config = load_config(path)
    assert (config.no_match, config.deadline_seconds, config.max_request_bytes) == (
        "warn",
        5.0,
        2048,
    )
    assert config.reload_interval_seconds == 0
    assert (config.log_format, config.log_level) == ("text", "debug")
    assert config.registries["localhost:5000"] == {"insecure": True}
    with pytest.raises(TypeError):
        config.registries["x"] = {}  # type: ignore[index]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1], "must be a mapping"),
        ({"defaults": {"noMatch": "maybe"}}, r"field defaults\.noMatch: 'maybe' is not one of"),
        ({"deadlineSeconds": 31}, r"field deadlineSeconds: 31 is greater than the maximum of 29"),
        ({"deadlineSeconds": 0}, "field deadlineSeconds"),
        ({"defualts": {}}, r"field \(top level\): Additional properties are not allowed"),
        ({"log": {"format": "xml"}}, r"field log\.format"),
    ],
)
def test_invalid_configuration(data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(data, source="t.yaml")


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_recheck_unchanged_images_is_off_by_default_and_schema_checked() -> None:
    assert Config().recheck_unchanged_images is False
    assert parse_config({"admission": {}}).recheck_unchanged_images is False
    assert parse_config({"admission": {"recheckUnchangedImages": True}}).recheck_unchanged_images
    with pytest.raises(ConfigError, match=r"field admission\.recheckUnchangedImages: 'yes'"):
        parse_config({"admission": {"recheckUnchangedImages": "yes"}})
    with pytest.raises(ConfigError, match="field admission: Additional properties"):
        parse_config({"admission": {"recheck": True}})


def test_network_limits_and_their_defaults() -> None:
    assert parse_config({}).network == NetworkConfig()
    network = parse_config(
        {
            "network": {
                "perHostConcurrency": 4,
                "perHostQueueSeconds": 0.25,
                "breakerFailures": 3,
                "breakerOpenSeconds": 10,
                "reviewBudgetBytes": 1048576,
                "reviewThreads": 16,
            }
        }
    ).network
    assert network == NetworkConfig(NetworkLimits(4, 0.25, 3, 10.0, 1048576), 16)


@pytest.mark.parametrize(
    ("network", "message"),
    [
        ({"perHostConcurrency": 0}, "network.perHostConcurrency: 0 is less than the minimum"),
        ({"reviewBudgetBytes": 10}, "network.reviewBudgetBytes: 10 is less than the minimum"),
        ({"breakerOpenSeconds": 0}, "network.breakerOpenSeconds"),
        ({"retries": 3}, "network: Additional properties are not allowed"),
    ],
)
def test_invalid_network_limits(network: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"network": network})


@pytest.mark.parametrize(
    ("cache", "message"),
    [
        ({"bogus": 1}, r"field cache: .*'bogus' was unexpected"),
        ({"digestTtl": 5}, r"field cache: .*'digestTtl' was unexpected"),
        ({"verifiedTTL": 0}, r"field cache.verifiedTTL: 0 is less than or equal to"),
        ({"digestSize": 1.5}, r"field cache.digestSize: 1.5 is not of type 'integer'"),
        ({"gradeTTL": 86400}, r"field cache.gradeTTL: 86400 is greater than or equal to"),
        ({"shared": {"url": "redis://r:6379"}}, r"field cache.shared: 'keyFile' is a required"),
        (
            {"shared": {"url": "redis://r:6379", "keyFile": "/k", "keyfile": "/k"}},
            r"field cache.shared: .*'keyfile' was unexpected",
        ),
        (
            {"shared": {"url": "http://r:6379", "keyFile": "/k"}},
            r"field cache.shared.url: 'http://r:6379' does not match",
        ),
        (
            {"shared": {"url": "redis://r", "keyFile": "/k", "timeoutMilliseconds": 5000}},
            r"field cache.shared.timeoutMilliseconds: 5000 is greater than the maximum of 250",
        ),
        (
            {"shared": {"url": "redis://r", "keyFile": "/k", "waitMilliseconds": 60000}},
            r"field cache.shared.waitMilliseconds: 60000 is greater than the maximum of 10000",
        ),
    ],
)
def test_the_cache_section_is_schema_checked(cache: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"cache": cache})


def test_a_complete_cache_section_loads() -> None:
    shared = {
        "url": "rediss://redis.cache:6380/0",
        "keyFile": "/etc/trustgate/cache/key",
        "passwordFile": "/etc/trustgate/cache/password",
        "timeoutMilliseconds": 5,
        "retrySeconds": 10,
        "waitMilliseconds": 1500,
    }
    cache = {
        "digestTTL": 30,
        "digestSize": 100,
        "verifiedTTL": 300,
        "verifiedSize": 100,
        "failureTTL": 10,
        "failureSize": 10,
        "gradeTTL": 3600,
        "gradeSize": 100,
        "shared": shared,
    }
    assert parse_config({"cache": cache}).cache["shared"] == shared


def test_conditions_default_to_the_evaluator_s_own_limits_and_load() -> None:
    assert (
        parse_config({}).conditions
        == ConditionsConfig(COST_SECONDS, PROCESSES)
        == (ConditionsConfig(0.5, 2))
    )
    # The default cost limit is not refused under a short deadline: the deadline cuts it.
    assert parse_config({"deadlineSeconds": 0.3}).conditions.cost_seconds == 0.5
    loaded = parse_config(
        {"deadlineSeconds": 4, "conditions": {"costSeconds": 1.5, "processes": 16}}
    )
    assert loaded.conditions == ConditionsConfig(1.5, 16)


@pytest.mark.parametrize(
    ("conditions", "message"),
    [
        ({"costSecond": 1}, r"field conditions: .*'costSecond' was unexpected"),
        ({"costSeconds": "1s"}, r"field conditions.costSeconds: '1s' is not of type 'number'"),
        ({"costSeconds": 0}, r"field conditions.costSeconds: 0 is less than or equal to"),
        ({"processes": 0}, r"field conditions.processes: 0 is less than the minimum of 1"),
        ({"processes": 17}, r"field conditions.processes: 17 is greater than the maximum of 16"),
        ({"processes": 1.5}, r"field conditions.processes: 1.5 is not of type 'integer'"),
        (
            {"costSeconds": 8},
            r"field conditions.costSeconds: 8 s must be below deadlineSeconds \(8 s\)",
        ),
        (
            {"costSeconds": 12},
            r"field conditions.costSeconds: 12 s must be below deadlineSeconds \(8 s\)",
        ),
    ],
)
def test_invalid_conditions_are_refused_naming_the_key(
    conditions: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match="^t.yaml: " + message):
        parse_config({"conditions": conditions}, source="t.yaml")


def test_a_cost_limit_at_a_short_deadline_is_refused_naming_both() -> None:
    with pytest.raises(
        ConfigError,
        match=r"conditions.costSeconds: 2 s must be below deadlineSeconds \(1.5 s\)",
    ):
        parse_config({"deadlineSeconds": 1.5, "conditions": {"costSeconds": 2}})


def test_max_images_defaults_to_200_and_is_schema_checked() -> None:
    assert Config().max_images == 200
    assert parse_config({"admission": {}}).max_images == 200
    assert parse_config({"admission": {"maxImages": 500}}).max_images == 500
    with pytest.raises(ConfigError, match=r"field admission\.maxImages: 0 is less than"):
        parse_config({"admission": {"maxImages": 0}})
    with pytest.raises(ConfigError, match=r"field admission\.maxImages: 'many'"):
        parse_config({"admission": {"maxImages": "many"}})


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"insecur": True}, r"field registries\.quay\.io: .*'insecur' was unexpected"),
        ({"insecure": "yes"}, r"field registries\.quay\.io\.insecure: 'yes' is not of type"),
        ({"ca": 3}, r"field registries\.quay\.io\.ca: 3 is not of type 'string'"),
        ({"credentials": ""}, r"field registries\.quay\.io\.credentials: .*'minLength' rule"),
        (
            {"credentials": "/c", "username": "u"},
            r"field registries\.quay\.io: set only one of credentials and username",
        ),
        (
            {"credentials": "/c", "password": "p"},
            r"field registries\.quay\.io: set only one of credentials and password$",
        ),
        ("robot:s3cret", r"field registries\.quay\.io: is not of type 'object' \(the value is not"),
    ],
)
def test_a_registry_entry_is_schema_checked_when_the_file_is_read(
    entry: object, message: str
) -> None:
    """Not only when a worker builds its registry client: the schema the chart and
    `policy lint --config` use refuses it too, and never prints a password."""
    with pytest.raises(ConfigError, match=message) as refused:
        parse_config({"registries": {"quay.io": entry}})
    assert "s3cret" not in str(refused.value)
