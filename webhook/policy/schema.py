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

from webhook.core.errors import PolicyError, PolicyErrors

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
        PolicyError: for a single mistake, with ``field`` set to its JSON path
            (``spec.registries[0]``) and a message saying what to change.
        PolicyErrors: for several, each as above, in the document's order, so that
            ``policy lint`` shows every typo of a document in one run.
    """
    _, validator = _loaded(schema)
    errors = schema_errors(validator, doc, file=file, document=document)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise PolicyErrors(errors)


def schema_errors(
    validator: Draft202012Validator, doc: Any, *, file: str | None, document: int | None
) -> list[PolicyError]:
    """Every mistake in ``doc`` against ``validator``'s schema, in plain words.

    One error per place: each violation of the schema gives its most relevant
    cause, an unknown field gives one error per unknown key, and a required field
    that an unknown one nearby was probably meant to be (``registrie`` for
    ``registries``) is not reported twice. Errors come in the order of the
    document's keys. Used for every trustgate document (policies, exceptions,
    policy tests), so that each names its file, document and field the same way.
    """
    found: list[tuple[list[str | int], str]] = []
    unknown: list[tuple[list[str | int], str]] = []
    violations = list(validator.iter_errors(doc))
    # A value of the wrong type breaks every other rule about it: say only that.
    mistyped = [list(v.absolute_path) for v in violations if v.validator == "type"]
    for violation in violations:
        path = list(violation.absolute_path)
        if violation.validator != "type" and any(path[: len(t)] == t for t in mistyped):
            continue
        error = best_match([violation], key=_RELEVANCE)
        if error is None:  # pragma: no cover - best_match of one error is that error
            continue
        if error.validator == "additionalProperties" and not _exactly_one_ancestor(error):
            path = list(error.absolute_path)
            known = sorted(error.schema.get("properties", {}))
            for extra in (key for key in error.instance if key not in known):
                unknown.append((path, str(extra)))
                found.append(([*path, extra], _unknown_field(extra, known)))
            continue
        found.append(_describe(error))
    kept: dict[tuple[str, str], tuple[list[str | int], str]] = {}
    for parts, message in found:
        if message == "is required" and _meant(parts, unknown):
            continue
        kept.setdefault((_json_path(parts), message), (parts, message))
    ordered = sorted(kept.values(), key=lambda item: _position(doc, item[0]))
    return [
        PolicyError(message, file=file, document=document, field=_json_path(parts) or None)
        for parts, message in ordered
    ]


def _meant(parts: list[str | int], unknown: list[tuple[list[str | int], str]]) -> bool:
    """Whether a missing field ``parts`` is probably one misspelt beside it."""
    *parent, name = parts
    return any(
        path == parent and difflib.get_close_matches(str(name), [extra], n=1)
        for path, extra in unknown
    )


def _position(doc: Any, parts: Sequence[str | int]) -> tuple[int, ...]:
    """Where ``parts`` is in ``doc``, as indices in key order; a missing key sorts last."""
    position = []
    value = doc
    for part in parts:
        if isinstance(value, dict) and part in value:
            position.append(list(value).index(part))
            value = value[part]
        elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            position.append(part)
            value = value[part]
        else:
            position.append(len(value) if isinstance(value, dict | list) else 0)
            break
    return tuple(position)


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
            present = [name for name in names if isinstance(instance, dict) and name in instance]
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
