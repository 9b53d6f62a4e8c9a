"""CEL conditions compile when the policy loads, or the policy does not load, saying where."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhook.core.errors import PolicyError
from webhook.policy.cel import MAX_LENGTH, VARIABLES, ConditionError, compile_condition
from webhook.policy.loader import load_directory
from webhook.signatures import celworker


@pytest.mark.parametrize(
    "text",
    [
        "predicate.runDetails.builder.id == 'https://github.com/actions/runner/github-hosted'",
        "predicateType.startsWith('https://slsa.dev/')",
        "subject.exists(s, 'sha256:' + s.digest.sha256 == image.digest)",
        "image.repository.matches('^quay\\\\.io/acme/.*$')",
        "!has(predicate.scanner) || predicate.scanner.result.summary.CRITICAL == 0",
        "predicate.a == 1 &&\n  predicate.b == 2",
    ],
)
def test_expressions_over_the_statement_and_the_image_compile(text: str) -> None:
    assert compile_condition(text).text == text


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        ("predicate.x == ", 1, 16, "Syntax error: mismatched input '<EOF>'"),
        ("predicte.x == 1", 1, 9, "undeclared reference to 'predicte.x'"),
        ("predicate.a == 'a' &&\n  foo(1)", 2, 6, "undeclared reference to 'foo'"),
        ("predicate.a == 'unterminated", 1, 16, "Syntax error"),
    ],
)
def test_a_mistake_is_reported_with_its_line_and_column(
    text: str, line: int, column: int, message: str
) -> None:
    with pytest.raises(ConditionError) as raised:
        compile_condition(text)
    assert (raised.value.line, raised.value.column) == (line, column)
    assert str(raised.value).startswith(f"line {line}, column {column}: {message}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 + 2", "the expression is of type int, not bool"),
        ("predicateType + 'x' == 'y' ? 'a' : 'b'", "the expression is of type string, not bool"),
        ("   ", "the expression is empty"),
        ("x" + ".a" * 20000, f"the expression is 40001 characters; at most {MAX_LENGTH}"),
        # Deep nesting is refused by the parser, not by a crash of the process.
        ("(" * 100 + "true" + ")" * 100, "recursion limit exceeded"),
        ("[" * 100 + "true" + "]" * 100 + " == []", "recursion"),
    ],
)
def test_expressions_that_cannot_be_conditions_are_refused(text: str, message: str) -> None:
    with pytest.raises(ConditionError, match=message):
        compile_condition(text)


def test_the_evaluator_process_declares_the_same_variables() -> None:
    assert celworker.VARIABLES == VARIABLES


POLICY = """\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: good}}
spec:
  registries: ["quay.io/**"]
---
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: provenance}}
spec:
  registries: ["quay.io/**"]
  attestations:
    - predicateType: https://slsa.dev/provenance/v1
      authorities: [{{name: ci, key: {{file: ci.pub}}}}]
      conditions:
        - "predicate.buildType != ''"
        - {condition}
"""


def test_a_policy_whose_condition_does_not_compile_does_not_load(tmp_path: Path) -> None:
    from tests.support.cosign import generate_key, public_pem

    (tmp_path / "ci.pub").write_text(public_pem(generate_key("ecdsa-p256")))
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(condition='"predicate.builder.id == "'))
    with pytest.raises(PolicyError) as raised:
        load_directory(tmp_path)
    error = raised.value
    assert (error.file, error.document, error.field) == (
        str(policy),
        2,
        "spec.attestations[0].conditions[1]",
    )
    assert "the CEL expression does not compile: line 1, column 25: Syntax error" in str(error)
    # The same file with a good expression loads, and keeps the conditions in order.
    policy.write_text(POLICY.format(condition="\"predicate.builder.id == 'ci'\""))
    (_, provenance) = load_directory(tmp_path).policies
    texts = [c.text for c in provenance.attestations[0].conditions]
    assert texts == ["predicate.buildType != ''", "predicate.builder.id == 'ci'"]


def test_conditions_are_bounded_by_the_schema(tmp_path: Path) -> None:
    from tests.support.cosign import generate_key, public_pem

    (tmp_path / "ci.pub").write_text(public_pem(generate_key("ecdsa-p256")))
    many = "\n".join(["        - 'true'"] * 32)
    (tmp_path / "policy.yaml").write_text(POLICY.format(condition="'true'\n" + many))
    with pytest.raises(PolicyError) as raised:
        load_directory(tmp_path)
    assert raised.value.field == "spec.attestations[0].conditions"
    assert "must have at most 32 entries (got 34)" in str(raised.value)
