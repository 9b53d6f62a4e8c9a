"""Host patterns and matchImages mean here what they mean to the kubelet."""

from __future__ import annotations

import pytest

from webhook.core.errors import ConfigError
from webhook.core.reference import parse_reference
from webhook.credentials.matching import parse_patterns

# (patterns, host, whether it matches)
HOSTS = [
    (["*.azurecr.io"], "myreg.azurecr.io", True),
    (["*.azurecr.io"], "MyReg.AzureCR.io", True),
    (["*.azurecr.io"], "azurecr.io", False),
    (["*.azurecr.io"], "a.b.azurecr.io", False),
    (["*.azurecr.io"], "myreg.azurecr.io.evil.com", False),
    (["*.azurecr.io"], "myreg.azurecr.io:443", False),
    (["registry.io:8080/path"], "registry.io:8080", True),
    (["registry.io:8080"], "registry.io", False),
    (["*.dkr.ecr.*.amazonaws.com"], "1234.dkr.ecr.us-east-1.amazonaws.com", True),
    (["127.0.0.1:5000"], "127.0.0.1:5000", True),
    (["127.0.0.1:5000"], "127.0.0.1:5001", False),
    (["quay.io", "gcr.io"], "gcr.io", True),
    ([], "gcr.io", False),
    (["*.azurecr.io"], "not a host", False),
]


@pytest.mark.parametrize(("patterns", "host", "expected"), HOSTS)
def test_a_host_matches_as_the_kubelet_matches_it(
    patterns: list[str], host: str, expected: bool
) -> None:
    assert parse_patterns(patterns, "where").matches_host(host) is expected


# (patterns, image, whether it matches): the path is a prefix of the repository.
IMAGES = [
    (["registry.io:8080/path"], "registry.io:8080/path/app:1", True),
    (["registry.io:8080/path"], "registry.io:8080/other/app", False),
    (["quay.io/team"], "quay.io/team-b/app", True),
    (["docker.io"], "nginx", True),
    (["index.docker.io"], "library/nginx", True),
    (["*.azurecr.io"], "myreg.azurecr.io/a/b@sha256:" + "a" * 64, True),
]


@pytest.mark.parametrize(("patterns", "image", "expected"), IMAGES)
def test_an_image_matches_by_host_port_and_path_prefix(
    patterns: list[str], image: str, expected: bool
) -> None:
    assert parse_patterns(patterns, "where").matches_image(parse_reference(image)) is expected


def test_a_pattern_that_is_no_host_is_a_config_error_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"providers\.registries: \"user@quay.io\".*user info"):
        parse_patterns(["user@quay.io"], "providers.registries")


def test_a_path_is_refused_where_only_hosts_are_meant() -> None:
    with pytest.raises(ConfigError, match="has a path; list registry hosts"):
        parse_patterns(["myreg.azurecr.io/team"], "acr", paths=False)
