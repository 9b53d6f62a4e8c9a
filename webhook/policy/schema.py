"""The ImagePolicy JSON Schema, and its errors in plain words.

The schema (``policy.schema.json``, shipped as package data) is the reference
for the policy format: ``trustgate policy schema`` prints it and editors use its
descriptions as documentation. It is read and checked once, on first use.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any, cast

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match, by_relevance

from webhook.core.errors import PolicyError

#: Among errors at the same place, an unknown field (often a misspelt one) says
#: more than the required field it was probably meant to be.
_RELEVANCE = by_relevance(strong=frozenset({"additionalProperties"}))

_LONGEST_SHOWN = 60

_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "empty",
}


#: The schema files shipped as package data: one per document kind.
POLICY_SCHEMA = "policy.schema.json"
EXCEPTION_SCHEMA = "exception.schema.json"


@functools.cache
def _loaded(name: str = POLICY_SCHEMA) -> tuple[dict[str, Any], Draft202012Validator]:
    text = resources.files("webhook.policy").joinpath(name).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return schema, Draft202012Validator(schema)


def policy_schema() -> dict[str, Any]:
    """The ImagePolicy JSON Schema (draft 2020-12), as a fresh copy the caller may change."""
    return copy.deepcopy(_loaded()[0])


def _json_path(parts: Iterable[str | int]) -> str:
    """``("spec", "registries", 0)`` as ``spec.registries[0]``."""
    text = ""
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def validate_document(
    doc: Any, *, file: str | None, document: int | None, schema: str = POLICY_SCHEMA
) -> None:
    """Check one parsed document against the schema of its kind (ImagePolicy by default).

    Raises:
        PolicyError: for the most relevant mistake, with ``field`` set to its
            JSON path (``spec.registries[0]``) and a message saying what to change.
    """
    _, validator = _loaded(schema)
    error = schema_error(validator, doc, file=file, document=document)
    if error is not None:
        raise error


def schema_error(
    validator: Draft202012Validator, doc: Any, *, file: str | None, document: int | None
) -> PolicyError | None:
    """The most relevant mistake in ``doc`` against ``validator``'s schema, in plain words.

    Used for every trustgate document (policies, policy tests), so that each
    names its file, document and field the same way.
    """
    error = best_match(validator.iter_errors(doc), key=_RELEVANCE)
    if error is None:
        return None
    parts, message = _describe(error)
    return PolicyError(message, file=file, document=document, field=_json_path(parts) or None)


def _describe(error: ValidationError) -> tuple[list[str | int], str]:
    """Where ``error`` is (as path parts) and what it means, in plain words."""
    error = _exactly_one_ancestor(error) or error
    path: list[str | int] = list(error.absolute_path)
    validator = str(error.validator)
    value: Any = error.validator_value
    instance: Any = error.instance
    schema: Any = error.schema
    if validator == "required":
        missing = next((name for name in value if name not in instance), value[0])
        return [*path, missing], "is required"
    if validator == "additionalProperties":
        known = sorted(schema.get("properties", {}))
        extra = next(key for key in instance if key not in known)
        return [*path, extra], _unknown_field(extra, known)
    if validator == "oneOf":
        names = _exactly_one_names(value)
        if names is not None:
            present = [name for name in names if name in instance]
            if present:
                return path, f"set only one of {_alternatives(present, 'and')}"
            return path, f"needs one of {_alternatives(names, 'or')}"
    return path, _simple_message(validator, value, instance, schema) or error.message


def _simple_message(validator: str, value: Any, instance: Any, schema: Any) -> str | None:
    if validator == "enum":
        return f"must be one of {', '.join(str(v) for v in value)} (got {_shown(instance)})"
    if validator == "const":
        return f"must be {value} (got {_shown(instance)})"
    if validator == "type":
        wanted = [value] if isinstance(value, str) else list(value)
        names = " or ".join(_TYPE_NAMES.get(t, t) for t in wanted)
        return f"must be {names} (got {_shown(instance)})"
    if validator == "pattern":
        hint = schema.get("patternErrorMessage") if isinstance(schema, dict) else None
        return f"{_shown(instance)} {hint or f'must match the pattern {value}'}"
    if validator in ("minItems", "minLength"):
        if value == 1:
            return "must not be empty"
        unit = "entries" if validator == "minItems" else "characters"
        return f"must have at least {value} {unit}"
    if validator in ("maxItems", "maxLength"):
        unit = "entries" if validator == "maxItems" else "characters"
        return f"must have at most {value} {unit} (got {len(instance)})"
    if validator == "minimum":
        return f"must be at least {value} (got {_shown(instance)})"
    if validator == "maximum":
        return f"must be at most {value} (got {_shown(instance)})"
    if validator == "uniqueItems":
        seen: list[Any] = []
        for item in instance:
            if item in seen:
                return f"lists {_shown(item)} more than once"
            seen.append(item)
    return None


def _exactly_one_names(branches: Any) -> list[str] | None:
    """The field names of a ``oneOf: [{required: [a]}, {required: [b]}]``, else None."""
    if not isinstance(branches, list):
        return None
    names = []
    for branch in branches:
        if not (isinstance(branch, dict) and set(branch) == {"required"}):
            return None
        if len(branch["required"]) != 1:
            return None
        names.append(str(branch["required"][0]))
    return names


def _exactly_one_ancestor(error: ValidationError) -> ValidationError | None:
    """The "exactly one of" rule ``error`` descends from, if any."""
    current: ValidationError | None = error
    while current is not None:
        if current.validator == "oneOf" and _exactly_one_names(current.validator_value):
            return current
        current = cast(ValidationError | None, current.parent)
    return None


def _unknown_field(extra: Any, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(extra), known, n=1)
    if close:
        return f"unknown field; did you mean {close[0]!r}?"
    if len(known) == 1:
        return f"unknown field; the only field here is {known[0]!r}"
    if known:
        return f"unknown field; expected one of {', '.join(known)}"
    return "unknown field"


def _alternatives(names: Sequence[str], word: str) -> str:
    if len(names) == 1:
        return names[0]
    return f"{', '.join(names[:-1])} {word} {names[-1]}"


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and len(value) > _LONGEST_SHOWN:
        return repr(value[: _LONGEST_SHOWN - 3] + "...")
    if isinstance(value, str | int | float):
        return repr(value)
    return f"{type(value).__name__} {value}"
