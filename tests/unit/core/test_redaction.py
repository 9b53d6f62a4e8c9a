"""No error message echoes a secret from the configuration.

The configuration's secrets (the Pyxis API key, a Redis URL's password, a
registry password) must not appear in a schema error, a YAML syntax error,
or the start-up failure of a real ``trustgate serve``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from webhook.config import load_config, parse_config
from webhook.core.errors import ConfigError
from webhook.core.redaction import hide_tokens, holds_secret, is_secret_field, url_has_secret

SECRET = "s3cr3t-Pyxis-k3y-0123456789"


def _refusal(data: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="t.yaml")
    return str(caught.value)


def test_both_api_key_and_key_file_are_refused_without_the_key() -> None:
    message = _refusal({"freshness": {"pyxis": {"apiKey": SECRET, "apiKeyFile": "/k"}}})
    assert message == "t.yaml: field freshness.pyxis: set only one of apiKey and apiKeyFile"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"freshness": {"pyxis": {"apiKey": [SECRET]}}}, "freshness.pyxis.apiKey"),
        ({"freshness": {"pyxis": {"apiKey": {"k": SECRET}}}}, "freshness.pyxis.apiKey"),
        (
            {"freshness": {"pyxis": {"apiKey": SECRET, "timeoutSeconds": 0}}},
            "freshness.pyxis.timeoutSeconds",
        ),
        ({"freshness": {"pyxis": [{"apiKey": SECRET}]}}, "freshness.pyxis"),
        ({"freshness": "apiKey: " + SECRET}, "freshness"),
        (
            {"cache": {"shared": {"url": f"http://user:{SECRET}@redis:6379", "keyFile": "/k"}}},
            "cache.shared.url",
        ),
        ({"cache": {"shared": [f"redis://:{SECRET}@redis"]}}, "cache.shared"),
        ({"freshness": {"pyxis": {"url": f"ftp://u:{SECRET}@pyxis"}}}, "freshness.pyxis.url"),
        ({"registries": [{"quay.io": {"password": SECRET}}]}, "registries"),
        (
            {
                "registries": {"quay.io": {"username": "u", "password": SECRET}},
                "log": {"level": "loud"},
            },
            "log.level",
        ),
        ({"registries": {"quay.io": {"password": SECRET, "token": 1}}}, "registries.quay.io"),
    ],
)
def test_a_schema_error_never_shows_a_secret(data: Any, field: str) -> None:
    message = _refusal(data)
    assert SECRET not in message
    assert f"field {field}" in message


def test_a_value_that_is_no_secret_is_still_shown() -> None:
    message = _refusal({"freshness": {"pyxis": {"apiKey": SECRET, "url": "ftp://x"}}})
    assert "field freshness.pyxis.url: 'ftp://x' does not match" in message
    assert SECRET not in message


@pytest.mark.parametrize(
    "text",
    [
        f'freshness:\n  pyxis:\n    apiKey: "{SECRET}\n',
        f"freshness:\n  pyxis:\n    apiKey: {SECRET}\n   bad: [\n",
        f"freshness:\n  pyxis:\n    apiKey: {SECRET}\n    apiKey: {SECRET}\n",
        f"freshness: {{pyxis: {{apiKey: {SECRET}}}}}\n\t",
    ],
    ids=["open quote", "bad indent", "duplicate key", "tab"],
)
def test_a_yaml_syntax_error_names_the_line_not_its_text(tmp_path: Path, text: str) -> None:
    path = tmp_path / "trustgate.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"trustgate.yaml: not valid YAML at line \d+") as caught:
        load_config(path)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("apiKey", True),
        ("password", True),
        ("clientSecret", True),
        ("apiKeyFile", False),
        ("passwordFile", False),
        ("url", False),
    ],
)
def test_secret_field_names(name: str, secret: bool) -> None:
    assert is_secret_field(name) is secret


def test_urls_with_a_password_are_secrets_and_others_are_not() -> None:
    assert url_has_secret("redis://:pw@host:6379")
    assert url_has_secret("rediss://user:pw@host")
    assert not url_has_secret("redis://host:6379/0")
    assert not url_has_secret("user@example.com")
    assert holds_secret({"a": [{"b": "redis://u:pw@h"}]})
    assert not holds_secret({"a": [{"b": "redis://h"}]})


def test_serve_start_up_failure_does_not_print_the_key(tmp_path: Path) -> None:
    """The real process: both apiKey and apiKeyFile, and a type mistake beside the key."""
    (tmp_path / "p.yaml").write_text(
        "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: p}\n"
        "spec: {registries: ['quay.io/**']}\n"
    )
    key_file = tmp_path / "key"
    key_file.write_text(SECRET)
    for number, text in enumerate(
        [
            f"freshness: {{pyxis: {{apiKey: {SECRET}, apiKeyFile: {key_file}}}}}\n",
            f"freshness: {{pyxis: {{apiKey: [{SECRET}]}}}}\n",
            f"cache: {{shared: {{url: 'http://u:{SECRET}@r:6379', keyFile: {key_file}}}}}\n",
            f'freshness: {{pyxis: {{apiKey: "{SECRET}}}}}\n',
        ]
    ):
        config = tmp_path / f"trustgate-{number}.yaml"
        config.write_text(text)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "webhook.cli.main",
                "serve",
                "--policies",
                str(tmp_path),
                "--config",
                str(config),
                "--port",
                "0",
                "--workers",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 2, output
        assert "field" in output or "not valid YAML" in output
        assert SECRET not in output
        assert "Traceback" not in output


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{SECRET[:6]}/{SECRET[6:]}@redis:6379",
        f"redis://user:{SECRET[:6]}#{SECRET[6:]}@redis",
        f"redis://user:{SECRET[:6]}?{SECRET[6:]}@redis:1",
        f"redis://user:{SECRET}@[::1",
    ],
)
def test_a_redis_url_that_does_not_parse_is_refused_without_its_password(
    tmp_path: Path, url: str
) -> None:
    """The URL passes the schema; the Redis URL parser's message quoted part of the password."""
    from webhook.cache.shared import SharedSettings

    key = tmp_path / "key"
    key.write_bytes(b"k" * 32)
    with pytest.raises(ConfigError, match="not shown: it may hold credentials") as caught:
        SharedSettings.from_config({"url": url, "keyFile": str(key)})
    assert SECRET[:6] not in str(caught.value)


