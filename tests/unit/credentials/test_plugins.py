"""Kubelet credential provider plug-ins, run with the kubelet's protocol and cached as it caches.

The plug-in is tests/support/credential_plugin.py, a real executable speaking
credentialprovider.kubelet.k8s.io/v1; its hostile modes hang, flood, answer
the wrong apiVersion or kind, answer no JSON, or fail with a message.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.registry import Registry, push_image
from webhook.core.deadline import Deadline
from webhook.core.errors import ConfigError, UpstreamError
from webhook.core.reference import parse_reference
from webhook.core.scope import Login
from webhook.credentials import plugins
from webhook.credentials.plugins import (
    RETRY_AFTER,
    PluginError,
    PluginSource,
    parse_response,
    plugin_sources,
)
from webhook.registry.client import RegistryClient, RegistrySettings

PLUGIN = Path(__file__).resolve().parents[2] / "support" / "credential_plugin.py"
PASSWORD = "AWS4kQm2VtZ8pXr7LhN3sWd9YbF6cJe1uGa5TzHq"
NAME = "test-provider"
V1 = "credentialprovider.kubelet.k8s.io/v1"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _config(
    tmp_path: Path,
    *args: str,
    match: str = '["*.example.com", "127.0.0.1:5000"]',
    default: str = "1h",
) -> tuple[Path, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    link = bin_dir / NAME
    if not link.exists():
        link.symlink_to(PLUGIN)
    log = tmp_path / "requests.log"
    config = tmp_path / "credential-providers.yaml"
    config.write_text(
        "apiVersion: kubelet.config.k8s.io/v1\n"
        "kind: CredentialProviderConfig\n"
        "providers:\n"
        f"  - name: {NAME}\n"
        f"    matchImages: {match}\n"
        f"    defaultCacheDuration: {default}\n"
        f"    apiVersion: {V1}\n"
        f"    args: {json.dumps(['--log', str(log), *args])}\n"
        "    env:\n"
        "      - {name: PLUGIN_USERNAME, value: robot}\n"
        f"      - {{name: PLUGIN_PASSWORD, value: {PASSWORD}}}\n"
    )
    return config, bin_dir


def _source(tmp_path: Path, *args: str, clock: Clock | None = None, **kw: str) -> PluginSource:
    config, bin_dir = _config(tmp_path, *args, **kw)
    (source,) = plugin_sources(config, bin_dir)
    if clock is None:
        return source
    return PluginSource(source.provider, bin_dir, clock=clock)


def _runs(tmp_path: Path) -> list[dict[str, str]]:
    log = tmp_path / "requests.log"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def _logins(source: PluginSource, image: str, seconds: float = 10) -> list[Login]:
    return list(source.logins(parse_reference(image), Deadline(seconds)))


def test_the_plugin_is_asked_as_the_kubelet_asks_and_its_auth_becomes_logins(
    tmp_path: Path,
) -> None:
    source = _source(tmp_path)
    assert source.name == "plugin test-provider" and source.kind == "plugin"
    logins = _logins(source, "reg.example.com/team/app:1.2")
    assert logins == [Login("robot", PASSWORD, "plugin test-provider", "plugin")]
    assert logins[0].password == PASSWORD
    assert _runs(tmp_path) == [
        {"apiVersion": V1, "kind": "CredentialProviderRequest", "image": "reg.example.com/team/app"}
    ]


def test_an_image_outside_match_images_runs_nothing(tmp_path: Path) -> None:
    source = _source(tmp_path)
    assert source.matches("reg.example.com") and source.matches("127.0.0.1:5000")
    assert not source.matches("example.com") and not source.matches("127.0.0.1:5001")
    assert _logins(source, "quay.io/team/app") == []
    assert _logins(source, "a.b.example.com/app") == []
    assert _runs(tmp_path) == []


@pytest.mark.parametrize(
    ("key_type", "again", "other_repository", "other_registry"),
    [("Registry", 0, 0, 1), ("Image", 0, 1, 1), ("Global", 0, 0, 0)],
)
def test_answers_are_cached_under_the_key_type_they_name(
    tmp_path: Path, key_type: str, again: int, other_repository: int, other_registry: int
) -> None:
    source = _source(tmp_path, "--cache-key-type", key_type, "--cache-duration", "5m")
    _logins(source, "reg.example.com/team/app")
    counts = []
    for image in ("reg.example.com/team/app:2", "reg.example.com/other/app", "x.example.com/app"):
        before = len(_runs(tmp_path))
        _logins(source, image)
        counts.append(len(_runs(tmp_path)) - before)
    assert counts == [again, other_repository, other_registry]


def test_a_cached_answer_lasts_its_cache_duration(tmp_path: Path) -> None:
    clock = Clock()
    source = _source(tmp_path, "--cache-duration", "10m", clock=clock)
    _logins(source, "reg.example.com/app")
    clock.now += 599
    _logins(source, "reg.example.com/app")
    assert len(_runs(tmp_path)) == 1
    clock.now += 2
    assert _logins(source, "reg.example.com/app")[0].password == PASSWORD
    assert len(_runs(tmp_path)) == 2


def test_without_cache_duration_the_provider_default_applies(tmp_path: Path) -> None:
    clock = Clock()
    source = _source(tmp_path, clock=clock, default="30m")
    _logins(source, "reg.example.com/app")
    clock.now += 1790
    _logins(source, "reg.example.com/app")
    assert len(_runs(tmp_path)) == 1
    clock.now += 20
    _logins(source, "reg.example.com/app")
    assert len(_runs(tmp_path)) == 2


@pytest.mark.parametrize(("args", "default"), [(("--cache-duration", "0s"), "1h"), ((), "0s")])
def test_a_zero_duration_caches_nothing(
    tmp_path: Path, args: tuple[str, ...], default: str
) -> None:
    source = _source(tmp_path, *args, default=default)
    for _ in range(3):
        assert _logins(source, "reg.example.com/app")[0].username == "robot"
    assert len(_runs(tmp_path)) == 3


def test_auth_keys_are_matched_to_the_image_with_the_kubelets_rules(tmp_path: Path) -> None:
    source = _source(tmp_path, "--registry", "other.example.com", "--cache-duration", "0s")
    assert _logins(source, "reg.example.com/app") == []
    source = _source(tmp_path, "--registry", "reg.example.com/team", "--cache-duration", "0s")
    assert [x.username for x in _logins(source, "reg.example.com/team/app")] == ["robot"]
    assert _logins(source, "reg.example.com/other/app") == []
    source = _source(tmp_path, "--registry", "*.example.com", "--cache-duration", "0s")
    assert [x.username for x in _logins(source, "reg.example.com/app")] == ["robot"]


def test_concurrent_lookups_of_one_image_share_one_run(tmp_path: Path) -> None:
    source = _source(tmp_path, "--mode", "slow", "--delay", "1", "--cache-duration", "0s")
    results: list[list[Login]] = []

    def look() -> None:
        results.append(_logins(source, "reg.example.com/app"))

    threads = [threading.Thread(target=look) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 6 and all(r[0].password == PASSWORD for r in results)
    assert len(_runs(tmp_path)) == 1


def test_runs_queued_past_the_limit_fail_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plugins, "MAX_PENDING", 2)
    source = _source(tmp_path, "--mode", "slow", "--delay", "1", "--cache-duration", "0s")
    for name in ("one", "two"):
        with pytest.raises(PluginError, match="still running"):
            _logins(source, f"reg.example.com/{name}", seconds=0.05)
    started = time.monotonic()
    with pytest.raises(PluginError, match="2 runs are already under way"):
        _logins(source, "reg.example.com/three")
    assert time.monotonic() - started < 0.5
    end = time.monotonic() + 10
    while len(_runs(tmp_path)) < 2 and time.monotonic() < end:
        time.sleep(0.05)
    time.sleep(1.5)  # both runs end, and the limit frees up
    assert _logins(source, "reg.example.com/three")[0].username == "robot"
    assert [r["image"] for r in _runs(tmp_path)][-1] == "reg.example.com/three"


def test_a_hanging_plugin_costs_a_review_its_deadline_and_is_killed_after_its_own(
    tmp_path: Path,
) -> None:
    config, bin_dir = _config(tmp_path, "--mode", "hang")
    (loaded,) = plugin_sources(config, bin_dir)
    source = PluginSource(loaded.provider, bin_dir, seconds=2.0)
    started = time.monotonic()
    with pytest.raises(PluginError, match="still running when the review's deadline passed"):
        _logins(source, "reg.example.com/app", seconds=0.5)
    assert time.monotonic() - started < 1.5
    child_note = Path(str(tmp_path / "requests.log") + ".child")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if (
            child_note.exists()
            and child_note.read_text()
            and not _alive(int(child_note.read_text()))
        ):
            break
        time.sleep(0.1)
    else:
        pytest.fail("the hanging plug-in's process group was not killed")
    with pytest.raises(PluginError, match=r"did not finish within 2s and was killed"):
        _logins(source, "reg.example.com/app")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


HOSTILE = [
    ("flood", r"plugin test-provider: wrote more than 262144 bytes to stdout"),
    ("not-json", r"plugin test-provider: answered something that is not JSON on stdout"),
    (
        "wrong-api",
        r"answered apiVersion \"credentialprovider.kubelet.k8s.io/v1alpha1\", but its "
        r"provider's apiVersion is credentialprovider.kubelet.k8s.io/v1",
    ),
    ("wrong-kind", r"answered kind \"CredentialProviderRequest\", not CredentialProviderResponse"),
    ("unknown-field", r"answered an unknown field \"expiresAt\""),
    (
        "fail",
        r"plugin test-provider: exited with status 1: "
        r"Error: failed to get credentials: token \(token hidden\) was refused$",
    ),
]


@pytest.mark.parametrize(("mode", "message"), HOSTILE)
def test_a_hostile_plugin_fails_clearly_without_a_secret(
    tmp_path: Path, mode: str, message: str
) -> None:
    source = _source(tmp_path, "--mode", mode)
    with pytest.raises(PluginError, match=message) as caught:
        _logins(source, "reg.example.com/app")
    assert PASSWORD not in str(caught.value)


def test_a_failure_is_remembered_briefly_then_the_plugin_runs_again(tmp_path: Path) -> None:
    clock = Clock()
    source = _source(tmp_path, "--mode", "fail", clock=clock)
    for _ in range(3):
        with pytest.raises(PluginError, match="exited with status 1"):
            _logins(source, "reg.example.com/app")
    assert len(_runs(tmp_path)) == 1
    clock.now += RETRY_AFTER + 1
    with pytest.raises(PluginError):
        _logins(source, "reg.example.com/app")
    assert len(_runs(tmp_path)) == 2


def test_a_jwt_on_stderr_is_hidden(tmp_path: Path) -> None:
    config, bin_dir = _config(tmp_path, "--mode", "fail")
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    config.write_text(config.read_text().replace(PASSWORD, jwt))
    (source,) = plugin_sources(config, bin_dir)
    with pytest.raises(PluginError, match=r"token \(token hidden\) was refused") as caught:
        _logins(source, "reg.example.com/app")
    assert "eyJ" not in str(caught.value)


def _missing(tmp_path: Path) -> tuple[Path, Path]:
    config, bin_dir = _config(tmp_path)
    (bin_dir / NAME).unlink()
    return config, bin_dir


def _not_executable(tmp_path: Path) -> tuple[Path, Path]:
    config, bin_dir = _config(tmp_path)
    (bin_dir / NAME).unlink()
    (bin_dir / NAME).write_text("#!/bin/sh\n")
    return config, bin_dir


def _no_bin_dir(tmp_path: Path) -> tuple[Path, Path]:
    config, _ = _config(tmp_path)
    return config, tmp_path / "nowhere"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (_missing, r"provider \"test-provider\": .*/bin/test-provider is not an executable file"),
        (_not_executable, r"is not an executable file"),
        (_no_bin_dir, r"binDir: .*/nowhere is not a directory"),
    ],
)
def test_a_plugin_that_is_not_there_is_a_config_error(
    tmp_path: Path, build: Callable[[Path], tuple[Path, Path]], message: str
) -> None:
    config, bin_dir = build(tmp_path)
    with pytest.raises(ConfigError, match=message):
        plugin_sources(config, bin_dir)


RESPONSES = [
    ({"cacheKeyType": "Node"}, r"cacheKeyType \"Node\", not Image, Registry or Global"),
    ({"cacheKeyType": None}, r"cacheKeyType \(absent\)"),
    ({"cacheDuration": 300}, r"cacheDuration that is not a duration"),
    ({"cacheDuration": "5 minutes"}, r"cacheDuration that is not a duration"),
    ({"auth": ["reg.example.com"]}, r"an auth that is not a map"),
    ({"auth": {"r.example.com": {"username": "u", "token": PASSWORD}}}, r"auth entry that is not"),
    ({"auth": {"r.example.com": {"username": 1, "password": PASSWORD}}}, r"auth entry that is not"),
    ({"apiVersion": None}, r"answered apiVersion \(absent\)"),
]


@pytest.mark.parametrize(("change", "message"), RESPONSES)
def test_an_invalid_response_is_named_without_its_values(
    change: dict[str, object], message: str
) -> None:
    document: dict[str, object] = {
        "apiVersion": V1,
        "kind": "CredentialProviderResponse",
        "cacheKeyType": "Registry",
        "auth": {"r.example.com": {"username": "u", "password": PASSWORD}},
    }
    document.update(change)
    document = {k: v for k, v in document.items() if v is not None}
    with pytest.raises(PluginError, match=message) as caught:
        parse_response(json.dumps(document).encode(), V1, "plugin p")
    assert PASSWORD not in str(caught.value)


def test_a_duplicate_key_in_a_response_is_refused() -> None:
    data = (
        b'{"apiVersion": "credentialprovider.kubelet.k8s.io/v1", "kind": '
        b'"CredentialProviderResponse", "cacheKeyType": "Image", "cacheKeyType": "Global"}'
    )
    with pytest.raises(PluginError, match="not JSON"):
        parse_response(data, V1, "plugin p")


def test_a_minimal_response_has_no_credentials_and_the_default_duration() -> None:
    data = json.dumps(
        {"apiVersion": V1, "kind": "CredentialProviderResponse", "cacheKeyType": "Image"}
    ).encode()
    answer = parse_response(data, V1, "plugin p")
    assert answer.entries == () and answer.cache_duration is None


def test_the_registry_client_pulls_a_manifest_with_the_plugins_login(
    tmp_path: Path, token_registry: Registry
) -> None:
    push_image(token_registry, "plugged/app", tag="1.0")
    assert token_registry.password is not None
    config, bin_dir = _config(tmp_path, match=f'["{token_registry.host}"]')
    config.write_text(
        config.read_text()
        .replace("value: robot", f"value: {token_registry.username}")
        .replace(PASSWORD, token_registry.password)
    )
    settings = {token_registry.host: RegistrySettings(insecure=True)}
    image = parse_reference(f"{token_registry.host}/plugged/app:1.0")
    client = RegistryClient(settings, sources=plugin_sources(config, bin_dir))
    deadline = Deadline(20)
    manifest = client.manifest(image, "1.0", deadline)
    assert manifest.data["schemaVersion"] == 2
    assert deadline.logins == {image.repository: "plugin test-provider"}
    assert _runs(tmp_path)[0]["image"] == image.repository
    # The token service handed the registry token to the plug-in's user.
    assert token_registry.token_server.log[-1]["user"] == token_registry.username


def test_a_failing_plugin_is_named_among_the_sources_tried(
    tmp_path: Path, token_registry: Registry
) -> None:
    config, bin_dir = _config(tmp_path, "--mode", "fail", match=f'["{token_registry.host}"]')
    client = RegistryClient(
        {token_registry.host: RegistrySettings(insecure=True)},
        sources=plugin_sources(config, bin_dir),
    )
    with pytest.raises(
        UpstreamError, match=r"tried: plugin test-provider \(no login: plugin test-provider: exited"
    ) as caught:
        client.manifest(
            parse_reference(f"{token_registry.host}/plugged/app:1.0"), "1.0", Deadline(20)
        )
    assert PASSWORD not in str(caught.value)
