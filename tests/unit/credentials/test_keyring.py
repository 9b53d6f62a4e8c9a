"""Credentials are matched to images as the kubelet's DockerKeyring matches them.

Each row cites the rule it checks (K1-K6 in webhook/credentials/keyring.py's
docstring, from kubernetes pkg/credentialprovider/keyring.go and the
``matchImages`` description in the kubelet configuration reference).
"""

from __future__ import annotations

import pytest

from webhook.core.errors import ImageReferenceError
from webhook.core.reference import parse_reference
from webhook.credentials.dockerconfig import DockerConfig, DockerConfigEntry
from webhook.credentials.keyring import Keyring, parse_key

PASSWORD = "s3cr3t-pull-password"


def _config(*keys: str, source: str = "secret ns/one") -> DockerConfig:
    return DockerConfig(source, tuple(DockerConfigEntry(k, f"user-{k}", PASSWORD) for k in keys))


def _matched(keys: list[str], image: str) -> list[str]:
    return [credential.key for credential in Keyring([_config(*keys)]).lookup(image)]


# (rule, keys in the secret, image, keys whose credentials are tried, in order)
ROWS = [
    # K1: schemes and /v1/ or /v2/ are stripped from the key.
    ("K1", ["https://quay.io"], "quay.io/team/app:1", ["https://quay.io"]),
    ("K1", ["http://quay.io/"], "quay.io/team/app", ["http://quay.io/"]),
    ("K1", ["HTTPS://quay.io"], "quay.io/team/app", ["HTTPS://quay.io"]),
    ("K1", ["https://quay.io/v2/team"], "quay.io/team/app", ["https://quay.io/v2/team"]),
    ("K1", ["https://quay.io/v1/"], "quay.io/team/app", ["https://quay.io/v1/"]),
    # ... but only as a whole segment: /v1 without its slash is a repository path.
    ("K1", ["quay.io/v1"], "quay.io/team/app", []),
    ("K1", ["quay.io/v1"], "quay.io/v1app/x", ["quay.io/v1"]),
    # K2: labels match one to one; * stands for exactly one label.
    ("K2", ["*.example.com"], "a.example.com/app", ["*.example.com"]),
    ("K2", ["*.example.com"], "example.com/app", []),
    ("K2", ["*.example.com"], "a.b.example.com/app", []),
    ("K2", ["*.*.example.com"], "a.b.example.com/app", ["*.*.example.com"]),
    ("K2", ["*.azurecr.io"], "team.azurecr.io/app", ["*.azurecr.io"]),
    ("K2", ["k8s.*.io"], "k8s.gcr.io/pause", ["k8s.*.io"]),
    ("K2", ["k8s.*"], "k8s.io/pause", ["k8s.*"]),
    # Partial-label globs ('app*.k8s.io'), as filepath.Match reads them.
    ("K2", ["app*.k8s.io"], "app-eu.k8s.io/x", ["app*.k8s.io"]),
    ("K2", ["app*.k8s.io"], "app.k8s.io/x", ["app*.k8s.io"]),
    ("K2", ["app*.k8s.io"], "web.k8s.io/x", []),
    ("K2", ["*-good.k8s.io"], "eu-good.k8s.io/x", ["*-good.k8s.io"]),
    # '?' starts a URL query, where the kubelet's url.Parse puts it: no glob.
    ("K2", ["r?.example.com"], "r1.example.com/x", []),
    # Hostile: a key that is a prefix of another host, or that host a suffix of the key.
    ("K2", ["quay.io"], "quay.io.evil.com/team/app", []),
    ("K2", ["quay.io"], "evilquay.io/team/app", []),
    ("K2", ["quay.io"], "quay.iox/team/app", []),
    ("K2", ["evil.com.quay.io"], "quay.io/team/app", []),
    ("K2", ["*.quay.io"], "quay.io/team/app", []),
    # Hosts compare lowercased.
    ("K2", ["Quay.IO"], "quay.io/team/app", ["Quay.IO"]),
    # K3: ports must be equal, both ways.
    (
        "K3",
        ["registry.example.com:5000"],
        "registry.example.com:5000/app",
        ["registry.example.com:5000"],
    ),
    ("K3", ["registry.example.com"], "registry.example.com:5000/app", []),
    ("K3", ["registry.example.com:5000"], "registry.example.com/app", []),
    ("K3", ["registry.example.com:5000"], "registry.example.com:50001/app", []),
    ("K3", ["*.example.com:443"], "r.example.com:443/app", ["*.example.com:443"]),
    ("K3", ["localhost:5000"], "localhost:5000/app", ["localhost:5000"]),
    ("K3", ["[::1]:5000"], "[::1]:5000/app", ["[::1]:5000"]),
    ("K3", ["[::1]:5000"], "[::2]:5000/app", []),
    # K4: the key's path is a text prefix of the image's repository path.
    ("K4", ["quay.io/team"], "quay.io/team/app", ["quay.io/team"]),
    ("K4", ["quay.io/team"], "quay.io/other/app", []),
    ("K4", ["quay.io/team/app"], "quay.io/team/app", ["quay.io/team/app"]),
    ("K4", ["quay.io/team/"], "quay.io/team/app", ["quay.io/team/"]),
    ("K4", ["quay.io/team/app/sub"], "quay.io/team/app", []),
    # As text, not by segment: the kubelet's strings.HasPrefix (same host either way).
    ("K4", ["quay.io/team"], "quay.io/team-b/app", ["quay.io/team"]),
    # A path never lets a key reach another host.
    ("K4", ["quay.io/team"], "quay.io.evil.com/team/app", []),
    # K5: every match, most specific first; literal labels before wildcards.
    (
        "K5",
        ["quay.io", "quay.io/team", "quay.io/team/app"],
        "quay.io/team/app",
        ["quay.io/team/app", "quay.io/team", "quay.io"],
    ),
    (
        "K5",
        ["*.example.com", "a.example.com"],
        "a.example.com/x",
        ["a.example.com", "*.example.com"],
    ),
    (
        "K5",
        ["https://quay.io", "quay.io/team"],
        "quay.io/team/x",
        ["quay.io/team", "https://quay.io"],
    ),
    # K6: Docker Hub's aliases all reach docker.io images, short names included.
    ("K6", ["https://index.docker.io/v1/"], "nginx", ["https://index.docker.io/v1/"]),
    ("K6", ["index.docker.io"], "docker.io/library/nginx:1", ["index.docker.io"]),
    ("K6", ["docker.io"], "acme/app", ["docker.io"]),
    ("K6", ["registry-1.docker.io"], "index.docker.io/acme/app", ["registry-1.docker.io"]),
    ("K6", ["docker.io/acme"], "acme/app", ["docker.io/acme"]),
    ("K6", ["docker.io/acme"], "nginx", []),
    (
        "K6",
        ["https://index.docker.io/v1/", "docker.io/library"],
        "nginx",
        ["docker.io/library", "https://index.docker.io/v1/"],
    ),
    # ... but not with a port, nor another host under docker.io, nor docker.io for others.
    ("K6", ["index.docker.io:443"], "nginx", []),
    ("K6", ["*.docker.io"], "nginx", []),
    ("K6", ["docker.io"], "quay.io/library/nginx", []),
    ("K6", ["docker.io"], "ghcr.io/docker.io/x", []),
]


