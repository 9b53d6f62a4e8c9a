"""A kubelet CredentialProviderConfig is read with the kubelet's rules, and its mistakes named."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from webhook.core.errors import ConfigError
from webhook.core.reference import parse_reference
from webhook.credentials.pluginconfig import parse_duration, read_config

GOOD = """\
apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: ecr-credential-provider
    matchImages: ["*.dkr.ecr.*.amazonaws.com", "registry.io:8080/path"]
    defaultCacheDuration: 12h
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    args: [get-credentials]
    env:
      - {name: AWS_PROFILE, value: temp}
  - name: acr-credential-provider
    matchImages: ["*.azurecr.io"]
    defaultCacheDuration: 10m30s
    apiVersion: credentialprovider.kubelet.k8s.io/v1beta1
"""


def _write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_kubelet_configuration_is_read_whole(tmp_path: Path) -> None:
    ecr, acr = read_config(_write(tmp_path, GOOD))
    assert ecr.name == "ecr-credential-provider"
    assert ecr.default_cache_duration == 12 * 3600
    assert ecr.api_version == "credentialprovider.kubelet.k8s.io/v1"
    assert ecr.args == ("get-credentials",)
    assert ecr.env == (("AWS_PROFILE", "temp"),)
    assert ecr.match_images.matches_image(
        parse_reference("1234.dkr.ecr.eu-west-1.amazonaws.com/app")
    )
    assert not ecr.match_images.matches_image(parse_reference("registry.io:8080/other/app"))
    assert acr.default_cache_duration == 630
    assert acr.args == () and acr.env == ()


def test_a_directory_is_its_files_in_name_order_merged(tmp_path: Path) -> None:
    first, second = GOOD.split("  - name: acr-credential-provider\n")
    header = first.split("providers:\n")[0] + "providers:\n"
    _write(tmp_path, header + "  - name: acr-credential-provider\n" + second, "20-acr.yml")
    _write(tmp_path, first, "10-ecr.yaml")
    _write(tmp_path, "ignored: true", "notes.txt")
    names = [p.name for p in read_config(tmp_path)]
    assert names == ["ecr-credential-provider", "acr-credential-provider"]


def test_json_is_read_too(tmp_path: Path) -> None:
    text = (
        '{"apiVersion": "kubelet.config.k8s.io/v1", "kind": "CredentialProviderConfig",'
        ' "providers": [{"name": "p", "matchImages": ["gcr.io"], "defaultCacheDuration": "0s",'
        ' "apiVersion": "credentialprovider.kubelet.k8s.io/v1"}]}'
    )
    (provider,) = read_config(_write(tmp_path, text, "c.json"))
    assert provider.default_cache_duration == 0


def _provider(**fields: str) -> str:
    base = {
        "name": "p",
        "matchImages": '["gcr.io"]',
        "defaultCacheDuration": "1h",
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
    }
    base.update(fields)
    lines = [f"    {k}: {v}" for k, v in base.items() if v != "DROP"]
    lines[0] = "  - " + lines[0].lstrip()
    return (
        "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n"
        + "\n".join(lines)
        + "\n"
    )


MISTAKES = [
    (_provider(name="../bin/sh"), r"providers\[0\]\.name: \"\.\./bin/sh\" must be a plain file"),
    (_provider(name="'a b'"), r"providers\[0\]\.name: .*no space"),
    (_provider(name=".."), r"providers\[0\]\.name: .*not \. or \.\."),
    (_provider(name="DROP"), r"providers\[0\]\.name: required"),
    (_provider(matchImages="[]"), r"providers\[0\]\.matchImages: at least one"),
    (_provider(matchImages='["user@gcr.io"]'), r"providers\[0\]\.matchImages: \"user@gcr.io\""),
    (_provider(defaultCacheDuration="DROP"), r"providers\[0\]\.defaultCacheDuration: required"),
    (_provider(defaultCacheDuration="12 hours"), r"defaultCacheDuration: \"12 hours\" is not"),
    (_provider(defaultCacheDuration="-5m"), r"defaultCacheDuration: must not be negative"),
    (_provider(defaultCacheDuration="300"), r"defaultCacheDuration: required, a duration"),
    (_provider(apiVersion="credentialprovider.kubelet.k8s.io/v2"), r"providers\[0\]\.apiVersion"),
    (_provider(args="get"), r"providers\[0\]\.args: must be a list of strings"),
    (_provider(env="[{name: A}]"), r"providers\[0\]\.env\[0\]: must be \{name: NAME"),
    (_provider(tokenAttributes="{serviceAccountTokenAudience: x}"), r"tokenAttributes: trustgate"),
    (_provider(cacheDuration="1h"), r"providers\[0\]\.cacheDuration: unknown field"),
    (
        _provider().replace("kind: CredentialProviderConfig", "kind: KubeletConfiguration"),
        r"field kind: must be CredentialProviderConfig",
    ),
    (
        _provider().replace("kubelet.config.k8s.io/v1\n", "kubelet.config.k8s.io/v2\n"),
        r"field apiVersion: must be one of kubelet.config.k8s.io/v1",
    ),
    (_provider().split("providers:")[0] + "providers: []\n", r"field providers: at least one"),
    (
        _provider() + "  - name: p\n    matchImages: [quay.io]\n    defaultCacheDuration: 1m\n"
        "    apiVersion: credentialprovider.kubelet.k8s.io/v1\n",
        r"providers\[1\]\.name: \"p\" is given twice",
    ),
    (_provider() + "extra: 1\n", r"field extra: unknown field"),
    (
        _provider().replace(
            "    defaultCacheDuration: 1h\n",
            "    defaultCacheDuration: 1h\n    defaultCacheDuration: 2h\n",
        ),
        r"not valid YAML or JSON at line 7.*given twice",
    ),
    ("providers: [\n", r"not valid YAML or JSON at line"),
    ("- just a list\n", r"not a CredentialProviderConfig"),
]


@pytest.mark.parametrize(("text", "message"), MISTAKES)
def test_a_mistake_is_a_config_error_naming_the_file_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as caught:
        read_config(path)
    assert str(path) in str(caught.value)


def test_a_missing_file_or_empty_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing.yaml: cannot read .*No such file"):
        read_config(tmp_path / "missing.yaml")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"empty: holds no \*\.json"):
        read_config(tmp_path / "empty")


def test_an_oversized_file_is_refused_unparsed(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * (1024 * 1024) + "\n")
    with pytest.raises(ConfigError, match="larger than"):
        read_config(path)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("0s", 0.0),
        ("12h", 43200.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("90s", 90.0),
        ("300ms", 0.3),
        ("2us", 2e-6),
        ("2µs", 2e-6),
        ("1m.5s", 60.5),
        ("-1m", -60.0),
        ("+10s", 10.0),
    ],
)
def test_durations_are_read_as_go_reads_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "12", "h", "1d", "1h 30m", "1.2.3s", "--1s", "1hh", "s1"])
def test_what_go_refuses_as_a_duration_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)
