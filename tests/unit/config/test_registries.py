"""webhook.config.registries: the registries section, including Docker credentials files."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from webhook.config.registries import docker_credentials, registry_settings
from webhook.core.errors import ConfigError
from webhook.registry.client import RegistrySettings

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
    with pytest.raises(ConfigError, match=r'no entry for registry\.example\.com:5000 \(it has: "r'):
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
        ("{not json", r"config\.json: is not valid JSON \(Expecting property name"),
        ('["auths"]', r"config\.json: is not a JSON object"),
        ({"credHelpers": {}}, r'has no "auths" object'),
        ({"auths": {}}, r"has no entry for registry\.example\.com:5000 \(it has: none\)"),
        ({"auths": {"a.example": {}}}, r'no entry for .*\(it has: "a\.example"\)'),
        ({"auths": {HOST: "alice"}}, r"the entry for .* is not an object"),
        ({"auths": {HOST: {"auth": "!!not base64!!"}}}, r": auth is not base64 of username:pass"),
        ({"auths": {HOST: {"auth": b64("no-colon")}}}, r"auth decodes to no ':'; it must be"),
        ({"auths": {HOST: {"auth": 42}}}, r"the entry for .*: auth is not a string"),
        ({"auths": {HOST: {"identitytoken": "t"}}}, r"gives no login: no auth, username or"),
        ({"auths": {HOST: {}}}, r"when a credential store \(credsStore, credHelpers\) holds"),
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


SECRET = "hunter2-pull-password"


def test_a_docker_login_config_json_gives_its_auths_entry(tmp_path: Path) -> None:
    """What ``docker login`` writes: helper keys beside ``auths``, an identity token beside
    ``auth``, Docker Hub's login left to the credential store."""
    path = write(
        tmp_path,
        {
            "auths": {
                "https://index.docker.io/v1/": {},
                HOST: {"auth": b64(f"alice:{SECRET}"), "identitytoken": "id-token"},
                "ghcr.io": {"auth": b64("bob:gh"), "email": "bob@example.com"},
            },
            "credsStore": "desktop",
            "credHelpers": {"gcr.io": "gcloud", HOST: "secretservice"},
            "HttpHeaders": {"User-Agent": "Docker-Client/24.0.7 (linux)"},
            "psFormat": "table {{.ID}}",
            "currentContext": "default",
        },
    )
    assert docker_credentials(path, HOST) == ("alice", SECRET)
    assert docker_credentials(path, "ghcr.io") == ("bob", "gh")
    # Docker Hub's login is in the store, which is not read: the error says so.
    with pytest.raises(ConfigError, match=r'entry for "https://index\.docker\.io/v1/" gives no'):
        docker_credentials(path, "docker.io")


def test_keys_are_matched_as_the_kubelet_matches_them(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "auths": {
                "*.example.com:5000": {"auth": b64("glob:g")},
                f"{HOST}/team": {"auth": b64("team:t")},
                f"https://{HOST}/v1/": {"auth": b64("host:h")},
            }
        },
    )
    # The literal key before the glob; the key with a path covers only part of the host.
    assert docker_credentials(path, HOST) == ("host", "h")
    assert docker_credentials(path, "other.example.com:5000") == ("glob", "g")
    team_only = write(tmp_path, {"auths": {f"{HOST}/team": {"auth": b64("team:t")}}})
    with pytest.raises(ConfigError, match=r"without a repository path"):
        docker_credentials(team_only, HOST)


def test_the_kubelets_forms_of_auth_are_read(tmp_path: Path) -> None:
    unpadded = b64("u:pw").rstrip("=")
    assert unpadded != b64("u:pw")
    path = write(tmp_path, {"auths": {HOST: {"AUTH": unpadded}}})
    assert docker_credentials(path, HOST) == ("u", "pw")


def test_a_broken_entry_for_another_host_makes_the_file_unreadable(tmp_path: Path) -> None:
    """As a pull secret with one bad entry fails the kubelet's reading of the whole secret."""
    path = write(
        tmp_path,
        {"auths": {HOST: {"auth": b64("u:p")}, "other.example": {"password": 5}}},
    )
    with pytest.raises(ConfigError, match=r'entry for "other\.example": password is not a str'):
        docker_credentials(path, HOST)


def test_errors_never_show_a_secret(tmp_path: Path) -> None:
    hidden = b64(f"alice:{SECRET}")
    contents = [
        {"auths": {HOST: {"auth": hidden + "!"}}},
        {"auths": {HOST: {"auth": b64(f"alice{SECRET}")}}},
        {"auths": {f"https://alice:{SECRET}@other.example": {"auth": hidden}}},
        {"auths": {"other.example": {"username": "alice", "password": SECRET}}},
        json.dumps({"auths": {HOST: {"auth": hidden}}})[:-3],  # cut short: not JSON
    ]
    for content in contents:
        path = write(tmp_path, content)
        with pytest.raises(ConfigError) as raised:
            docker_credentials(path, HOST)
        assert SECRET not in str(raised.value) and hidden not in str(raised.value), raised.value


def test_a_long_list_of_keys_is_cut(tmp_path: Path) -> None:
    path = write(tmp_path, {"auths": {f"r{i}.example": {"auth": b64("u:p")} for i in range(20)}})
    with pytest.raises(ConfigError, match=r'"r7\.example" and 12 more\)') as raised:
        docker_credentials(path, HOST)
    assert "r8.example" not in str(raised.value)


def test_an_oversized_file_is_refused_unparsed(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b'{"auths": {' + b" " * (512 * 1024) + b"}}")
    with pytest.raises(ConfigError, match=r"config\.json is over 262,144 bytes"):
        docker_credentials(path, HOST)


def test_a_directory_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"credentials: .* cannot be read: Is a directory"):
        docker_credentials(tmp_path, HOST)
