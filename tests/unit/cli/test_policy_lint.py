"""``trustgate policy lint``: every mistake of every file in one run, and JSON either way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.kube import policy_yaml
from webhook.cli.main import main
from webhook.core.errors import PolicyErrors
from webhook.policy.loader import load_directory

#: One policy with four typos, each in a different place.
FOUR_TYPOS = """\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata:
  name: production
spec:
  mdoe: enforce
  match:
    namespacs: ["prod-*"]
  registries:
    - registry.redhat.io/**
  signatures:
    authorites: []
  freshnes:
    minimumGrade: B
"""
FOUR_FIELDS = ["spec.mdoe", "spec.match.namespacs", "spec.signatures.authorites", "spec.freshnes"]

#: A test suite with two mistakes: a wrong expectation and an unknown field.
BAD_TESTS = """\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicyTest
metadata:
  name: cases
spec:
  cases:
    - {name: one, image: nginx, expect: deny}
    - {name: two, image: nginx, expect: denied, namespce: prod-web}
"""


def lint(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["policy", "lint", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_four_typos_are_four_errors_in_one_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p.yaml").write_text(FOUR_TYPOS)
    code, out, err = lint(capsys, str(tmp_path / "p.yaml"))
    assert (code, out) == (2, "")
    assert "4 policy errors" in err
    lines = [line for line in err.splitlines() if "document 1, field " in line]
    assert [line.split("field ")[1].split(":")[0] for line in lines] == FOUR_FIELDS
    assert "did you mean 'mode'?" in lines[0] and "did you mean 'freshness'?" in lines[3]


def test_every_file_and_every_kind_of_document_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Policies, test cases and a file that does not parse, each reported once."""
    (tmp_path / "a.yaml").write_text(FOUR_TYPOS)
    (tmp_path / "b.yaml").write_text(policy_yaml("second", registries='["https://quay.io/x"]'))
    (tmp_path / "c.yaml").write_text("spec: [unclosed\n")
    (tmp_path / "tests.yaml").write_text(BAD_TESTS)
    code, _, err = lint(capsys, str(tmp_path))
    assert code == 2
    assert "8 policy errors" in err, err
    assert err.count("c.yaml") == 1, "a file that does not parse is reported once"
    assert (
        "b.yaml, document 1, field spec.registries[0]: 'https://quay.io/x' has a URL scheme" in err
    )
    assert "field spec.cases[0].expect: must be one of allowed, warned, denied" in err
    assert "field spec.cases[1].namespce: unknown field; did you mean 'namespace'?" in err


def test_json_on_errors_is_a_json_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p.yaml").write_text(FOUR_TYPOS)
    code, out, err = lint(capsys, str(tmp_path), "-o", "json")
    assert (code, err) == (2, "")
    report = json.loads(out)
    assert report["valid"] is False and report["warnings"] == []
    assert [e["field"] for e in report["errors"]] == FOUR_FIELDS
    assert {(e["file"], e["document"]) for e in report["errors"]} == {(str(tmp_path / "p.yaml"), 1)}
    assert report["errors"][0]["message"] == "unknown field; did you mean 'mode'?"


def test_json_when_nothing_loads_either(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = lint(capsys, str(tmp_path / "missing"), "-o", "json")
    assert code == 2
    (error,) = json.loads(out)["errors"]
    assert "does not exist" in error["message"]


def test_json_on_success(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "p.yaml").write_text(policy_yaml())
    code, out, _ = lint(capsys, str(tmp_path), "-o", "json")
    assert code == 0
    assert json.loads(out) == {
        "valid": True,
        "errors": [],
        "policies": ["production"],
        "exceptions": [],
        "testCases": 0,
        "warnings": [],
    }


def test_counts_are_singular_for_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "p.yaml").write_text(policy_yaml())
    code, out, _ = lint(capsys, str(tmp_path))
    assert (code, out) == (0, f"{tmp_path}: 1 policy and 0 test cases are valid\n")


def test_the_server_still_refuses_what_lint_refuses(tmp_path: Path) -> None:
    """The loader the server uses reports the same four mistakes and loads nothing."""
    (tmp_path / "p.yaml").write_text(FOUR_TYPOS)
    with pytest.raises(PolicyErrors) as refused:
        load_directory(tmp_path)
    assert [e.field for e in refused.value.errors] == FOUR_FIELDS