def test_a_redis_url_with_a_bad_port_names_the_port_not_the_password(tmp_path: Path) -> None:
    from webhook.cache.shared import SharedSettings

    key = tmp_path / "key"
    key.write_bytes(b"k" * 32)
    with pytest.raises(ConfigError) as caught:
        SharedSettings.from_config({"url": f"redis://u:{SECRET}@r:port", "keyFile": str(key)})
    assert str(caught.value) == (
        "cache.shared.url: redis://r:port: Port could not be cast to integer value as 'port'"
    )


def test_the_pyxis_settings_never_show_the_key() -> None:
    from webhook.freshness.pyxis import PyxisSettings

    assert SECRET not in repr(PyxisSettings(api_key=SECRET))


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("refused eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln now", "refused (token hidden) now"),
        ("assertion eyJhbGciOiJSUzI1NiJ9.eyJzdW", "assertion (token hidden)"),
        ("password QVdTOmV5SndZWGxzYjJGa0lqb2lXbGhvYlZ", "password (token hidden)"),
        ("ya29.a0AfB_byC3kDq9ZlXm2Pp8sTuVw4xYz7AbCdEf end", "ya29.(token hidden) end"),
        # Long words that are not random stay: paths, names, lowercase hex.
        (
            "/usr/libexec/kubernetes/kubelet-plugins/credential-provider failed",
            "/usr/libexec/kubernetes/kubelet-plugins/credential-provider failed",
        ),
        (
            "digest 3f786850e387550fdab836ed7e6dc881de23001b",
            "digest 3f786850e387550fdab836ed7e6dc881de23001b",
        ),
        (
            "AADSTS700213: No matching federated identity record",
            "AADSTS700213: No matching federated identity record",
        ),
    ],
)
def test_tokens_in_free_text_are_hidden_and_other_words_kept(text: str, shown: str) -> None:
    assert hide_tokens(text) == shown
