"""Policy test cases may supply attestations; the example policies pass their cases."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from webhook.cli import main
from webhook.policy.loader import load_directory

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "policies" / "examples"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_example_attestation_policies_pass_their_cases(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "policy", "test", str(EXAMPLES))
    assert code == 0, out
    assert out.rstrip().endswith("14 passed, 0 failed")


def test_the_examples_do_not_change_what_make_run_enforces() -> None:
    # make run serves policies/; its subdirectories are not read.
    names = {policy.name for policy in load_directory(REPO / "policies").policies}
    assert names == {"production", "rollout-audit"}


DIGEST = "sha256:4a5b7c9d1e2f30415263748596a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f"
CASES = f"""\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicyTest
metadata: {{name: mine}}
spec:
  cases:
    - name: a vulnerable image expected to pass
      namespace: prod-web
      image: quay.io/acme/api@{DIGEST}
      attestations:
        - predicateType: https://cosign.sigstore.dev/attestation/vuln/v1
          predicate:
            scanner:
              uri: pkg:github/aquasecurity/trivy@v0.58.1
              result: {{Results: [{{Vulnerabilities: [{{Severity: CRITICAL}}]}}]}}
      expect: allowed
"""


def test_a_case_whose_statement_fails_a_condition_fails_and_says_which(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(EXAMPLES, tmp_path, dirs_exist_ok=True)
    (tmp_path / "tests.yaml").write_text(CASES)
    code, out, _ = run(capsys, "policy", "test", str(tmp_path))
    assert code == 1
    assert "FAIL  mine / a vulnerable image expected to pass: expected allowed, got denied" in out
    assert '1 of 2 conditions held: condition "!has(predicate.scanner.result.Results)' in out


def test_supplied_statements_are_checked_by_the_case_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(EXAMPLES, tmp_path, dirs_exist_ok=True)
    (tmp_path / "tests.yaml").write_text(CASES.replace("predicateType", "type"))
    code, _, err = run(capsys, "policy", "test", str(tmp_path))
    assert code == 2
    assert "field spec.cases[0].attestations[0].type: unknown field" in err
