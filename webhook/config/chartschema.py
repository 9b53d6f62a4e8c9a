"""The Helm chart's schema of ``config``, made from the server's own ``SCHEMA``.

Separate from ``schema`` because it is about the chart, not the server. The chart
renders ``config`` into trustgate.yaml, so its values.schema.json must refuse what the
server would refuse at start-up, and it does so from the same source: this module
copies ``SCHEMA`` into the ``config`` part of charts/trustgate/values.schema.json. The
chart refuses two things more, both because ``config`` ends up in a ConfigMap that the
chart mounts: a secret written inline (the Pyxis API key) and a shared cache whose key
file the chart would not mount (``cache.shared``, which the chart's own ``cache.shared``
values write). Helm reads the file as JSON Schema draft-07, so a keyword that draft
would read otherwise, or ignore, is refused here rather than silently dropped.

``make schema`` runs ``python -m webhook.config.chartschema --write`` to refresh the
file; a test fails when it has drifted.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from webhook.config.schema import SCHEMA

__all__ = ["VALUES_SCHEMA", "chart_config_schema", "main", "with_chart_config"]

#: The chart's values schema, from the top of the repository.
VALUES_SCHEMA = Path("charts") / "trustgate" / "values.schema.json"

#: Keywords that mean the same in draft 2020-12 (the server's) and draft-07 (Helm's).
_SHARED_KEYWORDS = frozenset(
    {
        "type", "enum", "const", "description", "title", "default",
        "properties", "additionalProperties", "required", "propertyNames",
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
        "minLength", "maxLength", "pattern", "minItems", "maxItems", "uniqueItems",
        "items", "not", "allOf", "anyOf", "oneOf",
    }
)  # fmt: skip
#: Keywords whose value is a map of names to schemas, or one schema, or a list of them.
_BY_NAME = ("properties",)
_ONE = ("additionalProperties", "items", "not", "propertyNames")
_MANY = ("allOf", "anyOf", "oneOf")

_PYXIS_KEY = (
    "(never here: config is rendered into a ConfigMap; give the key as "
    "freshness.pyxis.apiKey or freshness.pyxis.apiKeySecret, which use a Secret)"
)
_SHARED_CACHE = (
    "(never here: give the values cache.shared.url, cache.shared.keySecret and "
    "cache.shared.passwordSecret; the chart writes config.cache.shared from them and "
    "mounts the key file)"
)


def chart_config_schema(server: Mapping[str, Any] = SCHEMA) -> dict[str, Any]:
    """The ``config`` part of the chart's values schema, made from ``server``'s schema.

    Raises:
        ValueError: ``server`` uses a keyword that draft-07 reads otherwise or not at all.
    """
    schema = copy.deepcopy(dict(server))
    schema.pop("$schema", None)
    for path, keyword in _keywords(schema, ()):
        if keyword not in _SHARED_KEYWORDS:
            where = "/".join(path) or "(top)"
            raise ValueError(
                f"config schema keyword {keyword!r} at {where} is not read alike by JSON "
                "Schema draft 2020-12 and draft-07 (Helm's): express it with "
                f"{', '.join(sorted(_SHARED_KEYWORDS))}"
            )
    schema["description"] = (
        "trustgate.yaml (docs/configuration.md). Made from the server's own schema "
        "(webhook/config/schema.py) by `make schema`: edit that, not this."
    )
    pyxis = schema["properties"]["freshness"]["properties"]["pyxis"]
    pyxis["description"] = (
        "Pyxis settings of trustgate.yaml, rendered into a ConfigMap: give the API key "
        "through freshness.pyxis.apiKey or freshness.pyxis.apiKeySecret (a Secret), never here."
    )
    pyxis["properties"]["apiKey"] = {"const": _PYXIS_KEY}
    pyxis["not"] = {"required": ["apiKey"]}
    cache = schema["properties"]["cache"]
    cache["properties"]["shared"] = {"const": _SHARED_CACHE}
    cache["not"] = {"required": ["shared"]}
    return schema


def with_chart_config(values_schema: Mapping[str, Any]) -> dict[str, Any]:
    """``values_schema`` with its ``config`` part made anew (in place of the old one)."""
    updated = copy.deepcopy(dict(values_schema))
    updated["properties"]["config"] = chart_config_schema()
    return updated


def _keywords(schema: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    """Every keyword of ``schema`` and its subschemas, with where it is."""
    if not isinstance(schema, dict):
        return
    for keyword, value in schema.items():
        # A list of items is a tuple in draft-07 and an error in 2020-12 (prefixItems).
        yield path, "items (a list)" if keyword == "items" and isinstance(value, list) else keyword
        if keyword in _BY_NAME and isinstance(value, dict):
            for name, sub in value.items():
                yield from _keywords(sub, (*path, keyword, name))
        elif keyword in _ONE:
            yield from _keywords(value, (*path, keyword))
        elif keyword in _MANY and isinstance(value, list):
            for index, sub in enumerate(value):
                yield from _keywords(sub, (*path, keyword, str(index)))


def _dump(schema: Mapping[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Check (the default) or ``--write`` the chart's values schema; 1 when it is stale."""
    parser = argparse.ArgumentParser(
        prog="python -m webhook.config.chartschema",
        description="Make the config part of the chart's values.schema.json from the "
        "server's configuration schema.",
    )
    parser.add_argument("--write", action="store_true", help="rewrite the file when stale")
    parser.add_argument("path", nargs="?", type=Path, default=VALUES_SCHEMA)
    args = parser.parse_args(argv)
    text = args.path.read_text(encoding="utf-8")
    fresh = _dump(with_chart_config(json.loads(text)))
    if fresh == text:
        print(f"{args.path}: config is up to date")
        return 0
    if args.write:
        args.path.write_text(fresh, encoding="utf-8")
        print(f"{args.path}: config rewritten from webhook/config/schema.py")
        return 0
    print(f"{args.path}: config is stale: run `make schema`", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
