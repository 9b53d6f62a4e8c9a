"""One repair to PyYAML's safe loaders that every reader of untrusted YAML needs.

PyYAML's ``!!timestamp`` constructor assumes an explicitly tagged value
matches its timestamp pattern; ``a: !!timestamp x`` then fails with an
AttributeError instead of a YAML error, past every ``except yaml.YAMLError``.
``check_timestamps`` makes such a value a ``ConstructorError`` with its line
and column, like any other mistake in the document.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["check_timestamps"]

_TIMESTAMP = "tag:yaml.org,2002:timestamp"


def _checked_timestamp(loader: yaml.constructor.SafeConstructor, node: yaml.Node) -> Any:
    value = loader.construct_scalar(node)  # type: ignore[arg-type]
    if not isinstance(value, str) or loader.timestamp_regexp.match(value) is None:
        raise yaml.constructor.ConstructorError(
            None, None, "a !!timestamp value that is not a timestamp", node.start_mark
        )
    return loader.construct_yaml_timestamp(node)  # type: ignore[arg-type]


def check_timestamps(loader: type[yaml.constructor.SafeConstructor]) -> None:
    """Refuse a ``!!timestamp`` that is not one, as a YAML error, in ``loader`` (a subclass).

    Raises:
        ValueError: ``loader`` is PyYAML's own class, which every user of PyYAML shares.
    """
    if loader.__module__.startswith("yaml"):
        raise ValueError("give a subclass of the safe loader, not PyYAML's own class")
    loader.add_constructor(_TIMESTAMP, _checked_timestamp)  # type: ignore[type-var]
