"""Repository globs that can never match are refused with what to write instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.policy.test_loader import policy, write
from webhook.core.errors import PolicyError
from webhook.core.reference import parse_reference
from webhook.policy.globs import Glob, repository_glob_problem
from webhook.policy.loader import load_directory

# (pattern, what the message must say, what it must suggest)
NEVER_MATCH = [
    ("https://quay.io/myorg/**", "has a URL scheme", "write 'quay.io/myorg/**'"),
    ("quay.io/myorg/**:latest", "names a tag or digest (':latest')", "write 'quay.io/myorg/**'"),
    ("quay.io/myorg/app@sha256:*", "names a tag or digest ('@sha256:*')", "'quay.io/myorg/app'"),
    ("quay.io/myorg/[a-z]*", "uses '[' ']', which never appear", "'quay.io/myorg/*'"),
    ("quay.io/myorg/app?", "uses '?'", "only '*'"),
    ("***", "three or more '*' in a row", "write '**'"),
    ("quay.io/***", "three or more '*' in a row", "write 'quay.io/**'"),
]


@pytest.mark.parametrize(("pattern", "why", "instead"), NEVER_MATCH)
def test_patterns_that_never_match_are_refused(pattern: str, why: str, instead: str) -> None:
    problem = repository_glob_problem(pattern)
    assert problem is not None and why in problem and instead in problem
    if "***" in pattern:
        return  # ambiguous rather than empty: refused so that '*' and '**' keep one meaning
    # The claim holds: the pattern as written matches no normalised repository.
    for image in ("quay.io/myorg/app:latest", "quay.io/myorg/a", "registry.redhat.io/ubi9"):
        assert not Glob(pattern).matches(parse_reference(image).repository)


@pytest.mark.parametrize(
    "pattern",
    ["**", "*", "quay.io/myorg/**", "127.0.0.1:5000/demo/*", "*.io/**", "localhost:*/x", "a_b/c-d"],
)
def test_patterns_that_can_match_are_accepted(pattern: str) -> None:
    assert repository_glob_problem(pattern) is None


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ("registries: ['quay.io/**', 'https://quay.io/myorg/**']", "spec.registries[1]"),
        (
            "match: {images: ['quay.io/myorg/**:latest']}\nregistries: ['**']",
            "spec.match.images[0]",
        ),
    ],
)
def test_lint_names_the_file_document_and_field(tmp_path: Path, spec: str, field: str) -> None:
    write(tmp_path, {"p.yaml": policy(spec=spec)})
    with pytest.raises(PolicyError) as raised:
        load_directory(tmp_path)
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{tmp_path / 'p.yaml'}, document 1, field {field}: ")
