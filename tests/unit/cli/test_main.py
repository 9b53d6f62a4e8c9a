"""The trustgate command line, run in-process through ``main``."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import yaml

from tests.support.kube import pod_spec, policy_yaml, review, workload
from webhook.cli.main import build_parser, main

REPO = Path(__file__).resolve().parents[3]
BAD = "docker.io/library/nginx:1.27"
GOOD = "quay.io/acme/api:1.0"


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "prod.yaml").write_text(policy_yaml())
    (directory / "audit.yaml").write_text(
        policy_yaml("staging", mode="audit", namespaces='["staging"]')
    )
    return directory


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_review_prints_the_response_and_exits_by_decision(
    policies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    denied = tmp_path / "denied.json"
    denied.write_text(json.dumps(review(workload("Deployment", pod_spec(BAD)), uid="u-9")))
    code, out, _ = run(capsys, "review", str(denied), "--policies", str(policies))
    assert code == 1
    answer = json.loads(out)
    assert answer["response"]["uid"] == "u-9"
    assert answer["response"]["allowed"] is False

    allowed = tmp_path / "allowed.json"
    allowed.write_text(json.dumps(review(workload("Pod", pod_spec(GOOD)))))
    code, out, _ = run(capsys, "review", str(allowed), "--policies", str(policies))
    assert code == 0
    assert json.loads(out)["response"]["allowed"] is True


def test_review_reads_stdin(
    policies: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    body = json.dumps(review(workload("Pod", pod_spec(GOOD))))
    monkeypatch.setattr(sys, "stdin", io.StringIO(body))
    code, out, _ = run(capsys, "review", "-", "--policies", str(policies))
    assert code == 0
    assert json.loads(out)["response"]["allowed"] is True


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{oops", "is not valid JSON"),
        ('{"kind": "Pod"}', "not .*AdmissionReview|expected apiVersion"),
    ],
)
def test_review_rejects_bad_input(
    policies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    code, _, err = run(capsys, "review", str(path), "--policies", str(policies))
    assert code == 2
    assert err.startswith("trustgate: ")
    assert re.search(message, err)


def test_check_images(policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", GOOD, "--namespace", "prod-a", "--policies", str(policies))
    assert code == 0
    assert "ALLOWED" in out
    code, out, _ = run(
        capsys, "check", GOOD, BAD, "-n", "prod-a", "--policies", str(policies), "-o", "json"
    )
    assert code == 1
    rows = json.loads(out)
    assert [(r["image"], r["decision"]) for r in rows] == [(GOOD, "allowed"), (BAD, "denied")]


def test_check_in_audit_namespace_warns(policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", BAD, "-n", "staging", "--policies", str(policies))
    assert code == 0
    assert "WARNED" in out


MANIFESTS = f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: prod-web}}
spec:
  template:
    spec:
      containers: [{{name: web, image: "{GOOD}"}}]
      initContainers: [{{name: init, image: "{BAD}"}}]
---
apiVersion: v1
kind: List
items:
  - apiVersion: batch/v1
    kind: CronJob
    metadata: {{name: nightly, namespace: staging}}
    spec:
      schedule: "@daily"
      jobTemplate:
        spec:
          template:
            spec:
              containers: [{{name: job, image: "{BAD}"}}]
  - apiVersion: v1
    kind: ConfigMap
    metadata: {{name: settings}}
    data: {{a: b}}
"""


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    directory = tmp_path / "deploy"
    (directory / "nested").mkdir(parents=True)
    (directory / "nested" / "app.yaml").write_text(MANIFESTS)
    (directory / ".hidden.yaml").write_text("kind: Pod\nspec: {containers: [{image: x}]}\n")
    (directory / "README.md").write_text("not a manifest")
    return directory


def test_audit_directory_table(
    policies: Path, manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "audit", str(manifests), "--policies", str(policies))
    assert code == 1
    assert "Deployment/web" in out
    assert "CronJob/nightly" in out
    assert "3 images: 1 allowed, 1 warned, 1 denied" in out


def test_audit_json(policies: Path, manifests: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "audit", str(manifests), "--policies", str(policies), "-o", "json")
    rows = json.loads(out)
    assert [(r["kind"], r["namespace"], r["image"], r["decision"]) for r in rows] == [
        ("Deployment", "prod-web", GOOD, "allowed"),
        ("Deployment", "prod-web", BAD, "denied"),
        ("CronJob", "staging", BAD, "warned"),
    ]
    assert rows[1]["reasons"][0].startswith(f'image {BAD} denied by policy "production"')


def test_audit_junit(policies: Path, manifests: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "audit", str(manifests), "--policies", str(policies), "-o", "junit")
    suite = ET.fromstring(out.split("\n", 1)[1])
    assert suite.get("tests") == "3"
    assert suite.get("failures") == "1"
    assert len(suite.findall("testcase/failure")) == 1


