"""The cloud pages (docs/clouds/*.md) hold: their trustgate.yaml loads, their chart values validate.

A YAML block with a top-level ``credentials`` is a trustgate.yaml and loads as the server
loads it; one with ``config`` or ``serviceAccount`` is chart values, merged over the
chart's defaults and checked against values.schema.json as Helm checks them, and its
``config`` loads too. JSON blocks (IAM policies) parse. The cloud CLI commands are not run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support.docblocks import Block, blocks
from webhook.config import parse_config
from webhook.config.credentials import DEFAULT_REGISTRIES

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "trustgate"
PAGES = sorted((REPO / "docs" / "clouds").glob("*.md"))
_CHART_KEYS = {"config", "serviceAccount", "podLabels"}


def _blocks(lang: str) -> list[Block]:
    return [block for page in PAGES for block in blocks(page) if block.lang == lang]


def _merged(base: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def test_there_is_a_page_per_cloud_with_a_provider() -> None:
    assert {page.stem for page in PAGES} >= {"eks", "gke"}
    configs = [yaml.safe_load(block.body) for block in _blocks("yaml")]
    kinds = {
        provider["type"]
        for config in configs
        for provider in config.get(
            "credentials", config.get("config", {}).get("credentials", {})
        ).get("providers", [])
    }
    assert kinds >= {"ecr", "gcp"} and kinds <= set(DEFAULT_REGISTRIES)


@pytest.mark.parametrize("block", _blocks("yaml"), ids=lambda block: block.where)
def test_a_yaml_block_loads_as_what_it_is(block: Block) -> None:
    data = yaml.safe_load(block.body)
    assert isinstance(data, dict), block.where
    if "credentials" in data:
        config = parse_config(data, source=block.where)
        assert config.credentials.providers, block.where
        return
    assert set(data) <= _CHART_KEYS | {"networkPolicy", "server"}, block.where
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = _merged(defaults, data)
    jsonschema.Draft7Validator(schema).validate(values)
    parse_config(values["config"], source=block.where)


@pytest.mark.parametrize("block", _blocks("json"), ids=lambda block: block.where)
def test_a_json_block_parses(block: Block) -> None:
    assert isinstance(json.loads(block.body), dict), block.where