@pytest.mark.parametrize(
    ("rule", "keys", "image", "expected"),
    ROWS,
    ids=[f"{rule}:{'+'.join(keys)}@{image}" for rule, keys, image, _ in ROWS],
)
def test_a_key_matches_an_image_as_the_kubelet_matches_it(
    rule: str, keys: list[str], image: str, expected: list[str]
) -> None:
    assert _matched(keys, image) == expected, rule


def test_credentials_under_one_key_keep_the_order_of_their_secrets() -> None:
    # K5: a wrong secret listed before the right one: both are tried, in the pod's order.
    wrong = DockerConfig("secret ns/wrong", (DockerConfigEntry("quay.io", "u1", "bad"),))
    right = DockerConfig("secret ns/right", (DockerConfigEntry("https://quay.io/v1/", "u2", "ok"),))
    found = Keyring([wrong, right]).lookup("quay.io/team/app")
    assert [(c.source, c.username, c.password) for c in found] == [
        ("secret ns/wrong", "u1", "bad"),
        ("secret ns/right", "u2", "ok"),
    ]


def test_a_more_specific_key_in_a_later_secret_still_comes_first() -> None:
    # K5 sorts across secrets: the kubelet adds every secret to one index.
    broad = _config("quay.io", source="secret ns/a")
    narrow = _config("quay.io/team", source="secret ns/b")
    found = Keyring([broad, narrow]).lookup(parse_reference("quay.io/team/app"))
    assert [c.source for c in found] == ["secret ns/b", "secret ns/a"]


