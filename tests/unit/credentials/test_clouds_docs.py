"""The examples of docs/clouds/*.md are valid as written: trustgate.yaml, chart values, plug-ins.

Each YAML block is what its page says it is: a CredentialProviderConfig is read
as trustgate reads the kubelet's file; chart values (they have ``config``,
``serviceAccount`` or ``podLabels``) pass the chart's values.schema.json, and
their ``config`` is a valid trustgate.yaml; any other block is a trustgate.yaml.
Every provider a page configures builds its login source. JSON blocks (IAM policies)
parse.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support.docblocks import REPO, blocks
from webhook.config import parse_config
from webhook.config.credentials import CredentialsConfig
from webhook.credentials.acr import AcrSource
from webhook.credentials.ecr import EcrSource
from webhook.credentials.gcp import GcpSource
from webhook.credentials.pluginconfig import read_config

PAGES = sorted((REPO / "docs" / "clouds").glob("*.md"))
CHART_KEYS = {"config", "serviceAccount", "podLabels", "credentialPlugins"}


def _yaml_blocks() -> list[tuple[str, Any]]:
    return [
        (block.where, yaml.safe_load(block.body))
        for page in PAGES
        for block in blocks(page)
        if block.lang == "yaml"
    ]


def test_the_pages_exist_and_have_examples() -> None:
    names = {page.name for page in PAGES}
    assert {"aks.md", "eks.md", "gke.md", "plugins.md"} <= names
    assert len(_yaml_blocks()) >= 4


def _id(value: Any) -> str:
    return value if isinstance(value, str) else ""


@pytest.mark.parametrize(("where", "document"), _yaml_blocks(), ids=_id)
def test_an_example_is_valid_as_written(
    where: str, document: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AZURE_FEDERATED_TOKEN_FILE", "AZURE_CLIENT_ID", "AZURE_TENANT_ID"):
        monkeypatch.delenv(name, raising=False)
    if document.get("kind") == "CredentialProviderConfig":
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(document))
        assert read_config(path), where
        return
    if CHART_KEYS & set(document):
        schema = json.loads((REPO / "charts" / "trustgate" / "values.schema.json").read_text())
        jsonschema.Draft7Validator(schema).validate(document)
        document = document.get("config", {})
    config = parse_config(document, source=where)
    _build_sources(config.credentials, where)


def _build_sources(credentials: CredentialsConfig, where: str) -> None:
    for provider in credentials.providers:
        if provider.type == "acr":
            source = AcrSource(provider.registries, client_id=provider.client_id)
            assert source.kind == "acr", where
        elif provider.type == "ecr":
            assert EcrSource(provider.registries).kind == "ecr", where
        else:
            assert provider.type == "gcp", where
            assert GcpSource(provider.registries).kind == "gcp", where


@pytest.mark.parametrize(
    ("where", "body"),
    [(block.where, block.body) for page in PAGES for block in blocks(page) if block.lang == "json"],
    ids=_id,
)
def test_a_json_example_parses(where: str, body: str) -> None:
    assert isinstance(json.loads(body), dict), where