def test_audit_stdin_and_only_warnings_exit_0(
    policies: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = json.dumps(workload("Pod", pod_spec(BAD), namespace="staging"))
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    code, out, _ = run(capsys, "audit", "-", "--policies", str(policies))
    assert code == 0
    assert "WARNED" in out


def test_audit_missing_path(policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "audit", "/no/such/dir", "--policies", str(policies))
    assert code == 2
    assert "/no/such/dir: no such file or directory" in err


def test_audit_invalid_yaml_is_an_error_row_and_the_audit_goes_on(
    policies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = yaml.safe_dump(workload("Pod", pod_spec(GOOD)))
    (tmp_path / "a-bad.yaml").write_text(f"{good}---\nkind: [unclosed\n")
    (tmp_path / "b-good.yaml").write_text(good)
    paths = [str(tmp_path / "a-bad.yaml"), str(tmp_path / "b-good.yaml")]
    code, out, err = run(capsys, "audit", *paths, "--policies", str(policies), "-o", "json")
    assert code == 2
    assert err == ""
    rows = json.loads(out)
    assert [(r["source"], r["decision"]) for r in rows] == [
        (str(tmp_path / "a-bad.yaml"), "allowed"),
        (str(tmp_path / "a-bad.yaml"), "error"),
        (str(tmp_path / "b-good.yaml"), "allowed"),
    ]
    assert rows[1]["reasons"][0].startswith(
        f"{tmp_path / 'a-bad.yaml'}: document 2: not valid YAML"
    )


#: Documents whose fields have the wrong type where an object's are read.
BAD_DOCUMENTS = [
    ("- 1\n- 2\n", "error", "document 1: not a Kubernetes object: a list"),
    ("just text\n", "error", "document 1: not a Kubernetes object: a string"),
    ("kind: [Pod]\n", "error", "document 1: kind must be a string, got a list"),
    ("kind: {a: 1}\n", "error", "document 1: kind must be a string, got a mapping"),
    ("kind: List\nitems: [1]\n", "error", "document 1: not a Kubernetes object: a scalar"),
    (
        "apiVersion: [v1]\nkind: Pod\nspec: {containers: [{image: nginx}]}\n",
        "denied",
        "the Pod cannot be judged: apiVersion must be a string, got list",
    ),
    (
        "apiVersion: {v: 1}\nkind: Deployment\nspec: {template: {spec: {containers: []}}}\n",
        "denied",
        "the Deployment cannot be judged: apiVersion must be a string, got dict",
    ),
    (
        "apiVersion: v1\nkind: Pod\nmetadata: [x]\nspec: {containers: [{image: nginx}]}\n",
        "denied",
        "the Pod cannot be judged: metadata must be a mapping, got list",
    ),
    (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: [x]}\nspec: {containers: []}\n",
        "denied",
        "the Pod cannot be judged: metadata.name must be a string, got list",
    ),
    (
        "apiVersion: apps/v1\nkind: Deployment\nspec: {template: [x]}\n",
        "denied",
        "the Deployment cannot be judged: spec.template must be a mapping, got list",
    ),
    (
        "apiVersion: v1\nkind: Pod\nspec: {containers: [], volumes: [{name: m, image: x}]}\n",
        "denied",
        "the Pod cannot be judged: spec.volumes[0].image must be a mapping, got str",
    ),
]


@pytest.mark.parametrize(("text", "decision", "reason"), BAD_DOCUMENTS)
def test_audit_reports_a_bad_document_and_goes_on(
    policies: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    decision: str,
    reason: str,
) -> None:
    after = yaml.safe_dump(workload("Pod", pod_spec(BAD)))
    (tmp_path / "m.yaml").write_text(f"{text}---\n{after}")
    # --namespace given: an object that names none is no cause for a warning here.
    code, out, err = run(capsys, "audit", str(tmp_path / "m.yaml"), "--policies", str(policies),
                         "-o", "json", "-n", "default")  # fmt: skip
    assert err == ""
    first, second = json.loads(out)
    assert first["decision"] == decision
    assert reason in first["reasons"][0]
    assert second["image"] == BAD
    assert second["decision"] == "denied"
    assert code == (2 if decision == "error" else 1)


def test_audit_table_counts_unreadable_documents(
    policies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "m.yaml").write_text(f"[1]\n---\n{yaml.safe_dump(workload('Pod', pod_spec(GOOD)))}")
    code, out, _ = run(capsys, "audit", str(tmp_path), "--policies", str(policies))
    assert code == 2
    assert "ERROR" in out
    assert "1 images: 1 allowed, 0 warned, 0 denied; 1 unreadable documents" in out
    _, out, _ = run(capsys, "audit", str(tmp_path), "--policies", str(policies), "-o", "junit")
    suite = ET.fromstring(out.split("\n", 1)[1])
    assert suite.get("errors") == "1"
    assert "not a Kubernetes object" in suite.findall("testcase/error")[0].get("message")


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


def test_certs_generate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "certs"
    code, _, _ = run(capsys, "certs", "generate", "--out", str(out_dir), "--san", "127.0.0.1")
    assert code == 0
    assert (out_dir / "tls.crt").exists()
    code, _, err = run(capsys, "certs", "generate", "--out", str(out_dir))
    assert code == 2
    assert "--force" in err
    code, out, _ = run(capsys, "certs", "generate", "--out", str(out_dir), "--force", "-o", "json")
    assert code == 0
    assert json.loads(out) == {
        "ca": str(out_dir / "ca.crt"),
        "cert": str(out_dir / "tls.crt"),
        "key": str(out_dir / "tls.key"),
    }


def test_bad_config_file(
    policies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "trustgate.yaml"
    config.write_text("defaults: {noMatch: maybe}\n")
    code, _, err = run(capsys, "check", GOOD, "--policies", str(policies), "--config", str(config))
    assert code == 2
    assert "field defaults.noMatch" in err


def test_config_no_match_warn(
    policies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "trustgate.yaml"
    config.write_text("defaults: {noMatch: warn}\n")
    code, out, _ = run(
        capsys, "check", BAD, "-n", "dev", "--policies", str(policies), "--config", str(config)
    )
    assert code == 0
    assert "defaults.noMatch: warn" in out


def test_serve_refuses_missing_tls(policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "serve", "--policies", str(policies))
    assert code == 2
    assert "--cert and --key are required" in err


def test_serve_refuses_broken_policies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "serve", "--policies", str(tmp_path), "--insecure-http")
    assert code == 2
    assert "no ImagePolicy documents" in err


def test_readme_example_is_what_the_webhook_answers(capsys: pytest.CaptureFixture[str]) -> None:
    readme = (REPO / "README.md").read_text()
    shown = json.loads(readme.split("```json\n", 1)[1].split("\n```", 1)[0])
    code, out, _ = run(
        capsys,
        "review",
        str(REPO / "docs" / "examples" / "admission-review.json"),
        "--policies",
        str(REPO / "policies"),
    )
    assert code == 1
    assert json.loads(out) == shown


MODELS = "ghcr.io/acme/models:7"


def test_audit_lists_image_volumes(
    policies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = pod_spec(GOOD, volumes=(MODELS, GOOD))
    (tmp_path / "m.yaml").write_text(
        yaml.safe_dump(workload("StatefulSet", spec))
        + "---\n"
        + yaml.safe_dump(workload("Pod", pod_spec(GOOD)))
    )
    code, out, _ = run(capsys, "audit", str(tmp_path), "--policies", str(policies), "-o", "json")
    assert code == 1
    rows = json.loads(out)
    assert [
        (r["kind"], r["image"], r["containers"], r["volumes"], r["decision"]) for r in rows
    ] == [
        ("StatefulSet", GOOD, ["app-0"], ["data-1"], "allowed"),
        ("StatefulSet", MODELS, [], ["data-0"], "denied"),
        ("Pod", GOOD, ["app-0"], [], "allowed"),
    ]
    assert "ghcr.io/acme/models is not in the registry allowlist" in rows[1]["reasons"][0]

    _, out, _ = run(capsys, "audit", str(tmp_path), "--policies", str(policies))
    header, first, second, third = out.splitlines()[:4]
    assert first.split()[:5] == ["StatefulSet/web", "prod-web", GOOD, "data-1", "ALLOWED"]
    assert header.split()[:5] == ["RESOURCE", "NAMESPACE", "IMAGE", "VOLUME", "DECISION"]
    assert second.split()[:5] == ["StatefulSet/web", "prod-web", MODELS, "data-0", "DENIED"]
    assert third.split()[:5] == ["Pod/web", "prod-web", GOOD, "-", "ALLOWED"]

    _, out, _ = run(capsys, "audit", str(tmp_path), "--policies", str(policies), "-o", "junit")
    suite = ET.fromstring(out.split("\n", 1)[1])
    (failed,) = [c for c in suite.findall("testcase") if c.find("failure") is not None]
    assert failed.get("name") == f"StatefulSet/web {MODELS} (image volume data-0)"


def test_check_judges_image_volumes(policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["check", GOOD, "--volume", MODELS, "-n", "prod-a", "--policies", str(policies)]
    code, out, _ = run(capsys, *argv, "-o", "json")
    assert code == 1
    rows = json.loads(out)
    assert [(r["image"], r["volumes"], r["decision"]) for r in rows] == [
        (GOOD, [], "allowed"),
        (MODELS, ["v0"], "denied"),
    ]
    code, _, err = run(capsys, "check", "--policies", str(policies))
    assert code == 2
    assert "give at least one IMAGE or --volume IMAGE" in err


def test_audit_reports_an_unreadable_file_and_goes_on(
    policies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.yaml").write_bytes(b"kind: Pod\nmetadata: {name: \xff\xfe}\n")
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(workload("Pod", pod_spec(BAD))))
    code, out, _ = run(capsys, "audit", str(tmp_path), "--policies", str(policies), "-o", "json")
    assert code == 2
    first, second = json.loads(out)
    assert first["decision"] == "error"
    assert first["reasons"][0].startswith(f"{tmp_path / 'a.yaml'}: cannot read: ")
    assert (second["image"], second["decision"]) == (BAD, "denied")


def _exception(name: str, expires: str, *, reason: str = "reason: vendor signs from Q3") -> str:
    return f"""\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicyException
metadata: {{name: {name}}}
spec:
  namespaces: ["prod-*"]
  images: ["docker.io/library/**"]
  policies: [production]
  {reason}
  owner: team-web
  expires: {expires}
"""


def _days_from_today(days: int) -> str:
    import datetime as dt

    return (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=days)).isoformat()


def test_policy_lint_warns_about_exceptions_near_their_expiry(
    policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    soon, later, gone = _days_from_today(10), _days_from_today(40), _days_from_today(-1)
    (policies / "exceptions.yaml").write_text(
        "---\n".join(
            [_exception("soon", soon), _exception("later", later), _exception("gone", gone)]
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
    text = _exception("broken", expires or "X", reason=reason)
    if not expires:
        text = text.replace("  expires: X\n", "")
    (policies / "exceptions.yaml").write_text(text)
    code, _, err = run(capsys, "policy", "lint", str(policies))
    assert code == 2
    assert f"exceptions.yaml, document 1, field {field}: is required" in err


def test_audit_lists_what_runs_only_thanks_to_an_exception(
    policies: Path, manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    until = _days_from_today(30)
    (policies / "exceptions.yaml").write_text(_exception("nginx-legacy", until))
    code, out, _ = run(capsys, "audit", str(manifests), "--policies", str(policies))
    assert code == 0
    (line,) = [line for line in out.splitlines() if BAD in line and "WAIVED" in line]
    assert f'exception "nginx-legacy" (expires {until})' in line
    assert "run only thanks to an exception or break-glass" in out
    _, out, _ = run(capsys, "audit", str(manifests), "--policies", str(policies), "-o", "json")
    waived = [r for r in json.loads(out) if r["decision"] == "waived"]
    assert [(r["image"], r["waivers"]) for r in waived] == [
        (BAD, [f'exception "nginx-legacy" (expires {until})'])
    ]


def test_audit_junit_shows_a_waived_image_as_passing_with_its_waiver(
    policies: Path, manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    until = _days_from_today(30)
    (policies / "exceptions.yaml").write_text(_exception("nginx-legacy", until))
    code, out, _ = run(capsys, "audit", str(manifests), "--policies", str(policies), "-o", "junit")
    assert code == 0
    suite = ET.fromstring(out)
    assert suite.get("failures") == "0"
    (case,) = [c for c in suite.iter("testcase") if BAD in (c.get("name") or "") and
               c.get("classname", "").endswith(":prod-web")]  # fmt: skip
    text = case.findtext("system-out") or ""
    assert text.splitlines()[0] == f'exception "nginx-legacy" (expires {until})'


def test_serve_workers_default_to_auto_and_take_a_count() -> None:
    parser = build_parser({})
    assert parser.parse_args(["serve"]).workers == "auto"
    assert parser.parse_args(["serve", "--workers", "auto"]).workers == "auto"
    assert parser.parse_args(["serve", "--workers", "3"]).workers == 3
    assert parser.parse_args(["serve"]).cpu_request is None


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5", ""])
def test_serve_refuses_a_worker_count_below_one(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser({}).parse_args(["serve", "--workers", value])
    assert exited.value.code == 2
    assert (
        f"argument --workers: must be auto or a whole number of at least 1, got {value!r}"
        in capsys.readouterr().err
    )


def test_serve_cpu_request_comes_from_the_downward_api_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {"TRUSTGATE_CPU_REQUEST_MILLICORES": "1500"}
    assert build_parser(env).parse_args(["serve"]).cpu_request == 1500
    assert build_parser(env).parse_args(["serve", "--cpu-request", "250"]).cpu_request == 250
    # Unset in the pod (no request): the variable is empty or 0, and nothing counts.
    assert (
        build_parser({"TRUSTGATE_CPU_REQUEST_MILLICORES": ""}).parse_args(["serve"]).cpu_request
        is None
    )
    with pytest.raises(SystemExit):
        build_parser({}).parse_args(["serve", "--cpu-request", "1.5"])
    assert "must be a whole number of millicores, got '1.5'" in capsys.readouterr().err
