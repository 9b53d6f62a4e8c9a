"""``trustgate policy lint``, ``policy test`` and ``policy schema``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import REPO, days_from_today, exception_yaml, run
from tests.support.kube import policy_yaml


def test_shipped_example_policies_pass_their_tests(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "policy", "test", str(REPO / "policies"))
    assert code == 0, out
    assert " 0 failed" in out
    code, out, _ = run(capsys, "policy", "lint", str(REPO / "policies"))
    assert code == 0


def test_policy_test_reports_failures(policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (policies / "tests.yaml").write_text(
        """\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicyTest
metadata: {name: mine}
spec:
  cases:
    - {name: right, namespace: prod-a, image: nginx, expect: denied}
    - {name: wrong, namespace: prod-a, image: nginx, expect: allowed}
    - {name: wrong reason, namespace: prod-a, image: nginx, expect: denied, reason: nope}
"""
    )
    code, out, _ = run(capsys, "policy", "test", "--policies", str(policies))
    assert code == 1
    assert "PASS  mine / right" in out
    assert "FAIL  mine / wrong: expected allowed, got denied" in out
    assert 'FAIL  mine / wrong reason: expected denied with "nope", got denied' in out
    assert "1 passed, 2 failed" in out


def test_policy_test_invalid_case(policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (policies / "tests.yaml").write_text(
        "apiVersion: trustgate.dev/v1alpha1\nkind: ImagePolicyTest\nmetadata: {name: t}\n"
        "spec:\n  cases:\n    - {name: x, image: nginx, expect: maybe}\n"
    )
    code, _, err = run(capsys, "policy", "test", str(policies))
    assert code == 2
    assert (
        "tests.yaml, document 1, field spec.cases[0].expect: "
        "must be one of allowed, warned, denied (got 'maybe')" in err
    )


def test_policy_lint_reports_broken_policy(
    policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (policies / "broken.yaml").write_text(policy_yaml("broken", mode="dryrun"))
    code, _, err = run(capsys, "policy", "lint", str(policies))
    assert code == 2
    assert "broken.yaml" in err
    assert "spec.mode" in err


def test_policy_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "policy", "schema")
    assert code == 0
    schema = json.loads(out)
    assert schema == json.loads((REPO / "docs" / "policy.schema.json").read_text()), (
        "docs/policy.schema.json is stale: run `make schema`"
    )


def test_policy_lint_warns_about_exceptions_near_their_expiry(
    policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    soon, later, gone = days_from_today(10), days_from_today(40), days_from_today(-1)
    (policies / "exceptions.yaml").write_text(
        "---\n".join(
            [
                exception_yaml("soon", soon),
                exception_yaml("later", later),
                exception_yaml("gone", gone),
            ]
        )
    )
    code, out, _ = run(capsys, "policy", "lint", str(policies))
    assert code == 0
    assert "2 policies, 3 exceptions and 0 test cases are valid" in out
    warnings = [line for line in out.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2
    assert f"'gone' ({policies / 'exceptions.yaml'}) expired at the end of {gone}" in warnings[0]
    assert (
        f"'soon' ({policies / 'exceptions.yaml'}) expires at the end of {soon} (UTC)"
        in (warnings[1])
    )
    assert "in 10 days" in warnings[1]
    code, out, _ = run(capsys, "policy", "lint", str(policies), "--warn-days", "60", "-o", "json")
    result = json.loads(out)
    assert result["exceptions"] == ["gone", "later", "soon"]
    assert len(result["warnings"]) == 3
    with pytest.raises(SystemExit) as exited:
        run(capsys, "policy", "lint", str(policies), "--warn-days", "-3")
    assert exited.value.code == 2
    assert "--warn-days: must be a whole number of days" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("reason", "expires", "field"),
    [("# no reason", "2030-01-01", "spec.reason"), ("reason: why", "", "spec.expires")],
)
def test_policy_lint_fails_on_an_exception_without_reason_or_expiry(
    policies: Path, capsys: pytest.CaptureFixture[str], reason: str, expires: str, field: str
) -> None:
    text = exception_yaml("broken", expires or "X", reason=reason)
    if not expires:
        text = text.replace("  expires: X\n", "")
    (policies / "exceptions.yaml").write_text(text)
    code, _, err = run(capsys, "policy", "lint", str(policies))
    assert code == 2
    assert f"exceptions.yaml, document 1, field {field}: is required" in err
