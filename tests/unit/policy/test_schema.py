"""webhook.policy.schema: every schema mistake of a document, one per place, in document order."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from webhook.core.errors import PolicyError, PolicyErrors
from webhook.policy.schema import validate_document


def fields(text: str) -> list[tuple[str | None, str]]:
    """``(field, message)`` of each mistake ``validate_document`` reports for ``text``."""
    document: Any = yaml.safe_load(text)
    with pytest.raises(PolicyError) as raised:
        validate_document(document, file="p.yaml", document=1)
    errors = raised.value.errors if isinstance(raised.value, PolicyErrors) else [raised.value]
    return [(e.field, e.message) for e in errors]


HEAD = "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: p}\n"


def test_two_unknown_keys_of_one_mapping_are_two_errors() -> None:
    found = fields(HEAD + "spec:\n  registries: ['**']\n  mdoe: audit\n  requireDigets: true\n")
    assert found == [
        ("spec.mdoe", "unknown field; did you mean 'mode'?"),
        ("spec.requireDigets", "unknown field; did you mean 'requireDigest'?"),
    ]


def test_a_misspelt_required_field_is_reported_once() -> None:
    """``registrie`` is the unknown field and, missing, the required one: one error says both."""
    found = fields(HEAD + "spec:\n  mode: audit\n  registrie: ['**']\n")
    assert found == [("spec.registrie", "unknown field; did you mean 'registries'?")]


def test_errors_follow_the_document_not_the_schema() -> None:
    found = fields(
        HEAD + "spec:\n  requireDigest: maybe\n  mode: sometimes\n  registries: ['**']\n"
    )
    assert [field for field, _ in found] == ["spec.requireDigest", "spec.mode"]


def test_a_value_of_the_wrong_type_is_one_error() -> None:
    """No echo of every rule that a list or null breaks once its type is wrong."""
    assert fields(HEAD + "spec: null\n") == [("spec", "must be a mapping (got nothing)")]
