"""The chart's config schema generator: what it refuses to translate, and its check/write."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from webhook.config.chartschema import VALUES_SCHEMA, chart_config_schema, main, with_chart_config
from webhook.config.schema import SCHEMA

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        (
            {"properties": {"a": {"dependentRequired": {"a": ["b"]}}}},
            "'dependentRequired' at properties/a",
        ),
        ({"additionalProperties": {"unevaluatedProperties": False}}, "at additionalProperties"),
        (
            {"properties": {"l": {"items": {"anyOf": [{"prefixItems": []}]}}}},
            "properties/l/items/anyOf/0",
        ),
        ({"$defs": {}}, "'$defs' at (top)"),
        (
            {"properties": {"t": {"items": [{"type": "string"}]}}},
            "'items (a list)' at properties/t",
        ),
    ],
)
def test_a_keyword_helm_would_read_otherwise_is_refused(schema: dict[str, Any], where: str) -> None:
    with pytest.raises(
        ValueError, match="not read alike by JSON Schema draft 2020-12 and draft-07"
    ) as refused:
        chart_config_schema(schema)
    assert where in str(refused.value)


def test_the_server_schema_is_left_alone() -> None:
    before = json.dumps(SCHEMA, sort_keys=True)
    made = chart_config_schema()
    assert json.dumps(SCHEMA, sort_keys=True) == before
    assert "$schema" not in made
    assert made["properties"]["deadlineSeconds"] == SCHEMA["properties"]["deadlineSeconds"]


def test_only_config_is_replaced() -> None:
    values = {"properties": {"image": {"type": "object"}, "config": {}, "z": {}}}
    made = with_chart_config(values)
    assert list(made["properties"]) == ["image", "config", "z"]
    assert made["properties"]["config"] == chart_config_schema()
    assert values["properties"]["config"] == {}


def test_check_then_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "values.schema.json"
    current = json.loads((REPO / VALUES_SCHEMA).read_text())
    current["properties"]["config"]["properties"].pop("network")
    path.write_text(json.dumps(current, indent=2) + "\n")
    assert main([str(path)]) == 1
    assert "config is stale: run `make schema`" in capsys.readouterr().err
    assert main(["--write", str(path)]) == 0
    written = json.loads(path.read_text())
    assert written["properties"]["config"] == chart_config_schema()
    assert {k: v for k, v in written["properties"].items() if k != "config"} == {
        k: v for k, v in current["properties"].items() if k != "config"
    }
    assert main([str(path)]) == 0
    assert "up to date" in capsys.readouterr().out
