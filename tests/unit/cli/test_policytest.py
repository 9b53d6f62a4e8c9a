"""Policy test cases may supply attestations and who asks; the example policies pass their cases."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import yaml

from webhook.cli.main import main
from webhook.policy.loader import load_directory

REPO = Path(__file__).resolve().parents[3]
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


GLASS_POLICY = """\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata: {name: prod}
spec:
  mode: enforce
  match: {namespaces: ["prod-*"], images: ["**"]}
  registries: [quay.io/acme/**]
  breakGlass: {allowed: true, groups: [oncall]}
"""


def glass_case(
    name: str, expect: str, *, annotated: bool = True, **who: object
) -> dict[str, object]:
    """A case creating a Pod with a Docker Hub image, which the policy denies."""
    metadata: dict[str, object] = {"name": "hotfix"}
    if annotated:
        metadata["annotations"] = {"trustgate.dev/break-glass": "INC-4711"}
    resource = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": [{"name": "c", "image": "docker.io/acme/hotfix:1"}]},
    }
    return {"name": name, "namespace": "prod-web", "resource": resource, "expect": expect, **who}


def glass_suite(tmp_path: Path, *cases: dict[str, object]) -> Path:
    (tmp_path / "policy.yaml").write_text(GLASS_POLICY)
    suite = {
        "apiVersion": "trustgate.dev/v1alpha1",
        "kind": "ImagePolicyTest",
        "metadata": {"name": "glass"},
        "spec": {"cases": list(cases)},
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    return tmp_path


def test_break_glass_is_tested_with_the_case_user_and_groups(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = glass_suite(
        tmp_path,
        glass_case(
            "on-call breaks glass",
            "warned",
            user="olive",
            groups=["dev", "oncall"],
            waived="break-glass",
            reason='BREAK-GLASS by user "olive", reason "INC-4711"',
        ),
        glass_case(
            "another user cannot",
            "denied",
            user="mallory",
            groups=["dev"],
            reason='user "mallory" is not among the users or groups policy "prod" allows',
        ),
        glass_case(
            "on-call without the annotation is denied",
            "denied",
            annotated=False,
            user="olive",
            groups=["oncall"],
        ),
        glass_case("no user by default", "denied", reason="not among the users or groups"),
    )
    code, out, _ = run(capsys, "policy", "test", str(directory))
    assert code == 0, out
    assert out.rstrip().endswith("4 passed, 0 failed")


def test_a_wrong_break_glass_expectation_fails_naming_the_case(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = glass_suite(
        tmp_path,
        glass_case("mallory expected through", "warned", user="mallory", waived="break-glass"),
        glass_case("olive by exception", "warned", groups=["oncall"], waived="exception"),
        glass_case("olive merely warned", "warned", groups=["oncall"]),
    )
    code, out, _ = run(capsys, "policy", "test", str(directory))
    assert code == 1
    assert (
        "FAIL  glass / mallory expected through: expected warned waived by break-glass, "
        "got denied\n" in out
    )
    assert 'user "mallory" is not among the users or groups' in out
    assert (
        "FAIL  glass / olive by exception: expected warned waived by exception, "
        "got warned waived by break-glass\n" in out
    )
    assert "PASS  glass / olive merely warned" in out
    assert "1 passed, 2 failed" in out
    code, out, _ = run(capsys, "policy", "test", str(directory), "--output", "junit")
    failures = ET.fromstring(out.split("\n", 1)[1]).findall("testcase/failure")
    assert [f.get("message") for f in failures] == [
        "expected warned waived by break-glass, got denied",
        "expected warned waived by exception, got warned waived by break-glass",
    ]
    code, out, _ = run(capsys, "policy", "test", str(directory), "--output", "json")
    assert [r["waived"] for r in json.loads(out)] == [[], ["break-glass"], ["break-glass"]]


@pytest.mark.parametrize(
    ("who", "error"),
    [
        ({"user": 42}, "field spec.cases[0].user: must be a string (got 42)"),
        ({"user": ""}, "field spec.cases[0].user: must not be empty"),
        ({"groups": "oncall"}, "field spec.cases[0].groups: must be a list (got 'oncall')"),
        ({"groups": ["oncall", 7]}, "field spec.cases[0].groups[1]: must be a string (got 7)"),
        ({"userInfo": {"username": "olive"}}, "field spec.cases[0].userInfo: unknown field"),
        ({"waived": "glass"}, "field spec.cases[0].waived: must be one of break-glass, exception"),
    ],
)
def test_who_asks_is_checked_by_the_case_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], who: dict[str, object], error: str
) -> None:
    directory = glass_suite(tmp_path, glass_case("typed", "denied", **who))
    code, out, err = run(capsys, "policy", "test", str(directory))
    assert code == 2
    assert out == ""
    assert f"tests.yaml, document 1, {error}" in err


def test_a_waiver_cannot_be_expected_of_a_denial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = glass_suite(tmp_path, glass_case("odd", "denied", waived="break-glass"))
    code, _, err = run(capsys, "policy", "test", str(directory))
    assert code == 2
    assert "field spec.cases[0].expect: must be warned (got 'denied')" in err
