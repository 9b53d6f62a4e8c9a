"""webhook.services: the registries section, including Docker credentials files."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from webhook.core.errors import ConfigError
from webhook.registry.client import RegistrySettings
from webhook.services import docker_credentials, registry_settings

HOST = "registry.example.com:5000"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "config.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.mark.parametrize(
    "key",
    [
        HOST,
        f"https://{HOST}",
        f"https://{HOST}/v1/",
        f"http://{HOST}/v2/",
        HOST.upper(),
    ],
)
def test_entry_key_spellings_resolve(tmp_path: Path, key: str) -> None:
    path = write(tmp_path, {"auths": {"other.example": {"auth": b64("x:y")},
                                      key: {"auth": b64("alice:s3cret")}}})  # fmt: skip
    assert docker_credentials(path, HOST) == ("alice", "s3cret")


def test_host_with_other_port_does_not_match(tmp_path: Path) -> None:
    path = write(tmp_path, {"auths": {"registry.example.com:5001": {"auth": b64("a:b")}}})
    with pytest.raises(ConfigError, match=r"no entry for registry\.example\.com:5000"):
        docker_credentials(path, HOST)


def test_docker_hub_uses_its_index_address(tmp_path: Path) -> None:
    path = write(tmp_path, {"auths": {"https://index.docker.io/v1/": {"auth": b64("u:p")}}})
    assert docker_credentials(path, "docker.io") == ("u", "p")


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"username": "bob", "password": "pw"}, ("bob", "pw")),
        ({"auth": b64("carol:pa:ss")}, ("carol", "pa:ss")),
        ({"auth": b64("dave:"), "username": "ignored", "password": "ignored"}, ("dave", "")),
        ({"auth": "", "username": "erin", "password": "pw"}, ("erin", "pw")),
    ],
)
def test_entry_forms(tmp_path: Path, entry: dict[str, str], expected: tuple[str, str]) -> None:
    path = write(tmp_path, {"auths": {HOST: entry}})
    assert docker_credentials(path, HOST) == expected


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", r"config\.json is not valid JSON"),
        ('["auths"]', r'has no "auths" object'),
        ({"credHelpers": {}}, r'has no "auths" object'),
        ({"auths": {}}, r"has no entry for registry\.example\.com:5000 \(it has: none\)"),
        ({"auths": {"a.example": {}}}, r"no entry for .*\(it has: a\.example\)"),
        ({"auths": {HOST: "alice"}}, r"the entry for .* is not an object"),
        ({"auths": {HOST: {"auth": "!!not base64!!"}}}, r"auth of .* is not valid base64"),
        ({"auths": {HOST: {"auth": b64("no-colon")}}}, r"does not decode to username:password"),
        ({"auths": {HOST: {"auth": 42}}}, r"auth of .* is not a string"),
        ({"auths": {HOST: {"identitytoken": "t"}}}, r"neither auth nor username/password"),
    ],
)
def test_bad_files_are_config_errors(tmp_path: Path, content: Any, message: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(ConfigError, match=message) as raised:
        docker_credentials(path, HOST)
    assert f"registries.{HOST}.credentials: {path}" in str(raised.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"credentials: .*missing\.json does not exist"):
        docker_credentials(tmp_path / "missing.json", HOST)


def test_registry_settings_fill_credentials_from_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, {"auths": {f"https://{HOST}": {"auth": b64("alice:s3cret")}}})
    settings = registry_settings({HOST: {"insecure": True, "credentials": str(path)}})
    assert settings == {HOST: RegistrySettings(insecure=True, username="alice", password="s3cret")}


def test_registry_settings_keep_inline_credentials() -> None:
    settings = registry_settings({"Quay.io": {"username": "u", "password": "p"}})
    assert settings == {"quay.io": RegistrySettings(username="u", password="p")}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"credentials": "x", "username": "u"}, r"either credentials or username/password"),
        ({"credentials": 3}, r"registries\.h\.credentials must be a file path"),
        ({"credentials": ""}, r"registries\.h\.credentials must be a file path"),
        ({"token": "t"}, r"unknown field 'token' \(known: ca, credentials, insecure"),
        ({"insecure": "yes"}, r"registries\.h\.insecure must be true or false"),
        ({"ca": "/nonexistent/ca.pem"}, r"registries\.h\.ca: /nonexistent/ca\.pem is not"),
    ],
)
def test_registry_settings_errors(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        registry_settings({"h": entry})


def test_registry_settings_name_the_missing_credentials_file(tmp_path: Path) -> None:
    missing = tmp_path / "gone.json"
    with pytest.raises(ConfigError, match=rf"registries\.h\.credentials: {missing} does not"):
        registry_settings({"h": {"credentials": str(missing)}})