def test_tag_and_digest_play_no_part() -> None:
    keyring = Keyring([_config("quay.io/team/app")])
    digest = "sha256:" + "a" * 64
    assert keyring.lookup(f"quay.io/team/app@{digest}") == keyring.lookup("quay.io/team/app:v2")
    assert len(keyring.lookup("quay.io/team/app")) == 1


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        # Narrower than the kubelet, which would read these as URLs in surprising ways:
        # "quay.io@evil.com" is a key for evil.com to url.Parse.
        ("quay.io@evil.com", "user info"),
        (f"https://robot:{PASSWORD}@quay.io", "user info"),
        ("oci://quay.io", "only http:// and https://"),
        ("quay.io?x=1", "a query"),
        ("quay.io#frag", "a fragment"),
        (" quay.io", "without spaces"),
        ("quay..io", "host label"),
        ("quay.io.", "host label"),
        ("r[0-9].example.com", "host label"),
        ("quay.io:http", "port"),
        ("quay.io:70000", "port"),
        ("[::1", "IPv6"),
        ("/team/app", "no host"),
        ("", "no host"),
    ],
)
def test_a_key_one_would_not_write_matches_nothing_and_is_reported(key: str, reason: str) -> None:
    keyring = Keyring([_config(key)])
    for image in ("quay.io/team/app", "evil.com/team/app", "example.com/x", "localhost:5000/x"):
        assert keyring.lookup(image) == []
    (ignored,) = keyring.ignored
    assert reason in ignored.reason
    (line,) = keyring.describe_ignored()
    assert line.startswith("secret ns/one: key ")
    assert PASSWORD not in line
    with pytest.raises(ValueError) as caught:
        parse_key(key)
    assert PASSWORD not in str(caught.value)


def test_the_pattern_is_the_kubelets_normalised_key() -> None:
    assert parse_key("https://Index.Docker.io/v1/").text == "docker.io"
    assert parse_key("https://quay.io/v2/team/").text == "quay.io/team/"
    pattern = parse_key("*.example.com:5000/path")
    assert (pattern.labels, pattern.port, pattern.path) == (
        ("*", "example", "com"),
        "5000",
        "/path",
    )


def test_a_credential_never_shows_its_password_in_repr() -> None:
    (credential,) = Keyring([_config("quay.io")]).lookup("quay.io/x")
    assert credential.password == PASSWORD
    assert PASSWORD not in repr(credential)


def test_an_empty_keyring_finds_nothing_and_bad_text_is_a_reference_error() -> None:
    keyring = Keyring([])
    assert len(keyring) == 0
    assert keyring.lookup("nginx") == []
    with pytest.raises(ImageReferenceError):
        keyring.lookup("Not A Reference")


def test_lookup_is_bounded_by_the_keys_not_the_images() -> None:
    keys = [f"r{i}.example.com/team" for i in range(256)]
    keyring = Keyring([_config(*keys)])
    assert len(keyring) == 256
    assert [c.key for c in keyring.lookup("r7.example.com/team/app")] == ["r7.example.com/team"]


@pytest.mark.parametrize(
    ("key", "host", "covers"),
    [
        ("quay.io", "quay.io", True),
        ("https://Quay.io/v1/", "QUAY.IO", True),
        ("*.example.com", "r.example.com", True),
        ("*.example.com", "example.com", False),
        ("localhost:5000", "localhost:5000", True),
        ("localhost:5000", "localhost", False),
        ("localhost", "localhost:5000", False),
        # Docker Hub by any of its names (K6).
        ("https://index.docker.io/v1/", "docker.io", True),
        ("registry-1.docker.io", "index.docker.io", True),
        # A key with a path covers only the repositories under it, not the host.
        ("quay.io/team", "quay.io", False),
        ("https://quay.io/v2/team", "quay.io", False),
        # Hostile hosts and hosts that are not host[:port].
        ("quay.io", "quay.io.evil.com", False),
        ("quay.io", "quay.io:http", False),
        ("quay.io", "", False),
    ],
)
def test_a_key_covers_a_host_only_without_a_path(key: str, host: str, covers: bool) -> None:
    assert parse_key(key).covers_host(host) is covers


def test_for_host_keeps_the_lookup_order() -> None:
    keyring = Keyring([_config("*.example.com", "r.example.com/team", "r.example.com")])
    assert [c.key for c in keyring.for_host("r.example.com")] == ["r.example.com", "*.example.com"]
    assert keyring.for_host("other.example.org") == []
